package jail

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
			got.ExtraFiles != s.ExtraFiles || !slices.Equal(got.Rlimits, s.Rlimits) {
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
