package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agentclient"
	"github.com/vessel-containers/vessel/internal/bundle"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	_ "github.com/vessel-containers/vessel/internal/hypervisor/qemu"
	"github.com/vessel-containers/vessel/internal/procid"
	"github.com/vessel-containers/vessel/internal/sharefs"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// env is one booted sandbox for a test, torn down and checked for leftovers at cleanup.
type env struct {
	t    *testing.T
	sb   *Sandbox
	root string
}

// The shared fs of newEnv's sandboxes is VESSEL_TEST_SHARED_FS (virtio-9p or virtio-fs;
// empty: the default), so the whole suite can run over either.
func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvFS is newEnv with the given shared fs ("" for the default).
func newEnvFS(t *testing.T, fs hypervisor.SharedFS) *env {
	t.Helper()
	return newEnvWith(t, func(c *Config) { c.VM.SharedFS = fs })
}

// newEnvWith is newEnv with the sandbox's config edited first.
func newEnvWith(t *testing.T, edit func(*Config)) *env {
	t.Helper()
	g := testutil.RequiresVM(t)
	// A short root: unix socket paths are limited to 108 bytes.
	root, err := os.MkdirTemp("", "vst")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := Config{
		ID:   "sb",
		Root: root,
		VM: hypervisor.Config{
			Kernel: g.Kernel, Initrd: g.Initrd, VCPUs: 1, MaxVCPUs: 2, MemoryMiB: 256, MaxMemoryMiB: 512, MemorySlots: 2,
			SharedFS: hypervisor.SharedFS(os.Getenv("VESSEL_TEST_SHARED_FS")),
		},
	}
	if edit != nil {
		edit(&cfg)
	}
	sb, err := Create(ctx, cfg)
	if err != nil {
		os.RemoveAll(root)
		t.Fatalf("create sandbox: %v", err)
	}
	e := &env{t: t, sb: sb, root: root}
	t.Cleanup(func() {
		pid := sb.VM().Pid()
		var fsd procid.ID
		if sb.fsd != nil {
			fsd = sb.fsd.ID()
		}
		if err := sb.Delete(context.Background()); err != nil {
			t.Errorf("delete sandbox: %v", err)
		}
		assertNoLeftovers(t, root, pid)
		if fsd.Pid != 0 && fsd.Exists() {
			t.Errorf("virtiofsd %s still exists after delete", fsd)
		}
		os.RemoveAll(root)
	})
	return e
}

// assertNoLeftovers checks that no VMM process, mount or state is left.
func assertNoLeftovers(t *testing.T, root string, pid int) {
	t.Helper()
	if pid > 0 {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
			t.Errorf("vm process %d still exists after delete", pid)
		}
	}
	mounts, err := sharefs.MountsUnder(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) > 0 {
		t.Errorf("mounts left behind: %v", mounts)
	}
	entries, _ := os.ReadDir(root)
	if len(entries) > 0 {
		t.Errorf("state left in %s: %v", root, entries)
	}
}

// container creates a busybox container running args in the sandbox.
func (e *env) container(id string, args []string, edit func(*specs.Spec)) *Container {
	e.t.Helper()
	c, err := e.tryContainer(id, args, edit)
	if err != nil {
		e.t.Fatalf("create container %s: %v", id, err)
	}
	return c
}

// run starts c with stdin and returns its exit status, stdout and stderr.
func (e *env) run(c *Container, stdin []byte) (int, string, string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	st := c.Attach(ctx, "", IO{Stdin: bytes.NewReader(stdin), Stdout: &out, Stderr: &errb})
	defer st.Close()
	if err := c.Start(ctx); err != nil {
		e.t.Fatalf("start: %v", err)
	}
	code, err := c.Wait(ctx, "")
	if err != nil {
		e.t.Fatalf("wait: %v", err)
	}
	if err := st.Wait(); err != nil {
		e.t.Fatalf("stdio: %v", err)
	}
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"zero", []string{"true"}, 0},
		{"one", []string{"false"}, 1},
		{"explicit", []string{"sh", "-c", "exit 3"}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.container(tc.name, tc.args, nil)
			got, _, _ := e.run(c, nil)
			if got != tc.want {
				t.Errorf("exit status: got %d, want %d", got, tc.want)
			}
			if err := e.sb.DeleteContainer(context.Background(), tc.name); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("sigkill", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c := e.container("killed", []string{"sleep", "1000"}, nil)
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Kill(ctx, "", syscall.SIGKILL, false); err != nil {
			t.Fatal(err)
		}
		got, err := c.Wait(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if got != 137 {
			t.Errorf("exit status after SIGKILL: got %d, want 137", got)
		}
	})
}

