package shim

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/fifo"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/bundle"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// Each exec of TestOutputTakenBeforeExit writes outputRaceBytes to stdout and to stderr and
// exits; outputRaceExecs of them run, outputRaceParallel at a time.
const (
	outputRaceBytes    = 8 << 10
	outputRaceExecs    = 24
	outputRaceParallel = 4
)

// TestOutputTakenBeforeExit runs many short processes that write and exit at once, each
// read by a client that behaves as containerd 1.6's does at `ctr run --rm`: it closes its
// ends of the output FIFOs as soon as it learns of the exit, and keeps only what its copy
// had read by then. Its copy is slow (one byte per read, as a client that gets little CPU),
// so the output is whole only if the exit is reported after the reader took every byte.
func TestOutputTakenBeforeExit(t *testing.T) {
	g := testutil.RequiresVM(t)
	fs := newTestShim(t, string(g.Config("")))
	ctx := namespaces.WithNamespace(context.Background(), "vessel-test")
	const id = "outrace"

	dir := t.TempDir()
	if _, err := bundle.CreateBusybox(dir, []string{"sleep", "1000000"}, false); err != nil {
		t.Fatal(err)
	}
	opts, err := typeurl.MarshalAnyToProto(&runtimeoptions.Options{ConfigPath: fs.config})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.svc.Create(ctx, &taskAPI.CreateTaskRequest{ID: id, Bundle: dir, Options: opts}); err != nil {
		t.Fatalf("create: %v", err)
	}
	defer func() {
		if _, err := fs.svc.Kill(ctx, &taskAPI.KillRequest{ID: id, Signal: uint32(syscall.SIGKILL)}); err != nil {
			t.Errorf("kill: %v", err)
		}
		if _, err := fs.svc.Wait(ctx, &taskAPI.WaitRequest{ID: id}); err != nil {
			t.Errorf("wait: %v", err)
		}
		if _, err := fs.svc.Delete(ctx, &taskAPI.DeleteRequest{ID: id}); err != nil {
			t.Errorf("delete: %v", err)
		}
		fs.assertCleanedUp(id, "")
	}()
	if _, err := fs.svc.Start(ctx, &taskAPI.StartRequest{ID: id}); err != nil {
		t.Fatalf("start: %v", err)
	}

	want := map[string][]byte{"stdout": pattern("out", outputRaceBytes), "stderr": pattern("err", outputRaceBytes)}
	script := fmt.Sprintf("yes out | head -c %d; yes err | head -c %d >&2", outputRaceBytes, outputRaceBytes)
	sem := make(chan struct{}, outputRaceParallel)
	var wg sync.WaitGroup
	for i := range outputRaceExecs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			execID := fmt.Sprintf("e%d", i)
			got, err := execLikeCtr16(ctx, fs.svc, id, execID, t.TempDir(), []string{"sh", "-c", script})
			if err != nil {
				t.Errorf("exec %s: %v", execID, err)
				return
			}
			for name, w := range want {
				if !bytes.Equal(got[name], w) {
					t.Errorf("exec %s: %s got %d bytes (%q…), want the %d written before the exit", execID, name, len(got[name]), got[name][:min(len(got[name]), 16)], len(w))
				}
			}
		}()
	}
	wg.Wait()
}

// pattern is what `yes word | head -c n` writes.
func pattern(word string, n int) []byte {
	return []byte(strings.Repeat(word+"\n", n/(len(word)+1)+1)[:n])
}

// execLikeCtr16 runs args as exec execID of container id with output FIFOs in dir, read as
// containerd 1.6.20's client reads them (see TestOutputTakenBeforeExit), and returns what
// each stream got.
func execLikeCtr16(ctx context.Context, svc *service, id, execID, dir string, args []string) (map[string][]byte, error) {
	paths := map[string]string{"stdout": filepath.Join(dir, "stdout"), "stderr": filepath.Join(dir, "stderr")}
	got := map[string]*bytes.Buffer{}
	var readers sync.WaitGroup
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
		readers.Wait()
	}()
	for name, p := range paths {
		// As containerd's cio opens them: created, non-blocking open, blocking reads.
		f, err := fifo.OpenFifo(ctx, p, syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
		if err != nil {
			return nil, err
		}
		closers = append(closers, f)
		buf := &bytes.Buffer{}
		got[name] = buf
		readers.Add(1)
		go func() {
			defer readers.Done()
			b := make([]byte, 1)
			for {
				n, err := f.Read(b)
				buf.Write(b[:n])
				if err != nil {
					return
				}
			}
		}()
	}
	spec, err := typeurl.MarshalAnyToProto(&specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}})
	if err != nil {
		return nil, err
	}
	if _, err := svc.Exec(ctx, &taskAPI.ExecProcessRequest{ID: id, ExecID: execID, Stdout: paths["stdout"], Stderr: paths["stderr"], Spec: spec}); err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	if _, err := svc.Start(ctx, &taskAPI.StartRequest{ID: id, ExecID: execID}); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	resp, err := svc.Wait(wctx, &taskAPI.WaitRequest{ID: id, ExecID: execID})
	if err != nil {
		return nil, fmt.Errorf("wait: %w", err)
	}
	// The exit is known: close the FIFOs, then wait for the copies (Task.Delete's order in
	// containerd 1.6.20).
	for _, c := range closers {
		c.Close()
	}
	closers = nil
	readers.Wait()
	if _, err := svc.Delete(ctx, &taskAPI.DeleteRequest{ID: id, ExecID: execID}); err != nil {
		return nil, fmt.Errorf("delete: %w", err)
	}
	if resp.ExitStatus != 0 {
		return nil, fmt.Errorf("exit status %d", resp.ExitStatus)
	}
	out := map[string][]byte{}
	for name, b := range got {
		out[name] = b.Bytes()
	}
	return out, nil
}
