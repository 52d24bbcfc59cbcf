package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/bench/internal/procfs"
	"github.com/vessel-containers/vessel/bench/internal/report"
	"github.com/vessel-containers/vessel/bench/internal/stats"
	"github.com/vessel-containers/vessel/internal/bundle"
)

// runscPlatform is the gVisor platform the runsc measure uses: ptrace needs no KVM. Debian
// 12's runsc (20221219) predates systrap.
const runscPlatform = "ptrace"

// ociRuntime is an OCI runtime driven through its own CLI (runsc has no containerd shim
// in Debian): runsc with the platform above and no network but loopback, or runc as the
// reference measured the same way.
type ociRuntime struct {
	name, bin string
	// flags come before the verb.
	flags []string
	// detach is run's flag to return once the container runs.
	detach string
}

func (e *env) ociRuntimes() []ociRuntime {
	return []ociRuntime{
		{name: report.Runsc, bin: "runsc", flags: []string{"--platform=" + runscPlatform, "--network=none"}, detach: "--detach"},
		{name: report.RuncCLI, bin: "runc", detach: "--detach"},
	}
}

// cmd is the runtime's command line for one verb, with its state under root.
func (r ociRuntime) cmd(ctx context.Context, root string, args ...string) *exec.Cmd {
	a := append([]string{"--root", root}, r.flags...)
	return exec.CommandContext(ctx, r.bin, append(a, args...)...)
}

// run runs the CLI to its end. Its stderr goes to a file, not a pipe: a detached
// container's processes inherit it, and a pipe would keep the wait open for their life.
// Stdin and stdout are /dev/null.
func (r ociRuntime) run(ctx context.Context, root string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, ctrTimeout)
	defer cancel()
	errFile, err := os.CreateTemp("", "oci-stderr")
	if err != nil {
		return err
	}
	defer os.Remove(errFile.Name())
	defer errFile.Close()
	cmd := r.cmd(ctx, root, args...)
	cmd.Stderr = errFile
	if err := cmd.Run(); err != nil {
		msg, _ := os.ReadFile(errFile.Name())
		return fmt.Errorf("%s %s: %w: %s", r.bin, strings.Join(args, " "), err, strings.TrimSpace(string(msg)))
	}
	return nil
}

// runscMeasure compares gVisor (runsc) with runc, both through their OCI CLIs: cold
// `run` of true, `exec` of true into a running container, and the PSS of idle sandboxes.
// Without runsc on the host it records that it was skipped and succeeds.
func (e *env) runsc(ctx context.Context) error {
	if _, err := exec.LookPath("runsc"); err != nil {
		e.res.Runsc = &report.GVisor{Skipped: "runsc is not installed (hack/install-deps.sh installs Debian's runsc)"}
		log.G(ctx).Warn("runsc measure skipped: runsc is not installed (hack/install-deps.sh installs it)")
		return nil
	}
	res := &report.GVisor{Platform: runscPlatform, Version: firstLine(ctx, "runsc", "--version")}
	defer func() { e.res.Runsc = res }()
	dir := filepath.Join(e.work, "oci")
	defer os.RemoveAll(dir)
	rootfs := filepath.Join(dir, "rootfs")
	if err := bundle.BuildBusyboxRootfs(rootfs, ""); err != nil {
		return err
	}
	trueBundle, err := writeOCIBundle(filepath.Join(dir, "true"), rootfs, "true")
	if err != nil {
		return err
	}
	idleBundle, err := writeOCIBundle(filepath.Join(dir, "idle"), rootfs, idleArgs...)
	if err != nil {
		return err
	}
	rts := e.ociRuntimes()
	res.Runtimes = make([]report.OCIRuntime, len(rts))
	// runsc names a sandbox's control socket after the container id in the host's abstract
	// socket namespace, whatever --root says: ids carry this process's pid so that they
	// are unique on the host.
	pfx := fmt.Sprintf("vb%d-", os.Getpid())

	// Cold start, the runtimes interleaved run by run.
	cold := make([][]time.Duration, len(rts))
	for i := range e.opts.Runs {
		for j, rt := range rts {
			root := filepath.Join(dir, "state-"+rt.name)
			begin := time.Now()
			err := rt.run(ctx, root, "run", "--bundle", trueBundle, fmt.Sprintf("%scold-%d", pfx, i))
			took := time.Since(begin)
			if err != nil {
				return err
			}
			cold[j] = append(cold[j], took)
		}
	}
	for j, rt := range rts {
		res.Runtimes[j] = report.OCIRuntime{Runtime: rt.name, Cold: stats.Seconds(cold[j])}
		log.G(ctx).Infof("runsc: %s cold run of true %s", rt.name, report.Sec(res.Runtimes[j].Cold.Median))
	}

	for j, rt := range rts {
		if res.Runtimes[j].Exec, err = e.ociExec(ctx, rt, filepath.Join(dir, "exec-"+rt.name), idleBundle, pfx+"exec"); err != nil {
			return err
		}
		log.G(ctx).Infof("runsc: %s exec of true %s", rt.name, report.Sec(res.Runtimes[j].Exec.Median))
	}
	for _, n := range e.opts.MemoryCounts {
		p, err := e.ociMemory(ctx, rts[0], filepath.Join(dir, fmt.Sprintf("mem-%d", n)), idleBundle, fmt.Sprintf("%sidle-%d-", pfx, n), n)
		if err != nil {
			return err
		}
		res.Memory = append(res.Memory, p)
		log.G(ctx).Infof("runsc: PSS per idle sandbox, %d running: %.1f MiB", n, p.PerSandbox.Median)
	}
	return nil
}

