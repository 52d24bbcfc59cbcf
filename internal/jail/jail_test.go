package jail

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// The test binary is its own jail entry.
func TestMain(m *testing.M) {
	Main()
	os.Exit(m.Run())
}

func TestArgvRoundTrip(t *testing.T) {
	for _, s := range []Spec{
		{Path: "/bin/true"},
		{Path: "/usr/bin/qemu-system-x86_64", Args: []string{"-name", "vessel-x", "--", "-fds=9"},
			KeepCaps: []Cap{CapChown, CapDACOverride, CapSetfcap}, ExtraFiles: 3,
			Rlimits: []Rlimit{{RlimitCore, 0}, {RlimitNofile, 65536}, {RlimitMsgqueue, 0}}},
		{Path: "/usr/bin/qemu-system-x86_64", Root: &Root{Scratch: "/run/x", ReadOnly: []string{"/usr", "/dev/null"},
			Recursive: []string{"/proc"}, Writable: []string{"/run/x/shared"}, Links: []string{"/lib", "/bin"}}},
	} {
		argv, err := s.argv()
		if err != nil {
			t.Fatalf("argv of %+v: %v", s, err)
		}
		if argv[0] != Argv0 {
			t.Errorf("argv[0] = %q, want %q", argv[0], Argv0)
		}
		got, err := parse(argv[1:])
		if err != nil {
			t.Fatalf("parse %q: %v", argv, err)
		}
		if got.Path != s.Path || !slices.Equal(got.Args, s.Args) || !slices.Equal(got.KeepCaps, s.KeepCaps) ||
			got.ExtraFiles != s.ExtraFiles || !slices.Equal(got.Rlimits, s.Rlimits) || !reflect.DeepEqual(got.Root, s.Root) {
			t.Errorf("parse(argv(%+v)) = %+v (argv %q)", s, got, argv)
		}
	}
	argv, _ := Spec{Path: "/q", KeepCaps: []Cap{CapChown, CapMknod}, ExtraFiles: 2, Rlimits: []Rlimit{{RlimitCore, 0}}}.argv()
	want := []string{"vessel-jail", "-keep-caps=chown,mknod", "-fds=2", "-rlimit=core=0", "--", "/q"}
	if !slices.Equal(argv, want) {
		t.Errorf("argv: got %q, want %q", argv, want)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"/bin/true"},
		{"--"},
		{"--", "bin/true"},
		{"-keep-caps=chown,nosuch", "--", "/bin/true"},
		{"-keep-caps=", "--", "/bin/true"},
		{"-fds=-1", "--", "/bin/true"},
		{"-fds=x", "--", "/bin/true"},
		{"-fds=1", "-fds=2", "--", "/bin/true"},
		{"-rlimit=nproc=1", "--", "/bin/true"},
		{"-rlimit=core", "--", "/bin/true"},
		{"-rlimit=core=-1", "--", "/bin/true"},
		{"-uid=0", "--", "/bin/true"},
		{"keep", "--", "/bin/true"},
	} {
		if s, err := parse(args); err == nil {
			t.Errorf("parse %q: got %+v, want an error", args, s)
		}
	}
}

func TestSpecRefuses(t *testing.T) {
	for _, s := range []Spec{
		{Path: "qemu"},
		{Path: "/q", ExtraFiles: -1},
		{Path: "/q", KeepCaps: []Cap{Cap(63)}},
		{Path: "/q", Rlimits: []Rlimit{{Resource("nproc"), 1}}},
		{Path: "/q", Root: &Root{ReadOnly: []string{"/usr"}}},
		{Path: "/q", Root: &Root{Scratch: "/run/x", ReadOnly: []string{"usr"}}},
		{Path: "/q", Root: &Root{Scratch: "/run/x", Writable: []string{"/run/../etc"}}},
		{Path: "/q", Root: &Root{Scratch: "/"}},
	} {
		if _, err := Command(s); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("command for %+v: got %v, want ErrInvalidArgument", s, err)
		}
	}
}

func TestCaps(t *testing.T) {
	for c := CapChown; c <= CapCheckpointRestore; c++ {
		got, err := ParseCap("CAP_" + strings.ToUpper(c.String()))
		if err != nil || got != c {
			t.Errorf("ParseCap(%s): got %v %v, want %d", c, got, err, int(c))
		}
	}
	if got := CapMask([]Cap{CapChown, CapDACOverride, CapFowner, CapFsetid, CapMknod, CapSetfcap}); got != 0x8800001b {
		t.Errorf("mask: got %#x, want 0x8800001b", got)
	}
}

