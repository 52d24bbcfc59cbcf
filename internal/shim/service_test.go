package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"

	"github.com/vessel-containers/vessel/internal/bundle"
	"github.com/vessel-containers/vessel/internal/config"
	_ "github.com/vessel-containers/vessel/internal/hypervisor/qemu"
	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qemutest"
	"github.com/vessel-containers/vessel/internal/jail"
)

// TestMain lets the test binary double as the jail entry that starts QEMU and as a QEMU
// (see qemutest); the sandboxes named with silentID run one whose guest never answers.
func TestMain(m *testing.M) {
	jail.Main()
	qemutest.Main()
	os.Exit(m.Run())
}

// silentID is the id of a sandbox whose "QEMU" is this test binary in silent mode: QMP
// answers and the machine runs, but the agent connection is never accepted.
func silentID(name string) string { return qemutest.ID(qemutest.Silent, name) }

// recorder is a shim.Publisher that records topics.
type recorder struct {
	mu     sync.Mutex
	topics []string
}

func (r *recorder) Publish(_ context.Context, topic string, _ events.Event) error {
	r.mu.Lock()
	r.topics = append(r.topics, topic)
	r.mu.Unlock()
	return nil
}

func (r *recorder) Close() error { return nil }

// fakeShim is a task service under test, with its configuration file and sandbox root.
type fakeShim struct {
	t      *testing.T
	svc    *service
	root   string
	config string
	sd     shutdown.Service
}

// newFakeShim starts a task service whose hypervisor is this test binary (sandboxes named
// with silentID run it as a silent QEMU), with the given [agent] lines.
func newFakeShim(t *testing.T, agentSection string) *fakeShim {
	t.Helper()
	return newFakeShimWith(t, "", agentSection)
}

