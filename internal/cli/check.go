package cli

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/jail"
)

// CheckCommand is `vessel check`: it reports what the host supports for the effective
// configuration and exits non-zero when something the configuration needs is missing.
func CheckCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "report whether this host can run Vessel sandboxes",
		Description: `Checks KVM, vhost-vsock, vhost-net, the hypervisor binary, the guest kernel and
image, the entropy source, virtiofsd and the jailer when configured, the cgroup version,
whether the host merges identical pages (KSM), and
the VMM jail: the hypervisor's seccomp sandbox, dropping capabilities, and user namespaces
and idmapped mounts on the state directory (required with hypervisor.vmm_id_range, the
unprivileged VMM).
Items the configuration needs are FAIL when missing (exit status 1); others are warnings.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "configuration file (overrides the global --config)"},
		},
		Action: func(c *cli.Context) error {
			cfg, src, err := config.LoadFrom(configPath(c), os.Getenv, config.SystemPath)
			if err != nil {
				return cli.Exit(fmt.Sprintf("configuration: %v", err), 1)
			}
			if src == "" {
				src = "built-in defaults"
			}
			fmt.Fprintf(c.App.Writer, "configuration: %s\n", src)
			root, err := stateRoot(c)
			if err != nil {
				return err
			}
			results := runChecks(cfg, root, hostProbes())
			if failed := report(c.App.Writer, results); failed > 0 {
				return cli.Exit(fmt.Sprintf("%d required item(s) missing", failed), 1)
			}
			return nil
		},
	}
}

// probes are the host inspections a check uses; tests substitute fakes.
type probes struct {
	// kvm reports whether KVM can run guests here (hypervisor.KVMUsable).
	kvm func() error
	// openRW opens a device read-write and closes it.
	openRW func(path string) error
	stat   func(path string) (fs.FileInfo, error)
	// cgroups describes the host's cgroup setup: "v1", "v2" or "hybrid".
	cgroups func() (string, error)
	// confine tells whether this process can confine the VMM (jail.CanConfine).
	confine func() error
	// vmmJail asks the driver whether its binary runs confined (hypervisor.CheckJail).
	vmmJail func(driver, binary string) error
	// userns tells whether user namespaces can be created.
	userns func() error
	// idmap tells whether the file system holding dir takes idmapped mounts.
	idmap func(dir string) error
	// ksm tells whether the host's kernel samepage merging runs.
	ksm func() error
	// idConflicts lists the host's other users of ids of a pool (idrange.Conflicts).
	idConflicts func(p idrange.Pool) ([]string, error)
}

func hostProbes() probes {
	return probes{
		kvm: hypervisor.KVMUsable,
		openRW: func(path string) error {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			return f.Close()
		},
		stat:    os.Stat,
		cgroups: cgroupMode,
		confine: jail.CanConfine,
		vmmJail: hypervisor.CheckJail,
		userns:  userNamespaces,
		idmap:   idmappedMounts,
		ksm:     samepageMerging,
		idConflicts: func(p idrange.Pool) ([]string, error) {
			return idrange.Conflicts(p, idrange.DefaultHost)
		},
	}
}

// checkResult is one line of the report.
type checkResult struct {
	name     string
	ok       bool
	required bool
	detail   string
}

func (r checkResult) status() string {
	switch {
	case r.ok:
		return "ok"
	case r.required:
		return "FAIL"
	}
	return "warn"
}

// runChecks inspects the host for cfg; root is the state directory (--root).
func runChecks(cfg *config.Config, root string, p probes) []checkResult {
	h := &cfg.Hypervisor
	var out []checkResult
	add := func(name string, required bool, err error, okDetail, failDetail string) {
		r := checkResult{name: name, ok: err == nil, required: required, detail: okDetail}
		if err != nil {
			r.detail = err.Error()
			if failDetail != "" {
				r.detail += "; " + failDetail
			}
		}
		out = append(out, r)
	}

	needKVM := h.Accelerator == hypervisor.AccelKVM
	kvmFail := "guest code runs under TCG (software emulation)"
	if needKVM {
		kvmFail = `hypervisor.accelerator = "kvm" needs it`
	}
	add("kvm", needKVM, p.kvm(), "/dev/kvm creates VMs and the CPU has vmx/svm", kvmFail)

	vsockFail := "not needed: the agent is reached over virtio-serial"
	if h.UseVsock {
		vsockFail = "hypervisor.use_vsock = true needs it"
	}
	add("vhost-vsock", h.UseVsock, p.openRW("/dev/vhost-vsock"), "/dev/vhost-vsock is usable", vsockFail)

	add("vhost-net", false, p.openRW("/dev/vhost-net"), "/dev/vhost-net is usable", "QEMU moves network packets itself (slower); see docs/networking.md")

	add("hypervisor", true, executable(p, h.Path), h.Path, "hypervisor.path")
	add("kernel", true, regularFile(p, h.Kernel), h.Kernel, "hypervisor.kernel")
	if h.Initrd != "" {
		add("initrd", true, regularFile(p, h.Initrd), h.Initrd, "hypervisor.initrd (build it with `vessel image build`)")
	}
	if h.Image != "" {
		add("image", true, regularFile(p, h.Image), h.Image, "hypervisor.image")
	}
	add("entropy", true, charDevice(p, h.EntropySource), h.EntropySource, "hypervisor.entropy_source")
	virtioFS := h.SharedFS == hypervisor.SharedFSVirtioFS
	fsdFail := `not needed: hypervisor.shared_fs is not "virtio-fs"`
	if virtioFS {
		fsdFail = `hypervisor.shared_fs = "virtio-fs" needs it`
	}
	add("virtiofsd", virtioFS, executable(p, h.VirtioFSDaemon), h.VirtioFSDaemon, fsdFail)
	if h.JailerPath != "" {
		add("jailer", true, executable(p, h.JailerPath), h.JailerPath, "hypervisor.jailer_path")
	}
	mode, err := p.cgroups()
	add("cgroups", false, err, mode, "")
	add("ksm", false, p.ksm(), "kernel samepage merging runs: identical guest pages of sandboxes are shared",
		"identical guest pages of sandboxes are not shared (a host setting Vessel leaves alone: echo 1 > "+ksmRun+"; see docs/kubernetes.md)")

	// The VMM jail is always on: what it applies today is required.
	add("jail: seccomp sandbox", true, p.vmmJail(cfg.Hypervisor.Driver, h.Path),
		"the hypervisor installs its seccomp filter", "the VMM cannot run confined")
	add("jail: capabilities", true, p.confine(),
		"no_new_privs, capability drop to the VMM's set, rlimits, descriptors", "the VMM cannot run confined")
	// The unprivileged VMM (hypervisor.vmm_id_range) needs both.
	unpriv := h.VMMIDRange != ""
	need := "needed to run the VMM unprivileged (hypervisor.vmm_id_range, off)"
	if unpriv {
		need = "hypervisor.vmm_id_range needs it"
	}
	add("jail: user namespaces", unpriv, p.userns(),
		"for the unprivileged VMM (hypervisor.vmm_id_range)", need)
	add("jail: idmapped mounts", unpriv, p.idmap(root),
		"on the file system of "+root+" (for the unprivileged VMM: the rootfs's layers are idmapped)", need)
	if unpriv {
		add("jail: vmm id pool", true, poolConflicts(h.VMMIDRange, p),
			"hypervisor.vmm_id_range "+h.VMMIDRange+" is used by nothing else on this host (/etc/subuid, /etc/subgid, users, groups, processes)",
			"VMMs would share these ids: choose another hypervisor.vmm_id_range")
	}
	return out
}

// poolConflicts reports the host's other users of the ids of pool (a vmm_id_range).
func poolConflicts(pool string, p probes) error {
	ids, err := idrange.ParsePool(pool)
	if err != nil {
		return fmt.Errorf("hypervisor.vmm_id_range: %w", err)
	}
	found, err := p.idConflicts(ids)
	if err != nil {
		return fmt.Errorf("look for other users of ids %s: %w", pool, err)
	}
	if len(found) > 0 {
		return fmt.Errorf("ids %s are in use: %s", pool, strings.Join(found, "; "))
	}
	return nil
}

// ksmRun is the host's switch for kernel samepage merging.
const ksmRun = "/sys/kernel/mm/ksm/run"

// samepageMerging reports an error unless ksmd runs (run = 1).
func samepageMerging() error {
	data, err := os.ReadFile(ksmRun)
	if err != nil {
		return fmt.Errorf("kernel samepage merging: %w", err)
	}
	if v := strings.TrimSpace(string(data)); v != "1" {
		return fmt.Errorf("kernel samepage merging is off (%s = %s)", ksmRun, v)
	}
	return nil
}

func executable(p probes, path string) error {
	fi, err := p.stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s: not an executable file", path)
	}
	return nil
}

func regularFile(p probes, path string) error {
	fi, err := p.stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	return nil
}

func charDevice(p probes, path string) error {
	fi, err := p.stat(path)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeCharDevice == 0 {
		return fmt.Errorf("%s: not a character device", path)
	}
	return nil
}

// report prints the results as a table and returns how many required items failed.
func report(w io.Writer, results []checkResult) int {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	failed := 0
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.status(), r.name, r.detail)
		if !r.ok && r.required {
			failed++
		}
	}
	if err := tw.Flush(); err != nil {
		return failed + 1
	}
	return failed
}
