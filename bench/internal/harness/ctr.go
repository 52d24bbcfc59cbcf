package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/vessel-containers/vessel/bench/internal/report"
)

// ctrTimeout bounds every ctr command: a stuck container must not stall the run.
const ctrTimeout = 3 * time.Minute

// runtimeSpec pairs a reported name with containerd's runtime type and, for a Vessel
// variant, the configuration file its shim reads.
type runtimeSpec struct {
	name, typ string
	config    string
}

var runcSpec = runtimeSpec{name: report.Runc, typ: RuncRuntime}

// vessel is Vessel with the benchmark's configuration.
func (e *env) vessel() runtimeSpec {
	return runtimeSpec{name: report.Vessel, typ: VesselRuntime, config: e.vesselConfig}
}

// runtimes are the runtimes the comparative measures run: Vessel, runc and, in A/B mode,
// Vessel with the second configuration.
func (e *env) runtimes() []runtimeSpec {
	rts := []runtimeSpec{e.vessel(), runcSpec}
	if e.opts.CompareConfig != "" {
		rts = append(rts, runtimeSpec{name: report.VesselB, typ: VesselRuntime, config: e.opts.CompareConfig})
	}
	return rts
}

// runArgs is `ctr run` for runtime rt with mode "--rm" or "-d".
func (e *env) runArgs(rt runtimeSpec, mode, id string, args ...string) []string {
	return e.runArgsWith(rt, mode, id, nil, args...)
}

// runArgsWith is runArgs with extra `ctr run` flags (such as --mount).
func (e *env) runArgsWith(rt runtimeSpec, mode, id string, flags []string, args ...string) []string {
	a := []string{"run", mode, "--fifo-dir", e.ctd.FIFODir, "--runtime", rt.typ}
	a = append(a, flags...)
	if rt.typ == RuncRuntime {
		a = append(a, "--runc-root", e.ctd.RuncRoot)
	}
	if rt.config != "" {
		a = append(a, "--runtime-config-path", rt.config)
	}
	a = append(a, e.image, id)
	return append(a, args...)
}

// runRm runs `ctr run --rm` and returns the time until ctr exited and, when want is set,
// until want appeared on its stdout.
func (e *env) runRm(ctx context.Context, rt runtimeSpec, id string, want string, args ...string) (total, untilOutput time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, ctrTimeout)
	defer cancel()
	cmd := e.ctd.CtrCmd(ctx, e.runArgs(rt, "--rm", id, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, fmt.Errorf("ctr run %s: %w", id, err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, fmt.Errorf("ctr run %s: %w", id, err)
	}
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, rerr := stdout.Read(buf)
		out = append(out, buf[:n]...)
		if want != "" && untilOutput == 0 && bytes.Contains(out, []byte(want)) {
			untilOutput = time.Since(begin)
		}
		if rerr != nil {
			break
		}
	}
	err = cmd.Wait()
	total = time.Since(begin)
	if err != nil {
		return 0, 0, fmt.Errorf("ctr run %s (%s): %w: %s", id, rt.name, err, strings.TrimSpace(stderr.String()))
	}
	if want != "" && untilOutput == 0 {
		return 0, 0, fmt.Errorf("ctr run %s (%s): output %q lacks %q", id, rt.name, out, want)
	}
	return total, untilOutput, nil
}

// runDetached starts a container with `ctr run -d` and returns how long ctr took.
func (e *env) runDetached(ctx context.Context, rt runtimeSpec, id string, args ...string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, ctrTimeout)
	defer cancel()
	begin := time.Now()
	if _, err := e.ctd.Ctr(ctx, e.runArgs(rt, "-d", id, args...)...); err != nil {
		return 0, err
	}
	return time.Since(begin), nil
}

// idleArgs keep a container's process alive and idle.
var idleArgs = []string{"sleep", "1000000"}

// execIn runs a process in container id with `ctr task exec` and returns its stdout and
// the time ctr took.
func (e *env) execIn(ctx context.Context, id, execID string, args ...string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, ctrTimeout)
	defer cancel()
	a := append([]string{"task", "exec", "--exec-id", execID, "--fifo-dir", e.ctd.FIFODir, id}, args...)
	cmd := e.ctd.CtrCmd(ctx, a...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	begin := time.Now()
	err := cmd.Run()
	took := time.Since(begin)
	if err != nil {
		return "", 0, fmt.Errorf("exec in %s: %w: %s", id, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), took, nil
}

// taskPids returns the pid containerd reports for each task: the task's host stand-in for
// Vessel (a child of the shim), the container's init for runc.
func (e *env) taskPids(ctx context.Context) (map[string]int, error) {
	out, err := e.ctd.Ctr(ctx, "task", "ls")
	if err != nil {
		return nil, err
	}
	return parseTaskList(strings.NewReader(out))
}

func parseTaskList(r io.Reader) (map[string]int, error) {
	pids := map[string]int{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] == "TASK" {
			continue
		}
		pid, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, fmt.Errorf("task list line %q: %w", sc.Text(), err)
		}
		pids[f[0]] = pid
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("task list: %w", err)
	}
	return pids, nil
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
