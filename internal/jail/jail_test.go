package jail

import (
	"bufio"
	"bytes"
	"errors"
	"io"
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
		{Path: "/usr/bin/qemu-system-x86_64", Root: &Root{ReadOnly: []string{"/usr", "/dev/null"},
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
		{Path: "/q", Root: &Root{}},
		{Path: "/q", Root: &Root{Links: []string{"/lib"}}},
		{Path: "/q", Root: &Root{ReadOnly: []string{"usr"}}},
		{Path: "/q", Root: &Root{Writable: []string{"/run/../etc"}}},
		{Path: "/q", Root: &Root{ReadOnly: []string{"/"}}},
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

// clonesHeld lists this process's descriptors of detached mounts: files on a mount that
// is not in its mount table (a detached clone reads as "/", the root of its own tree).
func clonesHeld(t *testing.T) []string {
	t.Helper()
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	attached := map[uint64]bool{}
	for _, l := range strings.Split(string(mounts), "\n") {
		if id, err := strconv.ParseUint(strings.SplitN(l, " ", 2)[0], 10, 64); err == nil {
			attached[id] = true
		}
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	for _, e := range ents {
		p := filepath.Join("/proc/self/fd", e.Name())
		target, err := os.Readlink(p)
		if err != nil || !strings.HasPrefix(target, "/") {
			continue // pipes, sockets and other files of the kernel's internal mounts
		}
		var st unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, p, 0, unix.STATX_MNT_ID, &st); err == nil && !attached[st.Mnt_id] {
			held = append(held, e.Name()+" -> "+target)
		}
	}
	return held
}

// hostRoot is a minimal root for a shell: /usr, /dev/null, /proc and the top-level
// directories or links into /usr.
func hostRoot() *Root {
	root := &Root{ReadOnly: []string{"/usr", "/dev/null"}, Recursive: []string{"/proc"}}
	for _, top := range []string{"/bin", "/lib", "/lib64"} {
		if st, err := os.Lstat(top); err == nil && st.Mode()&os.ModeSymlink != 0 {
			root.Links = append(root.Links, top)
		} else if err == nil {
			root.ReadOnly = append(root.ReadOnly, top)
		}
	}
	return root
}

// inUserNS makes cmd start in user and mount namespaces of its own, as root of the
// namespace on host ids from base.
func inUserNS(cmd *exec.Cmd, base int) {
	ids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: base, Size: 65536}}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: ids, GidMappings: ids, GidMappingsEnableSetgroups: true,
		Credential: &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}},
	}
}

