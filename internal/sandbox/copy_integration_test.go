package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/sharefs/copyfs"
)

// newCopyEnv boots a sandbox in copy mode with copy_sync set to sync.
func newCopyEnv(t *testing.T, sync copyfs.SyncMode) *env {
	t.Helper()
	eff := config.Default()
	eff.Hypervisor.SharedFS = hypervisor.SharedFSNone
	eff.Hypervisor.CopySync = string(sync)
	return newEnvWith(t, func(c *Config) { c.VM.SharedFS, c.Effective = hypervisor.SharedFSNone, eff })
}

// kubeletVolumeDir makes a directory laid out where kubelet keeps a pod's volume of kind
// (configmap, secret, ...).
func kubeletVolumeDir(t *testing.T, kind, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pods", "0d7c4d52-uid", "volumes", "kubernetes.io~"+kind, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// output is a container's stdout that a test can wait on while the container runs.
type output struct {
	// mu guards buf.
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{}
}

func newOutput() *output { return &output{written: make(chan struct{}, 1)} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	n, err := o.buf.Write(p)
	o.mu.Unlock()
	select {
	case o.written <- struct{}{}:
	default:
	}
	return n, err
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitLine waits until the output has the line want, at most within, and returns how long
// that took.
func (o *output) waitLine(t *testing.T, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		if strings.Contains("\n"+o.String(), "\n"+want+"\n") {
			return time.Since(start)
		}
		select {
		case <-o.written:
		case <-deadline.C:
			t.Fatalf("no line %q within %v; output:\n%s", want, within, o.String())
		}
	}
}

// TestCopyMode runs containers from a copied root file system with copied volumes in a
// VM that has no shared file system device, and checks what copy mode refuses: a device
// node, and volumes too large for the guest's memory, refused before anything is copied.
func TestCopyMode(t *testing.T) {
	e := newCopyEnv(t, copyfs.SyncAll)
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(e.sb.VM().Pid()), "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dev := range []string{"virtio-9p", "vhost-user-fs", "fsdev"} {
		if bytes.Contains(cmdline, []byte(dev)) {
			t.Fatalf("copy mode VM has a shared file system device (%s): %s", dev, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		}
	}

	vol := t.TempDir()
	write := func(rel, data string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(vol, rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(vol, rel), []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("sub/hello", "hello from the host", 0o640)
	write("run.sh", "#!/bin/sh\necho script ran\n", 0o755)
	if err := os.Chown(filepath.Join(vol, "sub/hello"), 1234, 5678); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/hello", filepath.Join(vol, "link")); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("copy"), 3<<20/4+1) // 3 MiB and 4 bytes: four parts
	if err := os.WriteFile(filepath.Join(vol, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "single")
	if err := os.WriteFile(file, []byte("a single file"), 0o644); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	c := e.container("c1", []string{"sh", "-c", `set -e
cat /vol/link; echo
stat -c '%a %u:%g' /vol/sub/hello
/vol/run.sh
sha256sum /vol/big | cut -d' ' -f1
cat /single; echo
echo written > /vol/new; cat /vol/new
touch /rootfs-write && echo rootfs writable
readlink /bin/sh`}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, volume("/vol", vol, "rbind", "rw"), volume("/single", file, "bind", "ro"))
	})
	e.sb.copies.mu.Lock()
	t.Logf("create with copies (%.1f MiB) took %v", float64(e.sb.copies.usedLocked())/(1<<20), time.Since(created).Round(time.Millisecond))
	e.sb.copies.mu.Unlock()
	code, out, errs := e.run(c, nil)
	want := fmt.Sprintf("hello from the host\n640 1234:5678\nscript ran\n%x\na single file\nwritten\nrootfs writable\nbusybox\n", sha256.Sum256(big))
	if code != 0 || out != want {
		t.Fatalf("exit %d, stdout %q, stderr %q; want stdout %q", code, out, errs, want)
	}
	// The container's writes stay in the guest.
	if _, err := os.Stat(filepath.Join(vol, "new")); !os.IsNotExist(err) {
		t.Fatalf("a write in the guest's copy reached the host: %v", err)
	}
	// A second container with the same volume shares the copy, as containers of a pod
	// share a volume: it sees what the first wrote.
	c2 := e.container("c2", []string{"cat", "/vol/new"}, func(s *specs.Spec) { s.Mounts = append(s.Mounts, volume("/vol", vol, "rbind", "ro")) })
	if code, out, errs := e.run(c2, nil); code != 0 || out != "written\n" {
		t.Fatalf("second container: exit %d, %q %q; want c1's write", code, out, errs)
	}
	if got := len(e.sb.copies.volumes); got != 2 {
		t.Fatalf("%d volumes copied, want 2 (the directory shared by c1 and c2, the file)", got)
	}
	for _, id := range []string{"c1", "c2"} {
		if err := e.sb.DeleteContainer(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.sb.copies.used(); got != 0 {
		t.Fatalf("deleted containers still hold %d bytes of the copy budget", got)
	}

	// A device node cannot be copied.
	devVol := t.TempDir()
	if err := unix.Mknod(filepath.Join(devVol, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	_, err = e.tryContainer("dev", []string{"true"}, func(s *specs.Spec) { s.Mounts = append(s.Mounts, volume("/dev-vol", devVol, "rbind")) })
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), filepath.Join(devVol, "null")+" is a device node") {
		t.Fatalf("volume with a device node: %v; want an invalid-argument error naming the node", err)
	}

	// Two sparse files of 60 MiB take 120 MiB in the guest's tmpfs; the VM's 256 MiB
	// give the copies 112 MiB.
	bigVol := t.TempDir()
	for _, name := range []string{"a", "b"} {
		f, err := os.Create(filepath.Join(bigVol, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(60 << 20); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	_, err = e.tryContainer("big", []string{"true"}, func(s *specs.Spec) { s.Mounts = append(s.Mounts, volume("/big", bigVol, "rbind")) })
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("too large a volume: %v; want invalid argument", err)
	}
	for _, want := range []string{"volume " + bigVol + " (mount /big) takes 120.0 MiB", "of the 112.0 MiB", "shared_fs", "default_memory"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
	t.Logf("refused: %v", err)
	if _, err := e.sb.Container("big"); !errdefs.IsNotFound(err) {
		t.Fatalf("refused container still in the sandbox: %v", err)
	}
	if got := e.sb.copies.used(); got != 0 {
		t.Fatalf("refused container holds %d bytes of the copy budget", got)
	}
	// Guest root sees no copy but its own: nothing of c1 and c2, nor of the refused ones.
	look := e.container("look", []string{"sh", "-c", "cd /proc/1/root" + copyfs.GuestRoot + " && echo $(ls containers) / $(ls volumes)"}, privilegedNoPidNS)
	if code, out, errs := e.run(look, nil); code != 0 || out != "look /\n" {
		t.Fatalf("guest copies: exit %d, %q %q; want only look's root file system", code, out, errs)
	}
}

// TestCopyModeSync keeps a Kubernetes ConfigMap volume in sync (copy_sync = kubernetes)
// and checks that a change on the host shows in the container within 2 s: a new file, a
// changed one, a rename and a removal; a plain volume, outside the allowlist, is copied
// once and never synced.
func TestCopyModeSync(t *testing.T) {
	e := newCopyEnv(t, copyfs.SyncKubernetes)
	kube := kubeletVolumeDir(t, "configmap", "settings")
	plain := t.TempDir()
	for dir, data := range map[string]string{kube: "k1", plain: "p1"} {
		if err := os.WriteFile(filepath.Join(dir, "a"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The container prints the state of both volumes whenever it changes.
	c := e.container("watch", []string{"sh", "-c", `
state() { for f in $(ls -A "$1" | sort); do printf '%s=%s ' "$f" "$(cat "$1/$f")"; done; }
last=
while :; do
  s="kube: $(state /kube)| plain: $(state /plain)"
  [ "$s" != "$last" ] && echo "$s" && last=$s
  sleep 0.05
done`}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, volume("/kube", kube, "rbind", "ro"), volume("/plain", plain, "rbind", "ro"))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := newOutput()
	st := c.Attach(ctx, "", IO{Stdout: out})
	defer st.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	out.waitLine(t, "kube: a=k1 | plain: a=p1 ", time.Minute)

	for _, step := range []struct {
		name   string
		change func() error
		want   string
	}{
		{"create", func() error {
			// The plain volume changes first: by the time the ConfigMap's change shows,
			// a plain volume that was synced would show its change too.
			if err := os.WriteFile(filepath.Join(plain, "b"), []byte("p2"), 0o644); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(kube, "b"), []byte("k2"), 0o644)
		}, "kube: a=k1 b=k2 | plain: a=p1 "},
		{"write", func() error { return os.WriteFile(filepath.Join(kube, "a"), []byte("k3"), 0o644) }, "kube: a=k3 b=k2 | plain: a=p1 "},
		{"rename", func() error { return os.Rename(filepath.Join(kube, "a"), filepath.Join(kube, "c")) }, "kube: b=k2 c=k3 | plain: a=p1 "},
		{"remove", func() error {
			if err := os.Remove(filepath.Join(plain, "a")); err != nil {
				return err
			}
			return os.Remove(filepath.Join(kube, "b"))
		}, "kube: c=k3 | plain: a=p1 "},
	} {
		changed := time.Now()
		if err := step.change(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		out.waitLine(t, step.want, 2*time.Second)
		t.Logf("%s: seen in the container %v after the host change", step.name, time.Since(changed).Round(time.Millisecond))
	}
	if err := c.Kill(ctx, "", unix.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, ""); err != nil {
		t.Fatal(err)
	}
	// The watcher stops with the container.
	if n := e.sb.copies.watching(); n != 1 {
		t.Fatalf("%d volumes watched, want 1 (the ConfigMap)", n)
	}
	if err := e.sb.DeleteContainer(ctx, "watch"); err != nil {
		t.Fatal(err)
	}
	if n := e.sb.copies.watching(); n != 0 {
		t.Fatalf("%d volumes still watched after delete", n)
	}
}

// watching counts the volumes with a watcher.
func (cp *copies) watching() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	n := 0
	for _, v := range cp.volumes {
		if v.watcher != nil {
			n++
		}
	}
	return n
}