// status returns the fields of a /proc/<pid>/status.
func status(t *testing.T, text string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// TestEntry runs a shell through the entry and checks, from the shell's own /proc, that
// it runs confined: no_new_privs, capabilities, limits and descriptors.
func TestEntry(t *testing.T) {
	keep := []Cap{CapChown, CapFowner}
	passed, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer passed.Close()
	// A descriptor this process leaks (not close-on-exec, not passed): the entry must
	// not let the program inherit it.
	leakFD, err := unix.Dup(int(passed.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(leakFD)

	script := `cat /proc/self/status; echo "nofile $(ulimit -n) $(ulimit -Hn)"; echo "core $(ulimit -c)"; ls /proc/self/fd`
	cmd, err := Command(Spec{
		Path: "/bin/sh", Args: []string{"-c", script},
		KeepCaps: keep, ExtraFiles: 1,
		Rlimits: []Rlimit{{RlimitNofile, 100}, {RlimitCore, 0}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd.ExtraFiles = []*os.File{passed}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()
	st := status(t, text)
	if st["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs %q, want 1", st["NoNewPrivs"])
	}
	wantCaps := uint64(0)
	wantBnd := ""
	if os.Geteuid() == 0 {
		wantCaps = CapMask(keep)
		wantBnd = strconv.FormatUint(CapMask(keep), 16)
	}
	for _, f := range []string{"CapEff", "CapPrm"} {
		if got, _ := strconv.ParseUint(st[f], 16, 64); got != wantCaps {
			t.Errorf("%s %s, want %#x", f, st[f], wantCaps)
		}
	}
	for _, f := range []string{"CapInh", "CapAmb"} {
		if got, _ := strconv.ParseUint(st[f], 16, 64); got != 0 {
			t.Errorf("%s %s, want 0", f, st[f])
		}
	}
	if wantBnd != "" {
		if got, _ := strconv.ParseUint(st["CapBnd"], 16, 64); strconv.FormatUint(got, 16) != wantBnd {
			t.Errorf("CapBnd %s, want %s", st["CapBnd"], wantBnd)
		}
	}
	if !strings.Contains(text, "nofile 100 100\n") || !strings.Contains(text, "core 0\n") {
		t.Errorf("limits: want nofile 100 100 and core 0 in\n%s", text)
	}
	// ls lists 0-3 and the descriptor of the directory it reads.
	fds := strings.Fields(text[strings.LastIndex(text, "core 0\n")+len("core 0\n"):])
	for _, fd := range fds {
		n, err := strconv.Atoi(fd)
		if err != nil {
			t.Fatalf("fd list %q", fds)
		}
		if n == leakFD {
			t.Errorf("leaked descriptor %d inherited (fds %v)", leakFD, fds)
		}
	}
	for _, want := range []string{"0", "1", "2", "3"} {
		if !slices.Contains(fds, want) {
			t.Errorf("descriptor %s not inherited (fds %v)", want, fds)
		}
	}
	if len(fds) > 5 {
		t.Errorf("fds %v: want 0-3 and the one ls reads /proc/self/fd with", fds)
	}
}

// TestEntryFails checks that the entry refuses to run the program when it cannot confine
// it as asked: a descriptor to pass is missing.
func TestEntryFails(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	cmd, err := Command(Spec{Path: "/bin/sh", Args: []string{"-c", "touch " + marker}, ExtraFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	cmd.ExtraFiles = []*os.File{os.Stdin} // one of two
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitFailed {
		t.Fatalf("run with a missing descriptor: got %v (%s), want exit %d", err, out, ExitFailed)
	}
	if !strings.Contains(string(out), "descriptor 4") {
		t.Errorf("output %q does not name descriptor 4", out)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the program ran")
	}
}

// TestEntryRoot runs a shell in a minimal root, in user and mount namespaces of its own
// (as the QEMU driver starts a VMM with its own host ids): it sees only what the root
// holds, can write only the writable directory, and the host's tree is unchanged.
func TestEntryRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mapping a range of host ids into a user namespace needs root")
	}
	const base = 2000190000
	scratch, shared := t.TempDir(), t.TempDir()
	for _, d := range []string{filepath.Dir(scratch), scratch} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(shared, base, base); err != nil {
		t.Fatal(err)
	}
	root := &Root{Scratch: scratch, ReadOnly: []string{"/usr", "/dev/null"}, Recursive: []string{"/proc"}, Writable: []string{shared}}
	for _, top := range []string{"/bin", "/lib", "/lib64"} {
		if st, err := os.Lstat(top); err == nil && st.Mode()&os.ModeSymlink != 0 {
			root.Links = append(root.Links, top)
		} else if err == nil {
			root.ReadOnly = append(root.ReadOnly, top)
		}
	}
	script := `ls -a /; touch ` + shared + `/made && echo wrote-shared; touch /usr/x 2>/dev/null || echo usr-read-only; touch /y 2>/dev/null || echo root-read-only; cat /proc/self/uid_map`
	cmd, err := Command(Spec{Path: "/bin/sh", Args: []string{"-c", script}, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	ids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: base, Size: 65536}}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: ids, GidMappings: ids, GidMappingsEnableSetgroups: true,
		Credential: &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	lines := strings.Fields(string(out))
	var top []string
	for _, l := range lines {
		if l == "wrote-shared" {
			break
		}
		if l != "." && l != ".." {
			top = append(top, l)
		}
	}
	want := []string{"dev", "proc", "tmp", "usr"}
	for _, l := range root.Links {
		want = append(want, strings.TrimPrefix(l, "/"))
	}
	for _, d := range root.ReadOnly {
		if d != "/usr" && d != "/dev/null" {
			want = append(want, strings.TrimPrefix(d, "/"))
		}
	}
	slices.Sort(want)
	want = slices.Compact(want)
	slices.Sort(top)
	if !slices.Equal(top, want) {
		t.Errorf("the root holds %q, want %q", top, want)
	}
	for _, w := range []string{"wrote-shared", "usr-read-only", "root-read-only"} {
		if !slices.Contains(lines, w) {
			t.Errorf("no %q in the output:\n%s", w, out)
		}
	}
	if _, err := os.Stat(filepath.Join(shared, "made")); err != nil {
		t.Errorf("the write to the writable directory did not reach the host: %v", err)
	}
	if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
		t.Errorf("the scratch directory changed on the host: %v", ents)
	}
}
