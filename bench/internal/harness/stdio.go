package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/bench/internal/report"
	"github.com/vessel-containers/vessel/bench/internal/stats"
)

// stdioKinds are the transfers the stdio measure times, in run order.
var stdioKinds = []struct {
	name string
	// id names the kind in exec ids.
	id string
	// args is the process in the container, given the size in MiB; tty runs it with a
	// terminal (ctr's own stdio is then a pty the harness reads). The writer is dd with
	// 1 MiB blocks: busybox's head -c is itself slow under TCG (about 11 MB/s to
	// /dev/null), dd is not.
	args func(mib int) []string
	tty  bool
}{
	{report.StdioPipe, "stdout", func(mib int) []string { return ddZero(mib) }, false},
	{report.StdioStderr, "stderr", func(mib int) []string { return []string{"sh", "-c", strings.Join(ddZero(mib), " ") + " >&2"} }, false},
	{report.StdioTTY, "tty", func(mib int) []string { return ddZero(mib) }, true},
}

// ddZero writes mib MiB of zeros to stdout.
func ddZero(mib int) []string {
	return []string{"dd", "if=/dev/zero", "bs=1048576", "count=" + strconv.Itoa(mib), "status=none"}
}

// stdio measures output throughput from a container to the host (stdout and stderr on
// pipes, and a terminal) and the exec round trip while another process of the container
// floods its stdout, for each runtime on containerd. Each runtime gets one container that
// idles; every transfer is a `ctr task exec` of dd into it, timed from ctr's start
// until the harness read the last byte, and the rate is taken from the first byte to
// the last (the exec's own start is in the exec figures).
func (e *env) stdio(ctx context.Context) (retErr error) {
	size := e.opts.StdioSizeMiB << 20
	rts := e.runtimes()
	res := &report.Stdio{SizeMiB: e.opts.StdioSizeMiB, Runtimes: make([]report.StdioRuntime, len(rts))}
	defer func() { e.res.Stdio = res }()
	ids := make([]string, len(rts))
	for i, rt := range rts {
		res.Runtimes[i].Runtime = rt.name
		id := "stdio-" + rt.name
		if _, err := e.runDetached(ctx, rt, id, idleArgs...); err != nil {
			return err
		}
		ids[i] = id
		defer func() {
			cctx := context.WithoutCancel(ctx)
			if _, err := e.ctd.Ctr(cctx, "task", "delete", "-f", id); err != nil {
				retErr = errors.Join(retErr, err)
			}
			if _, err := e.ctd.Ctr(cctx, "containers", "delete", id); err != nil {
				retErr = errors.Join(retErr, err)
			}
		}()
		if _, _, err := e.execIn(ctx, id, "warmup", "true"); err != nil {
			return err
		}
	}
	// The runtimes take turns, run by run, so that the host's load hits them alike.
	rates := make([]map[string][]float64, len(rts))
	totals := make([]map[string][]time.Duration, len(rts))
	for i := range rts {
		rates[i], totals[i] = map[string][]float64{}, map[string][]time.Duration{}
	}
	for run := range e.opts.Runs {
		for i, rt := range rts {
			for _, k := range stdioKinds {
				t, err := e.stdioTransfer(ctx, ids[i], fmt.Sprintf("%s-%d", k.id, run), k.args(e.opts.StdioSizeMiB), k.tty, size)
				if err != nil {
					return fmt.Errorf("%s: %s: %w", rt.name, k.name, err)
				}
				rates[i][k.name] = append(rates[i][k.name], t.rate)
				totals[i][k.name] = append(totals[i][k.name], t.total)
				log.G(ctx).Infof("stdio: %s %s run %d/%d: %.1f MB/s, %s in all", rt.name, k.name, run+1, e.opts.Runs, t.rate, t.total.Round(time.Millisecond))
			}
		}
	}
	for i := range rts {
		for _, k := range stdioKinds {
			res.Runtimes[i].Transfers = append(res.Runtimes[i].Transfers,
				report.StdioTransfer{Kind: k.name, MBps: stats.Of(rates[i][k.name]), Total: stats.Seconds(totals[i][k.name])})
		}
	}
	for i, rt := range rts {
		r := &res.Runtimes[i]
		var err error
		if r.ExecIdle, r.ExecLoaded, err = e.execUnderLoad(ctx, ids[i]); err != nil {
			return fmt.Errorf("%s: %w", rt.name, err)
		}
		log.G(ctx).Infof("stdio: %s exec idle %s, under output load %s", rt.name, report.Sec(r.ExecIdle.Median), report.Sec(r.ExecLoaded.Median))
	}
	return nil
}

// transfer is one timed output transfer.
type transfer struct {
	// total is from ctr's start until the last byte was read; rate is MB/s (10^6 bytes)
	// from the first byte read to the last.
	total time.Duration
	rate  float64
}

