package sandbox

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/bundle"
	"github.com/vessel-containers/vessel/internal/oci"
)

// podContainer creates a busybox container of pod "sb" whose spec names the sandbox task's
// namespaces by path, as containerd's CRI does, with 42 standing for the sandbox task's pid.
func (e *env) podContainer(id string, args []string, edit func(*specs.Spec)) (*Container, error) {
	e.t.Helper()
	dir := e.t.TempDir()
	spec, err := bundle.CreateBusybox(dir, args, false)
	if err != nil {
		e.t.Fatal(err)
	}
	spec.Annotations = map[string]string{oci.AnnotationContainerdType: "container", oci.AnnotationContainerdSandboxID: "sb"}
	if edit != nil {
		edit(spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plan, err := oci.ContainerConfig(ctx, id, dir, spec, oci.Options{SandboxNamespaces: oci.SandboxNamespacePaths(42, nil)})
	if err != nil {
		return nil, err
	}
	return e.sb.CreateContainer(ctx, ContainerConfig{Plan: plan, Stdin: true})
}

// containerWith is env.container that also lets files be placed in the rootfs.
func (e *env) containerWith(id string, args []string, edit func(*specs.Spec), files func(rootfs string)) *Container {
	e.t.Helper()
	dir := e.t.TempDir()
	spec, err := bundle.CreateBusybox(dir, args, false)
	if err != nil {
		e.t.Fatal(err)
	}
	if edit != nil {
		edit(spec)
	}
	if files != nil {
		files(filepath.Join(dir, spec.Root.Path))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plan, err := oci.ContainerConfig(ctx, id, dir, spec, oci.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := e.sb.CreateContainer(ctx, ContainerConfig{Plan: plan, Stdin: true})
	if err != nil {
		e.t.Fatalf("create container %s: %v", id, err)
	}
	return c
}

// sandboxNamespace sets the spec's namespace of type t to the sandbox's path.
func sandboxNamespace(spec *specs.Spec, t specs.LinuxNamespaceType, name string) {
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == t {
			spec.Linux.Namespaces[i].Path = "/proc/42/ns/" + name
		}
	}
}

// TestPodSharesSandboxNamespaces runs a pod the way containerd's CRI lays it out: a sandbox
// container with its own namespaces, then a container whose ipc, uts and pid namespaces are
// the sandbox's by path. In the guest the container must be in the sandbox container's.
func TestPodSharesSandboxNamespaces(t *testing.T) {
	e := newEnv(t)
	pause := e.container("pause", []string{"sleep", "600"}, func(s *specs.Spec) { s.Hostname = "podhost" })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := pause.Start(ctx); err != nil {
		t.Fatal(err)
	}
	script := `hostname; cat /proc/1/cmdline; echo
for ns in ipc uts pid; do [ "$(readlink /proc/1/ns/$ns)" = "$(readlink /proc/self/ns/$ns)" ] && echo $ns-shared; done`
	c, err := e.podContainer("app", []string{"sh", "-c", script}, func(s *specs.Spec) {
		s.Hostname = ""
		sandboxNamespace(s, specs.IPCNamespace, "ipc")
		sandboxNamespace(s, specs.UTSNamespace, "uts")
		sandboxNamespace(s, specs.PIDNamespace, "pid")
	})
	if err != nil {
		t.Fatal(err)
	}
	code, out, stderr := e.run(c, nil)
	if code != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	want := "podhost\nsleep\x00600\x00\nipc-shared\nuts-shared\npid-shared\n"
	if out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}

	// A host namespace that is not the sandbox's is refused, naming the path.
	_, err = e.podContainer("stray", []string{"true"}, func(s *specs.Spec) {
		for i, ns := range s.Linux.Namespaces {
			if ns.Type == specs.IPCNamespace {
				s.Linux.Namespaces[i].Path = "/proc/1/ns/ipc"
			}
		}
	})
	if err == nil || !strings.Contains(err.Error(), `"/proc/1/ns/ipc": a host namespace means nothing inside the VM`) {
		t.Errorf("foreign ipc path: err %v", err)
	}
}

// TestNonBindMounts gives a container file systems with types and options as podman and
// nerdctl write them (the busybox spec already has proc, sysfs, mqueue, devpts and cgroup):
// each is mounted in the guest with its type and options.
func TestNonBindMounts(t *testing.T) {
	e := newEnv(t)
	c := e.containerWith("m", []string{"sh", "-c", "cat /proc/self/mounts; cat /etc/hostname.d/x"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs", Options: []string{"rw", "rprivate", "nosuid", "nodev", "size=1m", "mode=1770"}},
			specs.Mount{Destination: "/etc/hostname.d", Type: "tmpfs", Source: "tmpfs", Options: []string{"rw", "rprivate", "nosuid", "nodev", "tmpcopyup"}},
			specs.Mount{Destination: "/proc2", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			specs.Mount{Destination: "/mq2", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		)
	}, func(rootfs string) {
		if err := os.MkdirAll(filepath.Join(rootfs, "etc/hostname.d"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rootfs, "etc/hostname.d/x"), []byte("copied up\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	code, out, stderr := e.run(c, nil)
	if code != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	for _, want := range []string{
		"tmpfs /scratch tmpfs rw,nosuid,nodev,relatime,size=1024k,mode=1770",
		"tmpfs /etc/hostname.d tmpfs rw,nosuid,nodev,relatime",
		"proc /proc2 proc rw,nosuid,nodev,noexec",
		"mqueue /mq2 mqueue rw,nosuid,nodev,noexec",
		"copied up",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}

// TestSpecDevices lists devices in linux.devices: each appears in the container with its
// type, numbers (a FIFO's are ignored, as runc does), mode and owner. Nodes of devices the
// host does not have are made as given, as runc makes them, and a node of a device only
// the guest has is refused.
func TestSpecDevices(t *testing.T) {
	e := newEnv(t)
	mode := func(m os.FileMode) *os.FileMode { return &m }
	id := func(n uint32) *uint32 { return &n }
	c := e.container("d", []string{"sh", "-c", "ls -ln /dev/fifo /dev/null2 /dev/test1 /dev/test2; echo hi > /dev/null2 && echo wrote"}, func(s *specs.Spec) {
		s.Linux.Devices = append(s.Linux.Devices,
			specs.LinuxDevice{Path: "/dev/fifo", Type: "p", Major: 8, Minor: 666, FileMode: mode(0o640), UID: id(1), GID: id(2)},
			specs.LinuxDevice{Path: "/dev/null2", Type: "c", Major: 1, Minor: 3, FileMode: mode(0o666), UID: id(3), GID: id(4)},
			specs.LinuxDevice{Path: "/dev/test1", Type: "c", Major: 10, Minor: 666, FileMode: mode(0o600)},
			specs.LinuxDevice{Path: "/dev/test2", Type: "b", Major: 4095, Minor: 666, FileMode: mode(0o600)},
		)
	})
	code, out, stderr := e.run(c, nil)
	if code != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	for _, want := range []string{"prw-r-----    1 1        2 ", "crw-rw-rw-    1 3        4           1,   3 ", "crw-------    1 0        0          10, 666 ", "brw-------    1 0        0        4095, 666 ", "wrote"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}

// TestReadOnlyBindSubmounts binds a host directory with a submount read-only: with `ro` the
// top is read-only and the submount writable (runc's top-only `ro`); with `rro` both are
// read-only.
func TestReadOnlyBindSubmounts(t *testing.T) {
	src := t.TempDir()
	sub := filepath.Join(src, "sub")
	if err := os.Mkdir(sub, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(sub, syscall.MNT_DETACH) })
	e := newEnv(t)
	script := `echo a > /vol/top 2>/dev/null && echo top-written; echo b > /vol/sub/f 2>/dev/null && echo sub-written; true`
	for _, tc := range []struct {
		opt, want string
	}{
		{"ro", "sub-written\n"},
		{"rro", ""},
	} {
		t.Run(tc.opt, func(t *testing.T) {
			c := e.container("ro-"+tc.opt, []string{"sh", "-c", script}, func(s *specs.Spec) {
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: src, Options: []string{"rbind", tc.opt}})
			})
			code, out, stderr := e.run(c, nil)
			if code != 0 || out != tc.want {
				t.Errorf("exit %d, stdout %q (want %q), stderr %q", code, out, tc.want, stderr)
			}
			if tc.want != "" {
				if b, err := os.ReadFile(filepath.Join(sub, "f")); err != nil || string(b) != "b\n" {
					t.Errorf("host submount file: %q, %v", b, err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := e.sb.DeleteContainer(ctx, c.ID()); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestPodPidNamespaceStop stops a pod whose containers share the sandbox's pid namespace the
// way containerd's StopPodSandbox does (the container, then the sandbox container, each
// killed and waited for), and then the other way round: the VM keeps running and every call
// answers.
func TestPodPidNamespaceStop(t *testing.T) {
	for _, order := range []string{"container first", "sandbox first"} {
		t.Run(order, func(t *testing.T) {
			e := newEnv(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			pause := e.container("pause", []string{"sleep", "600"}, nil)
			if err := pause.Start(ctx); err != nil {
				t.Fatal(err)
			}
			app, err := e.podContainer("app", []string{"sh", "-c", "sleep 600 & sleep 700"}, func(s *specs.Spec) {
				sandboxNamespace(s, specs.PIDNamespace, "pid")
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := app.Start(ctx); err != nil {
				t.Fatal(err)
			}
			first, second := app, pause
			if order == "sandbox first" {
				first, second = pause, app
			}
			for i, c := range []*Container{first, second} {
				// Killing the sandbox container, init of the pid namespace, kills the other.
				if err := c.Kill(ctx, "", syscall.SIGKILL, false); err != nil && (i == 0 || first != pause || !errdefs.IsNotFound(err)) {
					t.Fatalf("kill %s: %v", c.ID(), err)
				}
				if code, err := c.Wait(ctx, ""); err != nil || code != 137 {
					t.Fatalf("wait %s: %d, %v", c.ID(), code, err)
				}
				if err := c.Kill(ctx, "", syscall.SIGKILL, true); err != nil && !errdefs.IsNotFound(err) {
					t.Errorf("kill --all %s after its exit: %v", c.ID(), err)
				}
			}
			for _, c := range []*Container{app, pause} {
				if err := e.sb.DeleteContainer(ctx, c.ID()); err != nil {
					t.Errorf("delete %s: %v", c.ID(), err)
				}
			}
		})
	}
}

// TestKillAfterSandboxEnds kills a pod container after its sandbox's VM was stopped (the
// sandbox container deleted first, as StopPodSandbox may): there is no process left, and
// the answer is ErrNotFound, not a closed connection.
func TestKillAfterSandboxEnds(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app := e.container("app", []string{"sleep", "600"}, nil)
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.sb.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if err := app.Kill(ctx, "", syscall.SIGKILL, true); !errdefs.IsNotFound(err) {
		t.Errorf("kill after the sandbox ended: %v, want ErrNotFound", err)
	}
}

// TestMountPropagationHostToContainer binds a shared host directory with `rslave`: a mount
// made on the host under it after the container started shows in the container.
func TestMountPropagationHostToContainer(t *testing.T) {
	src := t.TempDir()
	if err := syscall.Mount(src, src, "", syscall.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(src, syscall.MNT_DETACH) })
	if err := syscall.Mount("", src, "", syscall.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(src, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	c := e.container("prop", []string{"sh", "-c", "read line; cat /vol/sub/marker"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: src, Options: []string{"rbind", "rslave"}})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stdinR, stdinW := io.Pipe()
	var out, errb strings.Builder
	st := c.Attach(ctx, "", IO{Stdin: stdinR, Stdout: &out, Stderr: &errb})
	defer st.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Mounted after the container was created and started: only propagation brings it in.
	if err := syscall.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(sub, syscall.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(sub, "marker"), []byte("propagated\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := stdinW.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	stdinW.Close()
	code, err := c.Wait(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Wait(); err != nil {
		t.Fatal(err)
	}
	if code != 0 || out.String() != "propagated\n" {
		t.Errorf("exit %d, stdout %q, stderr %q: want the host's new mount in the container", code, out.String(), errb.String())
	}
	if err := e.sb.DeleteContainer(ctx, c.ID()); err != nil {
		t.Error(err)
	}
}

// TestUserNamespace runs a container in a user namespace of its own, with a bind mount
// whose source is relative to the bundle: it runs as root mapped to 100000 and reads the
// volume. Its root file system is owned by the mapped root, as runc requires.
func TestUserNamespace(t *testing.T) {
	e := newEnv(t)
	c := e.containerWith("u", []string{"sh", "-c", "cat /proc/self/uid_map; id -u; cat /data/f; ls /sys/class >/dev/null && echo sys"}, func(s *specs.Spec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: "data", Options: []string{"rbind", "ro"}})
	}, func(rootfs string) {
		data := filepath.Join(filepath.Dir(rootfs), "data")
		if err := os.Mkdir(data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, "f"), []byte("volume\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		// Owned by the container's root, as runc requires of a user namespace's rootfs.
		err := filepath.Walk(rootfs, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, 100000, 100000)
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	code, out, stderr := e.run(c, nil)
	if code != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if !strings.Contains(out, "0     100000      65536\n0\nvolume\nsys\n") {
		t.Errorf("stdout %q, want the mapping, uid 0, the volume's file and /sys", out)
	}
}

// TestMaskedAndReadonlyPaths checks runc's behaviour for maskedPaths and readonlyPaths on a
// rootfs shared from the host: a masked directory is an empty read-only file system (EROFS
// on write), a masked file reads empty, a read-only file and directory refuse writes with
// EROFS, and a read-only device node still works as a device.
func TestMaskedAndReadonlyPaths(t *testing.T) {
	e := newEnv(t)
	script := `touch /mdir/x 2>&1; cat /mfile; echo masked-file-read; echo hi 2>&1 > /rofile; touch /rodir/x 2>&1
echo x > /dev/null2 && echo device-written`
	c := e.containerWith("m", []string{"sh", "-c", script}, func(s *specs.Spec) {
		s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "/mdir", "/mfile")
		s.Linux.ReadonlyPaths = append(s.Linux.ReadonlyPaths, "/rofile", "/rodir", "/dev/null2")
		m := os.FileMode(0o666)
		s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: "/dev/null2", Type: "c", Major: 1, Minor: 3, FileMode: &m})
	}, func(rootfs string) {
		for _, d := range []string{"mdir", "rodir"} {
			if err := os.Mkdir(filepath.Join(rootfs, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range []string{"mfile", "rofile"} {
			if err := os.WriteFile(filepath.Join(rootfs, f), []byte("secret\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})
	code, out, stderr := e.run(c, nil)
	if code != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	want := "touch: /mdir/x: Read-only file system\nmasked-file-read\n"
	if !strings.HasPrefix(out, want) || !strings.Contains(out, "/rofile: Read-only file system\n") ||
		!strings.Contains(out, "touch: /rodir/x: Read-only file system\n") || !strings.HasSuffix(out, "device-written\n") {
		t.Errorf("stdout %q, stderr %q", out, stderr)
	}
}

// TestDeviceCgroupRules makes a device node the spec does not list (/dev/kmsg, 1:11) and
// writes it: the device cgroup of linux.resources.devices decides, as with runc.
func TestDeviceCgroupRules(t *testing.T) {
	e := newEnv(t)
	script := `mknod /dev/kmsg2 c 1 11 && echo vessel-test > /dev/kmsg2 && echo written`
	for _, allow := range []bool{false, true} {
		id := "deny"
		if allow {
			id = "allow"
		}
		c := e.container(id, []string{"sh", "-c", script}, func(s *specs.Spec) {
			for _, set := range []*[]string{&s.Process.Capabilities.Bounding, &s.Process.Capabilities.Effective, &s.Process.Capabilities.Permitted} {
				*set = append(*set, "CAP_MKNOD")
			}
			if allow {
				major, minor := int64(1), int64(11)
				s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Minor: &minor, Access: "rwm"})
			}
		})
		code, out, stderr := e.run(c, nil)
		if allow && (code != 0 || out != "written\n") {
			t.Errorf("allowed: exit %d, stdout %q, stderr %q", code, out, stderr)
		}
		if !allow && (code == 0 || !strings.Contains(stderr, "Operation not permitted")) {
			t.Errorf("denied: exit %d, stdout %q, stderr %q, want the write refused", code, out, stderr)
		}
	}
}

// TestReadonlySpecialFiles lists a device node and a FIFO of the root file system in
// linux.readonlyPaths: the container starts (over 9p, statfs of a device node fails) and
// both are read-only mounts in it.
func TestReadonlySpecialFiles(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	spec, err := bundle.CreateBusybox(dir, []string{"sh", "-c", "grep -E ' /ro-(dev|fifo) ' /proc/self/mounts | cut -d' ' -f2,4 | cut -d, -f1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(dir, spec.Root.Path)
	if err := unix.Mknod(filepath.Join(rootfs, "ro-dev"), unix.S_IFBLK|0o666, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(rootfs, "ro-fifo"), 0o666); err != nil {
		t.Fatal(err)
	}
	spec.Linux.ReadonlyPaths = append(spec.Linux.ReadonlyPaths, "/ro-dev", "/ro-fifo")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plan, err := oci.ContainerConfig(ctx, "ro", dir, spec, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.sb.CreateContainer(ctx, ContainerConfig{Plan: plan, Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	code, out, stderr := e.run(c, nil)
	if want := "/ro-dev ro\n/ro-fifo ro\n"; code != 0 || out != want {
		t.Errorf("exit %d, stdout %q (want %q), stderr %q", code, out, want, stderr)
	}
}
