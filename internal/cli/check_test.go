package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	_ "github.com/vessel-containers/vessel/internal/hypervisor/qemu" // the jail check asks the driver
	"github.com/vessel-containers/vessel/internal/idrange"
)

type fakeInfo struct{ mode fs.FileMode }

func (f fakeInfo) Name() string       { return "f" }
func (f fakeInfo) Size() int64        { return 1 }
func (f fakeInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fakeInfo) Sys() any           { return nil }

// fakeHost has the given files and devices and nothing else.
func fakeHost(kvm bool, files map[string]fs.FileMode, devices ...string) probes {
	return probes{
		kvm: func() error {
			if kvm {
				return nil
			}
			return errors.New("/dev/kvm: KVM_CREATE_VM: no such device")
		},
		openRW: func(p string) error {
			for _, d := range devices {
				if d == p {
					return nil
				}
			}
			return fs.ErrNotExist
		},
		stat: func(p string) (fs.FileInfo, error) {
			if m, ok := files[p]; ok {
				return fakeInfo{m}, nil
			}
			return nil, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
		},
		cgroups: func() (string, error) { return "hybrid", nil },
		confine: func() error { return nil },
		vmmJail: func(driver, binary string) error {
			if driver != "qemu" || binary != config.DefaultHypervisorPath {
				return fmt.Errorf("jail check of %s %s, want qemu %s", driver, binary, config.DefaultHypervisorPath)
			}
			return nil
		},
		userns: func() error { return nil },
		idmap:  func(string) error { return nil },
		ksm:    func() error { return nil },
		idConflicts: func(p idrange.Pool) ([]string, error) {
			if p.String() != config.DefaultVMMIDRange && p.String() != "100000-165535" {
				return nil, fmt.Errorf("pool %s, want the configured one", p)
			}
			return nil, nil
		},
	}
}

// poolInUse is h where /etc/subuid gives someone ids of every pool.
func poolInUse(h probes) probes {
	h.idConflicts = func(idrange.Pool) ([]string, error) {
		return []string{"/etc/subuid gives alice ids 100000-165535"}, nil
	}
	return h
}

// noKSM is h with the host's kernel samepage merging off.
func noKSM(h probes) probes {
	h.ksm = func() error { return errors.New("kernel samepage merging is off") }
	return h
}

// noJail is h on a host whose hypervisor has no seccomp and that has no user namespaces.
func noJail(h probes) probes {
	h.vmmJail = func(string, string) error { return errors.New("-sandbox support is not enabled in this QEMU binary") }
	h.confine = func() error { return errors.New("cap_setpcap is not effective") }
	h.userns = func() error { return errors.New("user namespaces: operation not permitted") }
	h.idmap = func(string) error { return errors.New("idmap: invalid argument") }
	return h
}

func allFiles() map[string]fs.FileMode {
	return map[string]fs.FileMode{
		config.DefaultHypervisorPath: 0o755,
		config.DefaultKernel:         0o644,
		config.DefaultInitrd:         0o644,
		"/dev/urandom":               fs.ModeDevice | fs.ModeCharDevice | 0o666,
		config.DefaultVirtioFSDaemon: 0o755,
	}
}