// stdioTransfer runs args in container id with `ctr task exec` and reads its output
// (stdout and stderr of ctr, or the pty ctr's stdio is on) until ctr exits. It fails
// unless exactly want bytes (pipes) or at least want bytes (a terminal, which may add
// bytes of its own) arrived.
func (e *env) stdioTransfer(ctx context.Context, id, execID string, args []string, tty bool, want int) (transfer, error) {
	ctx, cancel := context.WithTimeout(ctx, ctrTimeout)
	defer cancel()
	a := []string{"task", "exec", "--exec-id", execID, "--fifo-dir", e.ctd.FIFODir}
	if tty {
		a = append(a, "--tty")
	}
	a = append(append(a, id), args...)
	cmd := e.ctd.CtrCmd(ctx, a...)
	var stderr bytes.Buffer
	if tty {
		pty, slavePath, err := console.NewPty()
		if err != nil {
			return transfer{}, fmt.Errorf("pty for ctr: %w", err)
		}
		defer pty.Close()
		slave, err := os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
		if err != nil {
			return transfer{}, fmt.Errorf("open pty %s: %w", slavePath, err)
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
		defer slave.Close()
		begin := time.Now()
		if err := cmd.Start(); err != nil {
			return transfer{}, fmt.Errorf("ctr task exec %s: %w", execID, err)
		}
		slave.Close() // ctr holds it: the master reads EIO once ctr exited
		return finishTransfer(cmd, ptyReader{pty}, &stderr, begin, want, true)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return transfer{}, err
	}
	defer pr.Close()
	cmd.Stdout, cmd.Stderr = pw, pw
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		pw.Close()
		return transfer{}, fmt.Errorf("ctr task exec %s: %w", execID, err)
	}
	pw.Close()
	return finishTransfer(cmd, pr, &stderr, begin, want, false)
}

// finishTransfer reads out to its end, waits for cmd and times the transfer.
func finishTransfer(cmd *exec.Cmd, out io.Reader, diag *bytes.Buffer, begin time.Time, want int, atLeast bool) (transfer, error) {
	buf := make([]byte, 256<<10)
	var n int
	var first, last time.Time
	for {
		m, err := out.Read(buf)
		if m > 0 {
			if n == 0 {
				first = time.Now()
			}
			n += m
			last = time.Now()
			if diag.Len() < 512 {
				// keep the first bytes that are not zeros: an error message from ctr
				if i := bytes.IndexFunc(buf[:m], func(r rune) bool { return r != 0 }); i >= 0 {
					diag.Write(buf[i:min(m, i+256)])
				}
			}
		}
		if err != nil {
			break
		}
	}
	werr := cmd.Wait()
	if werr != nil {
		return transfer{}, fmt.Errorf("ctr task exec: %w: %s", werr, strings.TrimSpace(diag.String()))
	}
	if n < want || (!atLeast && n != want) {
		return transfer{}, fmt.Errorf("read %d bytes, want %d: %s", n, want, strings.TrimSpace(diag.String()))
	}
	t := transfer{total: last.Sub(begin)}
	if d := last.Sub(first).Seconds(); d > 0 {
		t.rate = float64(n) / d / 1e6
	}
	return t, nil
}

// ptyReader reads a pty master, taking EIO (no slave left open) as the end.
type ptyReader struct{ c console.Console }

func (p ptyReader) Read(b []byte) (int, error) {
	n, err := p.c.Read(b)
	if errors.Is(err, syscall.EIO) {
		err = io.EOF
	}
	return n, err
}

// execUnderLoad times exec of `true` in container id, first with the container idle, then
// while another exec in it writes /dev/zero to its stdout as fast as the host reads it.
func (e *env) execUnderLoad(ctx context.Context, id string) (idle, loaded stats.Summary, retErr error) {
	var took []time.Duration
	for i := range e.opts.Runs {
		_, d, err := e.execIn(ctx, id, fmt.Sprintf("idle-%d", i), "true")
		if err != nil {
			return idle, loaded, err
		}
		took = append(took, d)
	}
	idle = stats.Seconds(took)

	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	flood := e.ctd.CtrCmd(fctx, "task", "exec", "--exec-id", "flood", "--fifo-dir", e.ctd.FIFODir, id, "cat", "/dev/zero")
	out, err := flood.StdoutPipe()
	if err != nil {
		return idle, loaded, err
	}
	if err := flood.Start(); err != nil {
		return idle, loaded, fmt.Errorf("start the flood: %w", err)
	}
	flowing := make(chan struct{})
	drained := make(chan int64)
	go func() { // owner: execUnderLoad; ends when the flood's ctr exits (killed below)
		var n int64
		buf := make([]byte, 256<<10)
		for {
			m, err := out.Read(buf)
			if n == 0 && m > 0 {
				close(flowing)
			}
			n += int64(m)
			if err != nil {
				break
			}
		}
		if n == 0 {
			close(flowing) // the flood ended without output: the execs below say why
		}
		drained <- n
	}()
	defer func() {
		// The flood ends with its process: kill it in the container, then reap ctr.
		kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), ctrTimeout)
		defer kcancel()
		if _, err := e.ctd.Ctr(kctx, "task", "kill", "--exec-id", "flood", "-s", "SIGKILL", id); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("kill the flood: %w", err))
			cancel()
		}
		n := <-drained
		_ = flood.Wait() // killed: its status is not news
		log.G(ctx).Debugf("stdio: the flood wrote %d MiB", n>>20)
	}()
	select {
	case <-flowing:
	case <-ctx.Done():
		return idle, loaded, context.Cause(ctx)
	}
	took = took[:0]
	for i := range e.opts.Runs {
		_, d, err := e.execIn(ctx, id, fmt.Sprintf("loaded-%d", i), "true")
		if err != nil {
			return idle, loaded, fmt.Errorf("exec under output load: %w", err)
		}
		took = append(took, d)
	}
	loaded = stats.Seconds(took)
	return idle, loaded, nil
}
