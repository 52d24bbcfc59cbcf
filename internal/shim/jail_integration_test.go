package shim_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/jail"
	"github.com/vessel-containers/vessel/internal/jail/jailtest"
)

// jailProbe is what the container does through 9p in its rootfs: a file given to another
// owner and made setuid (and written, which keeps the bit for a writer with
// CAP_FSETID), a setgid and sticky directory given away, and last a marker. mknod (a
// device and a FIFO) is tried too and its result recorded: through the rootfs export it
// fails with ENXIO whether QEMU is confined or not.
const jailProbe = `exec 2>/jprobe-log
touch /jprobe && chown 1000:1001 /jprobe && chmod 4755 /jprobe && echo x >>/jprobe &&
mkdir /jprobe-d && chown 2000:2002 /jprobe-d && chmod 3777 /jprobe-d &&
{ mknod /jprobe-null c 1 3 2>/jprobe-mknod; mknod /jprobe-fifo p 2>>/jprobe-mknod; true; } &&
touch /jprobe-done && exec sleep 1000`

// TestJailedQEMU runs a container in a real VM with QEMU as host root (the user namespace
// of the default jail off) and checks its QEMU from the host: the
// seccomp filter, no_new_privs, exactly the kept capabilities, and only its own
// descriptors; and that the container's chown and chmod (setuid, setgid, sticky) through
// 9p did on the host what they did before QEMU was confined.
func TestJailedQEMU(t *testing.T) {
	// QEMU as host root: the jail without a user namespace (vmm_id_range = "").
	h := newHarnessConfig(t, "vmm_id_range = \"\"\n")
	const id = "jailed"
	h.start(id, nil, "sh", "-c", jailProbe)

	done := findUnder(t, h.sbRoot, "jprobe-done", 2*time.Minute)
	if done == "" {
		log, _ := os.ReadFile(findUnder(t, h.sbRoot, "jprobe-log", 0))
		t.Fatalf("the container's probe did not finish; its stderr: %q", log)
	}
	root := filepath.Dir(done)
	for _, c := range []struct {
		name     string
		uid, gid uint32
		mode     uint32 // type and permission bits
	}{
		{"jprobe", 1000, 1001, unix.S_IFREG | unix.S_ISUID | 0o755},
		{"jprobe-d", 2000, 2002, unix.S_IFDIR | unix.S_ISGID | unix.S_ISVTX | 0o777},
	} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, c.name), &st); err != nil {
			t.Errorf("%s on the host: %v", c.name, err)
			continue
		}
		if st.Uid != c.uid || st.Gid != c.gid || st.Mode != c.mode {
			t.Errorf("%s on the host: uid %d gid %d mode %#o, want %d %d %#o",
				c.name, st.Uid, st.Gid, st.Mode, c.uid, c.gid, c.mode)
		}
	}
	mknodErr, _ := os.ReadFile(filepath.Join(root, "jprobe-mknod"))
	var dev unix.Stat_t
	devErr := unix.Lstat(filepath.Join(root, "jprobe-null"), &dev)
	t.Logf("mknod through 9p: container says %q; device on the host: %v (mode %#o rdev %#x)",
		mknodErr, devErr, dev.Mode, dev.Rdev)

	pid := h.qemuPid(id)
	qmp := findUnder(t, h.sbRoot, "qmp.sock", 0)
	if qmp == "" {
		t.Fatal("no qmp.sock under the sandbox root")
	}
	fds := jailtest.Check(t, pid, jailtest.Want{
		Caps:    []jail.Cap{jail.CapChown, jail.CapDACOverride, jail.CapFowner, jail.CapFsetid, jail.CapMknod, jail.CapSetfcap},
		Seccomp: 2,
		// qemu.log in the state directory, and the 9p export with the files the
		// guest has open, both under the sandbox root.
		Dirs:      []string{h.sbRoot},
		Devices:   []string{"/dev/null", "/dev/urandom", "/dev/kvm"},
		SocketDir: filepath.Dir(qmp),
	})
	t.Logf("qemu pid %d descriptors: %v", pid, fds)
	var logs int
	for _, target := range fds {
		if filepath.Base(target) == "qemu.log" {
			logs++
		}
	}
	if logs != 2 {
		t.Errorf("stdout and stderr: %d descriptors on qemu.log, want 2", logs)
	}
}

// findUnder waits up to timeout for a file named name anywhere under dir and returns
// its path, or "" (at once, with timeout 0, when it is not there).
func findUnder(t *testing.T, dir, name string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var found string
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil //nolint:nilerr // a directory that went away is skipped
			}
			if d.Name() == name {
				found = p
				return filepath.SkipAll
			}
			if d.IsDir() && (d.Name() == "proc" || d.Name() == "sys" || strings.HasPrefix(d.Name(), ".")) && p != dir {
				return filepath.SkipDir
			}
			return nil
		})
		if found != "" || time.Now().After(deadline) {
			return found
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// findShared is findUnder over a sandbox's shared trees as its file servers see them: a
// jailed VMM's shares are mounted in the file server's mount namespace only, not in the
// host's. The roots searched are the 9p export in the root of the VMM vmm (its -fsdev
// path) and the roots of the virtiofsd processes serving a sandbox under sbRoot.
func findShared(t *testing.T, vmm int, sbRoot, name string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, dir := range shareRoots(t, vmm, sbRoot) {
			if p := findUnder(t, dir, name, 0); p != "" {
				return p
			}
		}
		if time.Now().After(deadline) {
			return ""
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// shareRoots are the directories findShared searches.
func shareRoots(t *testing.T, vmm int, sbRoot string) []string {
	t.Helper()
	var dirs []string
	if out, err := exec.Command("pgrep", "-f", "virtiofsd.*"+sbRoot).Output(); err == nil {
		for _, p := range strings.Fields(string(out)) {
			dirs = append(dirs, "/proc/"+p+"/root/") // the slash: walk what the link leads to
		}
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(vmm) + "/cmdline")
	if err != nil {
		t.Fatalf("the vmm's command line: %v", err)
	}
	args := strings.Split(string(cmdline), "\x00")
	for i, a := range args {
		if a != "-fsdev" || i+1 == len(args) {
			continue
		}
		_, path, ok := strings.Cut(args[i+1], ",path=")
		if !ok {
			continue
		}
		path, _, _ = strings.Cut(path, ",security_model=")
		dirs = append(dirs, "/proc/"+strconv.Itoa(vmm)+"/root"+strings.ReplaceAll(path, ",,", ","))
	}
	return dirs
}