func TestRunChecks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    func(*config.Config)
		host   probes
		failed []string
		warned []string
	}{
		{name: "all there, no kvm", cfg: func(*config.Config) {}, host: fakeHost(false, allFiles()),
			warned: []string{"kvm", "vhost-vsock", "vhost-net"}},
		{name: "everything", cfg: func(*config.Config) {}, host: fakeHost(true, allFiles(), "/dev/vhost-vsock", "/dev/vhost-net")},
		{name: "ksm off", cfg: func(*config.Config) {}, host: noKSM(fakeHost(true, allFiles(), "/dev/vhost-vsock", "/dev/vhost-net")),
			warned: []string{"ksm"}},
		{name: "kvm required", cfg: func(c *config.Config) { c.Hypervisor.Accelerator = hypervisor.AccelKVM },
			host: fakeHost(false, allFiles()), failed: []string{"kvm"}, warned: []string{"vhost-vsock", "vhost-net"}},
		{name: "vsock required", cfg: func(c *config.Config) { c.Hypervisor.UseVsock = true },
			host: fakeHost(true, allFiles(), "/dev/vhost-net"), failed: []string{"vhost-vsock"}},
		{name: "missing guest", cfg: func(*config.Config) {}, host: fakeHost(true, map[string]fs.FileMode{
			config.DefaultHypervisorPath: 0o644, "/dev/urandom": 0o644}, "/dev/vhost-vsock", "/dev/vhost-net"),
			failed: []string{"hypervisor", "kernel", "initrd", "entropy"}, warned: []string{"virtiofsd"}},
		{name: "virtiofsd when used", cfg: func(c *config.Config) {
			c.Hypervisor.SharedFS = hypervisor.SharedFSVirtioFS
			c.Hypervisor.VirtioFSDaemon = "/opt/virtiofsd"
		}, host: fakeHost(true, allFiles(), "/dev/vhost-vsock", "/dev/vhost-net"), failed: []string{"virtiofsd"}},
		{name: "virtiofsd missing, not used", cfg: func(c *config.Config) { c.Hypervisor.VirtioFSDaemon = "/opt/virtiofsd" },
			host: fakeHost(true, allFiles(), "/dev/vhost-vsock", "/dev/vhost-net"), warned: []string{"virtiofsd"}},
		{name: "jailer and image when set", cfg: func(c *config.Config) {
			c.Hypervisor.JailerPath = "/opt/jailer"
			c.Hypervisor.Initrd, c.Hypervisor.Image = "", "/opt/disk.img"
		}, host: fakeHost(true, allFiles(), "/dev/vhost-vsock", "/dev/vhost-net"), failed: []string{"image", "jailer"}},
		{name: "no jail", cfg: func(*config.Config) {}, host: noJail(fakeHost(true, allFiles(), "/dev/vhost-vsock", "/dev/vhost-net")),
			failed: []string{"jail: seccomp sandbox", "jail: capabilities", "jail: user namespaces", "jail: idmapped mounts"}},
		{name: "no jail, vmm as root", cfg: func(c *config.Config) { c.Hypervisor.VMMIDRange = "" },
			host:   noJail(fakeHost(true, allFiles(), "/dev/vhost-vsock", "/dev/vhost-net")),
			failed: []string{"jail: seccomp sandbox", "jail: capabilities"},
			warned: []string{"jail: user namespaces", "jail: idmapped mounts"}},
		{name: "vmm id pool in use", cfg: func(*config.Config) {},
			host:   poolInUse(fakeHost(true, allFiles(), "/dev/vhost-vsock", "/dev/vhost-net")),
			failed: []string{"jail: vmm id pool"}},
		{name: "unprivileged vmm without user namespaces", cfg: func(c *config.Config) { c.Hypervisor.VMMIDRange = "100000-165535" },
			host:   noJail(fakeHost(true, allFiles(), "/dev/vhost-vsock", "/dev/vhost-net")),
			failed: []string{"jail: seccomp sandbox", "jail: capabilities", "jail: user namespaces", "jail: idmapped mounts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			tc.cfg(cfg)
			var failed, warned []string
			for _, r := range runChecks(cfg, "/run/vessel", tc.host) {
				switch r.status() {
				case "FAIL":
					failed = append(failed, r.name)
				case "warn":
					warned = append(warned, r.name)
				}
				if r.detail == "" {
					t.Errorf("%s: no detail", r.name)
				}
			}
			if strings.Join(failed, ",") != strings.Join(tc.failed, ",") || strings.Join(warned, ",") != strings.Join(tc.warned, ",") {
				t.Fatalf("failed %v warned %v; want %v and %v", failed, warned, tc.failed, tc.warned)
			}
		})
	}
}

func TestReport(t *testing.T) {
	var b bytes.Buffer
	n := report(&b, []checkResult{
		{name: "kvm", ok: false, detail: "no"},
		{name: "kernel", ok: false, required: true, detail: "missing"},
		{name: "cgroups", ok: true, detail: "v2"},
	})
	if n != 1 {
		t.Fatalf("%d failures counted, want 1", n)
	}
	for _, want := range []string{"warn  kvm", "FAIL  kernel", "ok    cgroups"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// TestCheckCommand runs the real probes against a configuration whose files exist in a
// temporary directory (KVM and vhost devices are optional in it), then against one whose
// kernel is missing.
func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	qemu, kernel, initrd := write("qemu", 0o755), write("vmlinux", 0o644), write("initrd", 0o644)
	// A QEMU that accepts every option (the jail check runs it with -sandbox and -version).
	if err := os.WriteFile(qemu, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/dev/urandom"); err != nil {
		t.Skip("no /dev/urandom")
	}
	conf := func(kernelPath string) string {
		p := filepath.Join(dir, "c.toml")
		body := fmt.Sprintf("[hypervisor]\npath = %q\nkernel = %q\ninitrd = %q\n", qemu, kernelPath, initrd)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var out bytes.Buffer
	if err := testApp(CheckCommand(), &out).Run([]string{"vessel", "--config", conf(kernel), "check"}); err != nil {
		t.Fatalf("check failed: %v\n%s", err, out.String())
	}
	for _, name := range []string{"kvm", "vhost-vsock", "vhost-net", "hypervisor", "kernel", "initrd", "entropy", "cgroups",
		"jail: seccomp sandbox", "jail: capabilities", "jail: user namespaces", "jail: idmapped mounts"} {
		if !strings.Contains(out.String(), "  "+name+" ") {
			t.Errorf("report lacks %s:\n%s", name, out.String())
		}
	}
	out.Reset()
	err := testApp(CheckCommand(), &out).Run([]string{"vessel", "check", "--config", conf(filepath.Join(dir, "missing"))})
	var ec cli.ExitCoder
	if !errors.As(err, &ec) || ec.ExitCode() != 1 || !strings.Contains(out.String(), "FAIL  kernel") {
		t.Fatalf("missing kernel: %v\n%s", err, out.String())
	}
	out.Reset()
	err = testApp(CheckCommand(), &out).Run([]string{"vessel", "check", "--config", filepath.Join(dir, "nope.toml")})
	if !errors.As(err, &ec) || ec.ExitCode() != 1 {
		t.Fatalf("missing configuration: %v", err)
	}
}