// TestEntryRoot runs a shell in a minimal root, in user and mount namespaces of its own
// (as the QEMU driver starts a VMM with its own host ids), with a file and a writable
// directory below a directory its ids cannot search (mode 0700, host root's): it sees
// only what the root holds and reads the file, can write only the writable directory,
// holds none of the clones' descriptors, sees a mount the host adds later below a shared
// mount in the writable directory (as the sandbox's shared view), and the host's tree,
// the 0700 directory's mode included, is unchanged.
func TestEntryRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mapping a range of host ids into a user namespace needs root")
	}
	const base = 2000190000
	closed := t.TempDir()
	if err := os.Chmod(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	shared, kernel := filepath.Join(closed, "shared"), filepath.Join(closed, "kernel")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(shared, base, base); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kernel, []byte("the-kernel\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A shared mount in the writable directory, as the sandbox's published view.
	view, tree, src := filepath.Join(shared, "view"), filepath.Join(closed, "tree"), filepath.Join(closed, "src")
	for _, d := range []string{view, tree, filepath.Join(tree, "sub"), src} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "hello"), []byte("arrived\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(tree, view, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(view, unix.MNT_DETACH) })
	if err := unix.Mount("", view, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}

	root := hostRoot()
	root.ReadOnly = append(root.ReadOnly, kernel)
	root.Writable = []string{shared}
	script := `echo "ROOT $(ls -A / | tr '\n' ' ')"; for f in /proc/$$/fd/*; do echo "FD $(readlink $f)"; done; ` +
		`cat ` + kernel + `; touch ` + shared + `/made && echo wrote-shared; touch /usr/x 2>/dev/null || echo usr-read-only; ` +
		`touch /y 2>/dev/null || echo root-read-only; touch ` + kernel + ` 2>/dev/null || echo kernel-read-only; ` +
		`echo ready; read x; cat ` + view + `/sub/hello`
	spec := Spec{Path: "/bin/sh", Args: []string{"-c", script}, Root: root}
	cmd, err := Command(spec)
	if err != nil {
		t.Fatal(err)
	}
	inUserNS(cmd, base)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd.Stdout, cmd.Stderr = pw, pw
	done, err := PassRoot(cmd, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(cmd.ExtraFiles), len(root.ReadOnly)+len(root.Recursive)+len(root.Writable); got != want {
		t.Errorf("PassRoot passes %d descriptors, want %d", got, want)
	}
	err = cmd.Start()
	done()
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	if held := clonesHeld(t); len(held) > 0 {
		t.Errorf("after the start this process still holds clones: %v", held)
	}
	var out bytes.Buffer
	r := bufio.NewReader(pr)
	for {
		line, err := r.ReadString('\n')
		out.WriteString(line)
		if line == "ready\n" {
			break
		}
		if err != nil {
			_ = cmd.Wait()
			t.Fatalf("no ready line: %v\n%s", err, out.String())
		}
	}
	// The program is in its root now: a mount the host adds in the shared view arrives.
	if err := unix.Mount(src, filepath.Join(view, "sub"), "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Unmount(filepath.Join(view, "sub"), unix.MNT_DETACH) }()
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(r)
	out.Write(rest)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()
	lines := strings.Split(text, "\n")
	var top, fds []string
	for _, l := range lines {
		if f, ok := strings.CutPrefix(l, "ROOT "); ok {
			top = strings.Fields(f)
		}
		if f, ok := strings.CutPrefix(l, "FD "); ok {
			fds = append(fds, f)
		}
	}
	want := []string{"dev", "proc", "tmp", "usr"}
	for _, l := range root.Links {
		want = append(want, strings.TrimPrefix(l, "/"))
	}
	for _, d := range root.ReadOnly {
		if !strings.HasPrefix(d, "/usr") && !strings.HasPrefix(d, "/dev/") && !strings.HasPrefix(d, "/tmp/") {
			want = append(want, strings.TrimPrefix(d, "/"))
		}
	}
	slices.Sort(want)
	want = slices.Compact(want)
	slices.Sort(top)
	if !slices.Equal(top, want) {
		t.Errorf("the root holds %q, want %q", top, want)
	}
	if len(fds) < 3 {
		t.Errorf("the program's descriptors: %q, want at least 0, 1 and 2", fds)
	}
	for _, fd := range fds {
		if strings.HasPrefix(fd, "/") && fd != "/dev/null" {
			t.Errorf("the program holds %s (descriptors %q), want none of the clones", fd, fds)
		}
	}
	for _, w := range []string{"the-kernel", "wrote-shared", "usr-read-only", "root-read-only", "kernel-read-only", "arrived"} {
		if !slices.Contains(lines, w) {
			t.Errorf("no %q in the output:\n%s", w, text)
		}
	}
	if _, err := os.Stat(filepath.Join(shared, "made")); err != nil {
		t.Errorf("the write to the writable directory did not reach the host: %v", err)
	}
	if st, err := os.Stat(closed); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("the 0700 directory above the root's paths: %v %v, want mode 0700 unchanged", st.Mode(), err)
	}
}

// TestPassRootFails: a path that cannot be cloned fails PassRoot naming it, with no
// descriptor left open and the command unchanged; so does a command whose program
// descriptors do not match the spec.
func TestPassRootFails(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("open_tree clones need CAP_SYS_ADMIN")
	}
	missing := filepath.Join(t.TempDir(), "missing")
	spec := Spec{Path: "/bin/true", Root: &Root{ReadOnly: []string{"/usr", "/dev/null", missing}}}
	cmd, err := Command(spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PassRoot(cmd, spec); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("PassRoot with %s: got %v, want an error naming it", missing, err)
	}
	if held := clonesHeld(t); len(held) > 0 {
		t.Errorf("after the failed PassRoot this process holds clones: %v", held)
	}
	if len(cmd.ExtraFiles) != 0 {
		t.Errorf("the failed PassRoot left %d descriptors in the command", len(cmd.ExtraFiles))
	}
	spec.Root.ReadOnly = []string{"/usr"}
	spec.ExtraFiles = 1
	if _, err := PassRoot(cmd, spec); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("PassRoot with no program descriptor set for -fds=1: got %v, want ErrInvalidArgument", err)
	}
}

// TestEntryRootWithoutClones: an entry given a root whose clones were not passed refuses
// to run the program, naming the descriptor it expected.
func TestEntryRootWithoutClones(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mapping a range of host ids into a user namespace needs root")
	}
	marker := filepath.Join(t.TempDir(), "ran")
	cmd, err := Command(Spec{Path: "/bin/sh", Args: []string{"-c", "touch " + marker}, Root: hostRoot()})
	if err != nil {
		t.Fatal(err)
	}
	inUserNS(cmd, 2000190000)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitFailed {
		t.Fatalf("run without the clones: got %v (%s), want exit %d", err, out, ExitFailed)
	}
	if !strings.Contains(string(out), "descriptor 3, the clone of /usr") {
		t.Errorf("output %q does not name descriptor 3 and /usr", out)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the program ran")
	}
}