func TestStdio(t *testing.T) {
	e := newEnv(t)
	t.Run("separate streams", func(t *testing.T) {
		c := e.container("streams", []string{"sh", "-c", "read line; echo out:$line; echo err:$line >&2"}, nil)
		code, out, errs := e.run(c, []byte("hello\n"))
		if code != 0 || out != "out:hello\n" || errs != "err:hello\n" {
			t.Errorf("got code %d stdout %q stderr %q, want 0 \"out:hello\\n\" \"err:hello\\n\"", code, out, errs)
		}
	})
	t.Run("10MiB binary round trip", func(t *testing.T) {
		in := make([]byte, 10<<20)
		if _, err := rand.Read(in); err != nil {
			t.Fatal(err)
		}
		c := e.container("cat", []string{"cat"}, nil)
		code, out, _ := e.run(c, in)
		if code != 0 {
			t.Fatalf("cat exit status %d", code)
		}
		if len(out) != len(in) || sha256.Sum256([]byte(out)) != sha256.Sum256(in) {
			t.Errorf("got %d bytes back (sha differs: %v), want the %d bytes sent", len(out), sha256.Sum256([]byte(out)) != sha256.Sum256(in), len(in))
		}
	})
}

func TestExecSeesInit(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := e.container("box", []string{"sleep", "1000"}, nil)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	p := bundle.DefaultSpec([]string{"sh", "-c", "pidof sleep && echo found"}, false).Process
	var out bytes.Buffer
	if err := c.Exec(ctx, "exec1", p, ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	st := c.Attach(ctx, "exec1", IO{Stdout: &out})
	code, err := c.Wait(ctx, "exec1")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Wait(); err != nil {
		t.Fatal(err)
	}
	if code != 0 || !strings.Contains(out.String(), "found") {
		t.Errorf("exec: got code %d output %q, want 0 and the pid of sleep", code, out.String())
	}
}

func TestSpecApplied(t *testing.T) {
	e := newEnv(t)
	c := e.container("spec", []string{"sh", "-c", "echo $FOO; pwd; id -u; id -g; id -G; hostname; cat /sys/fs/cgroup/memory.max"}, func(s *specs.Spec) {
		s.Process.Env = append(s.Process.Env, "FOO=bar=baz")
		s.Process.Cwd = "/tmp"
		s.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{65534}}
		s.Hostname = "vtest"
		limit := int64(64 << 20)
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
	})
	code, out, errs := e.run(c, nil)
	want := "bar=baz\n/tmp\n1000\n1000\n1000 65534\nvtest\n67108864\n"
	if code != 0 || out != want {
		t.Errorf("got code %d stdout %q stderr %q, want 0 and %q", code, out, errs, want)
	}
}

func TestVMKilledMidRun(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := e.container("victim", []string{"sleep", "1000"}, nil)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(e.sb.VM().Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, err := c.Wait(ctx, "")
	if err == nil {
		t.Fatal("wait after the VM was killed: got nil error")
	}
	if !strings.Contains(err.Error(), "vm exited") {
		t.Errorf("error %q does not say the VM exited", err)
	}
	// Cleanup (newEnv) deletes the sandbox and checks nothing is left.
}

func TestAgentRobustness(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Run("reconnect", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			if err := e.sb.agent.Close(); err != nil {
				t.Fatal(err)
			}
			a, err := agentclient.Dial(ctx, e.sb.VM().Agent(), agentclient.Timeouts{})
			if err != nil {
				t.Fatal(err)
			}
			e.sb.agent = a
			if _, err := a.Check(ctx); err != nil {
				t.Fatalf("check after reconnect %d: %v", i, err)
			}
		}
	})
	t.Run("malformed request", func(t *testing.T) {
		err := e.sb.agent.CreateContainer(ctx, &agentv1.CreateContainerRequest{ContainerId: "bad", OciSpec: []byte("{not json")})
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("malformed spec: got %v, want invalid argument", err)
		}
		if _, err := e.sb.agent.Check(ctx); err != nil {
			t.Errorf("agent unusable after a malformed request: %v", err)
		}
	})
	t.Run("unknown container", func(t *testing.T) {
		_, err := e.sb.agent.WaitProcess(ctx, "nope", "")
		if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "nope") {
			t.Errorf("unknown container: got %v, want not found naming it", err)
		}
	})
	t.Run("container still works", func(t *testing.T) {
		c := e.container("after", []string{"echo", "ok"}, nil)
		if code, out, _ := e.run(c, nil); code != 0 || out != "ok\n" {
			t.Errorf("got %d %q, want 0 \"ok\\n\"", code, out)
		}
	})
}