// newFakeShimWith is newFakeShim with extra [hypervisor] lines. The jail's user namespace
// (on by default for root) is off: the fake QEMU is this test binary, which lives in the
// go tool's private build directory where no unprivileged VMM uid can reach it.
func newFakeShimWith(t *testing.T, hypervisorLines, agentSection string) *fakeShim {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	assets := t.TempDir()
	for _, f := range []string{"vmlinux", "initrd"} {
		if err := os.WriteFile(filepath.Join(assets, f), []byte("not a kernel"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return newTestShim(t, fmt.Sprintf(`[hypervisor]
path = %q
valid_hypervisor_paths = [%q]
kernel = %q
valid_kernel_paths = [%q]
initrd = %q
valid_image_paths = [%q]
accelerator = "tcg"
vmm_id_range = ""
%s

[agent]
%s
`, exe, exe, filepath.Join(assets, "vmlinux"), assets+"/*", filepath.Join(assets, "initrd"), assets+"/*", hypervisorLines, agentSection))
}

// newTestShim writes the configuration and starts a task service that reads it, with a
// short sandbox root (socket paths are limited to 108 bytes). At the end of the test the
// service shuts down and the root must be empty.
func newTestShim(t *testing.T, configuration string) *fakeShim {
	t.Helper()
	root, err := os.MkdirTemp("", "vsh")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "configuration.toml")
	if err := os.WriteFile(cfg, []byte(configuration), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, sd := shutdown.WithShutdown(context.Background())
	fs := &fakeShim{t: t, svc: newService(ctx, &recorder{}, sd, root), root: root, config: cfg, sd: sd}
	t.Cleanup(func() {
		sd.Shutdown()
		<-sd.Done()
		if entries, _ := os.ReadDir(root); len(entries) > 0 {
			t.Errorf("sandbox root %s not empty after shutdown: %v", root, entries)
		}
		os.RemoveAll(root)
	})
	return fs
}

// request is a create request for a single container with a bundle of its own; rootfs
// mounts are passed on as containerd would.
func (fs *fakeShim) request(id string, rootfs []*types.Mount) *taskAPI.CreateTaskRequest {
	fs.t.Helper()
	dir := fs.t.TempDir()
	spec := bundle.DefaultSpec([]string{"true"}, false)
	data, err := json.Marshal(spec)
	if err != nil {
		fs.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		fs.t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		fs.t.Fatal(err)
	}
	opts, err := typeurl.MarshalAnyToProto(&runtimeoptions.Options{ConfigPath: fs.config})
	if err != nil {
		fs.t.Fatal(err)
	}
	return &taskAPI.CreateTaskRequest{ID: id, Bundle: dir, Rootfs: rootfs, Options: opts}
}

// qemuPid finds the fake QEMU of sandbox id, 0 when none runs (zombies count as running:
// a VM that is not reaped is a leak).
func qemuPid(t *testing.T, id string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 2 && args[1] == "-name" && args[2] == "vessel-"+id {
			return pid
		}
		if len(cmdline) == 0 {
			if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && strings.Contains(string(stat), " Z ") {
				// A zombie has no cmdline; it may be ours.
				if ppid := zombieParent(string(stat)); ppid == os.Getpid() {
					return pid
				}
			}
		}
	}
	return 0
}

// waitForVM waits up to 30 s for the VM process of sandbox id to start and returns its
// pid; it fails the test if the create reports on created first.
func waitForVM(t *testing.T, id string, created <-chan error) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if pid := qemuPid(t, id); pid != 0 {
			return pid
		}
		select {
		case err := <-created:
			t.Fatalf("create of %s returned before its vm started: %v", id, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the vm of %s did not start within 30s", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// zombieParent reads the ppid field of /proc/<pid>/stat.
func zombieParent(stat string) int {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// assertCleanedUp checks that a failed Create of id left nothing: no VM process (running
// or unreaped), no sandbox directory, no rootfs mount, no task.
func (fs *fakeShim) assertCleanedUp(id, rootfs string) {
	fs.t.Helper()
	if pid := qemuPid(fs.t, id); pid != 0 {
		fs.t.Errorf("vm process %d of %s still exists", pid, id)
	}
	if _, err := os.Stat(filepath.Join(fs.root, id)); !errors.Is(err, os.ErrNotExist) {
		fs.t.Errorf("sandbox dir of %s: stat = %v, want it removed", id, err)
	}
	if rootfs != "" {
		if mounted, err := mount.Lookup(rootfs); err == nil && mounted.Mountpoint == rootfs {
			fs.t.Errorf("rootfs %s still mounted", rootfs)
		}
	}
	if _, err := fs.svc.State(context.Background(), &taskAPI.StateRequest{ID: id}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		fs.t.Errorf("State of %s after the failed create = %v, want NotFound", id, err)
	}
}

// wantErr is nil when err (a gRPC status) is of the kind is tells, else an error naming
// the kind wanted.
func wantErr(err error, is func(error) bool, want string) error {
	switch {
	case err == nil:
		return fmt.Errorf("got no error, want %s", want)
	case !is(errgrpc.ToNative(err)):
		return fmt.Errorf("got %w, want %s", err, want)
	}
	return nil
}

func TestCreateFailsAfterDialTimeout(t *testing.T) {
	fs := newFakeShim(t, "dial_timeout = 3")
	id := silentID("dial")
	start := time.Now()
	_, err := fs.svc.Create(context.Background(), fs.request(id, nil))
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("create with a guest that never answers succeeded")
	}
	if !strings.Contains(err.Error(), "wait for agent") {
		t.Errorf("create error = %v, want it to say it waited for the agent", err)
	}
	// agent.dial_timeout = 3 s bounds the wait; the default (45 s) would not.
	if elapsed < 3*time.Second || elapsed > 20*time.Second {
		t.Errorf("create failed after %v, want about agent.dial_timeout = 3s", elapsed)
	}
	fs.assertCleanedUp(id, "")
}

// TestBootingTaskAnswersAndCancels boots a sandbox whose guest never answers and checks
// that the shim answers while it boots, and that Kill or Delete of the booting task ends
// the boot at once and cleans up everything.
func TestBootingTaskAnswersAndCancels(t *testing.T) {
	for _, how := range []string{"kill", "delete"} {
		t.Run(how, func(t *testing.T) {
			fs := newFakeShim(t, "dial_timeout = 600")
			ctx := context.Background()
			id := silentID(how)
			var rootfsMounts []*types.Mount
			if os.Geteuid() == 0 {
				rootfsMounts = []*types.Mount{{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}}}
			}
			req := fs.request(id, rootfsMounts)
			rootfs := filepath.Join(req.Bundle, "rootfs")

			created := make(chan error, 1)
			go func() {
				_, err := fs.svc.Create(ctx, req)
				created <- err
			}()
			// The VM runs and the host waits for its agent.
			pid := waitForVM(t, id, created)
			if len(rootfsMounts) > 0 {
				if m, err := mount.Lookup(rootfs); err != nil || m.Mountpoint != rootfs {
					t.Fatalf("rootfs not mounted while booting: %+v, %v", m, err)
				}
			}

			waited := make(chan *taskAPI.WaitResponse, 1)
			go func() {
				resp, err := fs.svc.Wait(ctx, &taskAPI.WaitRequest{ID: id})
				if err != nil {
					t.Errorf("wait: %v", err)
				}
				waited <- resp
			}()

			// Every call answers at once while the VM boots.
			prompt := func(name string, call func(context.Context) error) {
				t.Helper()
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- call(cctx) }()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("%s: %v", name, err)
					}
				case <-time.After(2 * time.Second):
					// The call is stuck behind the boot; the test cannot clean up.
					panic(fmt.Sprintf("%s does not answer while the vm boots", name))
				}
			}
			prompt("State", func(ctx context.Context) error {
				st, err := fs.svc.State(ctx, &taskAPI.StateRequest{ID: id})
				if err == nil && (st.Status != task.Status_CREATED || st.Bundle != req.Bundle) {
					err = fmt.Errorf("got status %s bundle %s, want CREATED in %s", st.Status, st.Bundle, req.Bundle)
				}
				return err
			})
			prompt("Connect", func(ctx context.Context) error {
				resp, err := fs.svc.Connect(ctx, &taskAPI.ConnectRequest{ID: id})
				if err == nil && resp.ShimPid != uint32(os.Getpid()) {
					err = fmt.Errorf("shim pid %d, want %d", resp.ShimPid, os.Getpid())
				}
				return err
			})
			prompt("Pids", func(ctx context.Context) error {
				resp, err := fs.svc.Pids(ctx, &taskAPI.PidsRequest{ID: id})
				if err == nil && len(resp.Processes) != 0 {
					err = fmt.Errorf("got %d processes, want none before the task is created", len(resp.Processes))
				}
				return err
			})
			prompt("State of another task", func(ctx context.Context) error {
				_, err := fs.svc.State(ctx, &taskAPI.StateRequest{ID: "other"})
				return wantErr(err, errdefs.IsNotFound, "NotFound")
			})
			prompt("Start", func(ctx context.Context) error {
				_, err := fs.svc.Start(ctx, &taskAPI.StartRequest{ID: id})
				return wantErr(err, errdefs.IsFailedPrecondition, "FailedPrecondition while creating")
			})
			prompt("Create of a second sandbox", func(ctx context.Context) error {
				_, err := fs.svc.Create(ctx, fs.request(silentID("second"), nil))
				return wantErr(err, errdefs.IsAlreadyExists, "AlreadyExists: the sandbox slot is taken")
			})
			prompt("Shutdown", func(ctx context.Context) error {
				_, err := fs.svc.Shutdown(ctx, &taskAPI.ShutdownRequest{ID: id})
				select {
				case <-fs.sd.Done():
					return errors.New("the shim shut down with a task being created")
				default:
				}
				return err
			})

			begin := time.Now()
			switch how {
			case "kill":
				if _, err := fs.svc.Kill(ctx, &taskAPI.KillRequest{ID: id, Signal: 9}); err != nil {
					t.Fatalf("kill: %v", err)
				}
			case "delete":
				resp, err := fs.svc.Delete(ctx, &taskAPI.DeleteRequest{ID: id})
				if err != nil {
					t.Fatalf("delete: %v", err)
				}
				if resp.ExitStatus != 137 {
					t.Errorf("delete exit status %d, want 137", resp.ExitStatus)
				}
			}
			select {
			case err := <-created:
				if err == nil || !strings.Contains(err.Error(), "cancelled by Kill or Delete") {
					t.Errorf("create = %v, want an error saying it was cancelled", err)
				}
				if !errdefs.IsCanceled(errgrpc.ToNative(err)) {
					t.Errorf("create = %v, want a Canceled status", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("create still runs 20s after %s", how)
			}
			if d := time.Since(begin); d > 10*time.Second {
				t.Errorf("the boot took %v to end after %s", d, how)
			}
			select {
			case resp := <-waited:
				if resp != nil && resp.ExitStatus != 137 {
					t.Errorf("wait exit status %d, want 137", resp.ExitStatus)
				}
			case <-time.After(5 * time.Second):
				t.Error("wait did not return after the create was cancelled")
			}
			if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
				t.Errorf("vm process %d still exists (or is not reaped)", pid)
			}
			fs.assertCleanedUp(id, rootfs)
		})
	}
}

// runtime.enable_debug turns debug logging on; its absence never turns it off.
func TestDebugFromConfig(t *testing.T) {
	before := log.GetLevel()
	t.Cleanup(func() { _ = log.SetLevel(before.String()) })
	ctx := context.Background()
	if err := log.SetLevel("info"); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	debugFromConfig(ctx, cfg)
	if got := log.GetLevel(); got != log.InfoLevel {
		t.Fatalf("level %v without runtime.enable_debug, want info", got)
	}
	cfg.Runtime.EnableDebug = true
	debugFromConfig(ctx, cfg)
	if got := log.GetLevel(); got != log.DebugLevel {
		t.Fatalf("level %v with runtime.enable_debug, want debug", got)
	}
	cfg.Runtime.EnableDebug = false
	debugFromConfig(ctx, cfg)
	if got := log.GetLevel(); got != log.DebugLevel {
		t.Fatalf("level %v after a configuration without it, want debug kept", got)
	}
}

// TestCreateRootfsDisk checks the shim's choice for a rootfs that is one ext4 mount of a
// block device (devmapper): it does not mount it (the VM gets it as a disk, so the create
// goes on to boot the VM, whose silent guest then times out), unless
// disable_block_device_use asks for the host mount (which fails: the device is missing).
func TestCreateRootfsDisk(t *testing.T) {
	rootfs := []*types.Mount{{Type: "ext4", Source: "/dev/mapper/vessel-test-missing", Options: []string{"rw"}}}
	for _, tc := range []struct {
		name, hypervisor, want string
	}{
		{"disk", "", "wait for agent"},
		{"shared", "disable_block_device_use = true", "mount rootfs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFakeShimWith(t, tc.hypervisor, "dial_timeout = 1")
			id := silentID("rootfs-" + tc.name)
			_, err := fs.svc.Create(context.Background(), fs.request(id, rootfs))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("create: got %v, want an error containing %q", err, tc.want)
			}
			fs.assertCleanedUp(id, "")
		})
	}
}
