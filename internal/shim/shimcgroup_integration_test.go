package shim_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/vessel-containers/vessel/internal/shimclient"
	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestShimJoinsShimCgroup runs the shim's start action as containerd runs it for a task
// whose options name a shim cgroup (containerd's WithShimCgroup): the shim process it
// starts is in that cgroup before it serves the task, as runc's shim is.
func TestShimJoinsShimCgroup(t *testing.T) {
	testutil.RequiresIntegration(t)
	testutil.RequiresRoot(t)
	const cg = "/vessel-test-shimcg"
	// On the way out the cgroup goes, with a shim a failed check left in it (none when the
	// test passes: Shutdown ends it).
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.NewManager("/sys/fs/cgroup", cg, &cgroup2.Resources{})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			pids, _ := m.Procs(false)
			killLeft(t, pids)
			_ = m.Delete()
		}()
	} else {
		c, err := cgroup1.New(cgroup1.StaticPath(cg), &specs.LinuxResources{})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			procs, _ := c.Processes(cgroup1.Memory, false)
			var pids []uint64
			for _, p := range procs {
				pids = append(pids, uint64(p.Pid))
			}
			killLeft(t, pids)
			_ = c.Delete()
		}()
	}
	sbRoot := t.TempDir()
	// A log file of its own: containerd's log FIFO in the bundle has no reader here.
	shimLog := filepath.Join(t.TempDir(), "shim.log")
	binDir := testutil.BuildShim(t, shimproto.Options{SandboxRoot: sbRoot, LogFile: shimLog})
	ctd := testutil.StartContainerd(t, binDir)
	bundle := t.TempDir()
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(`{"ociVersion":"1.0.2"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := typeurl.MarshalAnyToProto(&options.Options{ShimCgroup: cg})
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := proto.Marshal(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, shimproto.BinaryName),
		"-namespace", "vessel-test", "-address", ctd.Address, "-publish-binary", "containerd", "-id", "shimcg", "start")
	cmd.Dir, cmd.Stdin = bundle, bytes.NewReader(stdin)
	cmd.Env = append(os.Environ(), "NAMESPACE=vessel-test", "GRPC_ADDRESS="+ctd.Address, "TTRPC_ADDRESS="+ctd.Address+".ttrpc")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("shim start: %v\n%s", err, stderr.Bytes())
	}
	c, err := shimclient.Dial(ctx, strings.TrimSpace(string(out)))
	if err != nil {
		log, _ := os.ReadFile(shimLog)
		t.Fatalf("%v; shim log:\n%s", err, log)
	}
	defer c.Close()
	resp, err := c.Connect(ctx, &taskAPI.ConnectRequest{ID: "shimcg"})
	if err != nil {
		t.Fatal(err)
	}
	pid := int(resp.ShimPid)
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	if got := testutil.MemoryCgroup(t, pid); got != cg {
		t.Errorf("the shim runs in cgroup %s, want %s", got, cg)
	}
	// It holds no task: Shutdown ends it.
	if _, err := c.Shutdown(ctx, &taskAPI.ShutdownRequest{ID: "shimcg"}); err != nil && !errors.Is(err, shimclient.ErrShimGone) {
		t.Fatal(err)
	}
	if !pidfdExited(pidfd, time.Minute) {
		t.Errorf("the shim %d runs a minute after its Shutdown", pid)
	}
}

// killLeft kills and waits out the processes a failed check left in the test's cgroup.
func killLeft(t *testing.T, pids []uint64) {
	for _, pid := range pids {
		t.Errorf("process %d left in the shim cgroup", pid)
		fd, err := unix.PidfdOpen(int(pid), 0)
		if err != nil {
			continue // it has ended
		}
		_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		pidfdExited(fd, 10*time.Second)
		unix.Close(fd)
	}
}

// pidfdExited waits up to limit for the process of pidfd fd to end and tells whether it
// did (false on a poll error too).
func pidfdExited(fd int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for {
		left := max(time.Until(deadline), 0)
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(left.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n > 0
	}
}