// writeOCIBundle writes a bundle in dir whose process runs args in rootfs (read-only, so
// bundles share it) with no terminal.
func writeOCIBundle(dir, rootfs string, args ...string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}
	spec := &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: rootfs, Readonly: true},
		Hostname: "bench",
		Process: &specs.Process{
			Args: args, Env: []string{"PATH=/bin"}, Cwd: "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  []string{"CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"},
				Effective: []string{"CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"},
				Permitted: []string{"CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"},
			},
			NoNewPrivileges: true,
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace}},
		},
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}
	return dir, nil
}

// ociExec starts an idle container and times exec of true into it.
func (e *env) ociExec(ctx context.Context, rt ociRuntime, root, bundleDir, id string) (_ stats.Summary, retErr error) {
	if err := rt.run(ctx, root, "run", rt.detach, "--bundle", bundleDir, id); err != nil {
		return stats.Summary{}, err
	}
	defer func() {
		retErr = errors.Join(retErr, rt.run(context.WithoutCancel(ctx), root, "delete", "--force", id))
	}()
	if err := rt.run(ctx, root, "exec", id, "true"); err != nil {
		return stats.Summary{}, err
	}
	var took []time.Duration
	for range e.opts.Runs {
		begin := time.Now()
		if err := rt.run(ctx, root, "exec", id, "true"); err != nil {
			return stats.Summary{}, err
		}
		took = append(took, time.Since(begin))
	}
	return stats.Seconds(took), nil
}

// ociMemory starts n idle sandboxes (ids idPrefix and a number), lets them settle and reads the PSS of each: every
// process whose command line names the sandbox's own state directory (runsc's sandbox,
// gofer and the ptrace stubs all carry --root).
func (e *env) ociMemory(ctx context.Context, rt ociRuntime, dir, bundleDir, idPrefix string, n int) (_ report.OCIMemoryPoint, retErr error) {
	p := report.OCIMemoryPoint{Runtime: rt.name, Sandboxes: n}
	var roots []string
	defer func() {
		for i, root := range roots {
			retErr = errors.Join(retErr, rt.run(context.WithoutCancel(ctx), root, "delete", "--force", idPrefix+strconv.Itoa(i)))
		}
	}()
	for i := range n {
		root := filepath.Join(dir, strconv.Itoa(i))
		if err := rt.run(ctx, root, "run", rt.detach, "--bundle", bundleDir, idPrefix+strconv.Itoa(i)); err != nil {
			return p, err
		}
		roots = append(roots, root)
	}
	if err := sleep(ctx, e.opts.Settle); err != nil {
		return p, err
	}
	var per []float64
	var total uint64
	for _, root := range roots {
		pss, err := pssOfCmdlines(root)
		if err != nil {
			return p, err
		}
		per = append(per, stats.MiB(pss))
		total += pss
	}
	p.PerSandbox = stats.Of(per)
	p.TotalMiB = stats.MiB(total)
	return p, nil
}

// pssOfCmdlines sums the PSS of every process with an argument that mentions root. It
// fails when there is none.
func pssOfCmdlines(root string) (uint64, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var sum uint64
	found := 0
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		args, err := procfs.Cmdline(pid)
		if err != nil || !mentions(args, root) {
			continue
		}
		v, err := procfs.PSS(pid)
		if err != nil {
			continue // exited meanwhile
		}
		sum += v
		found++
	}
	if found == 0 {
		return 0, fmt.Errorf("no process of the sandbox with state in %s", root)
	}
	return sum, nil
}

func mentions(args []string, root string) bool {
	for _, a := range args {
		if a == root || strings.HasSuffix(a, "="+root) {
			return true
		}
	}
	return false
}
