// Package shimclient is the vessel CLI's side of the shim: it finds the
// containerd-shim-vessel-v2 binary, runs its start action the way containerd does (in
// namespace vessel-cli, with the CLI's --root as -address) to start or find the shim that
// serves a container's sandbox, and dials it. Calls go through containerd's typed task API
// client, so the CLI drives exactly the engine containerd drives; errors come back as
// containerd's errdefs values.
package shimclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"

	// Registers the runtime-spec types (Process, LinuxResources) the task API carries.
	_ "github.com/containerd/containerd/v2/core/runtime"

	"github.com/vessel-containers/vessel/internal/shim"
)

// BinaryName is the shim's executable name.
const BinaryName = "containerd-shim-vessel-v2"

// FindBinary returns the shim next to the running executable, else the one on PATH.
func FindBinary() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), BinaryName)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(BinaryName)
	if err != nil {
		return "", fmt.Errorf("%s is neither next to vessel nor on PATH: %w", BinaryName, err)
	}
	return p, nil
}

// StartConfig describes the shim start action for one container.
type StartConfig struct {
	// Binary is the shim executable.
	Binary string
	// Root is the CLI's --root; the shim's socket goes under Root/s.
	Root string
	// ID is the container id; Bundle its bundle directory (config.json is read there).
	ID     string
	Bundle string
	// Dir is the shim's working directory: the container's state directory. The shim
	// writes its address there and removes the socket it names when it exits.
	Dir string
	// SandboxRoot is where the shim keeps sandbox state (VM, shared-fs mounts).
	SandboxRoot string
	// Log is the file the shim logs to.
	Log   string
	Debug bool
}

// Start runs the shim's start action: it starts a shim for the container's sandbox, or
// finds the one already serving it (a pod's containers share one), and returns its address.
func Start(ctx context.Context, cfg StartConfig) (string, error) {
	args := []string{"-namespace", shim.CLINamespace, "-id", cfg.ID, "-address", cfg.Root, "-bundle", cfg.Bundle}
	if cfg.Debug {
		args = append(args, "-debug")
	}
	cmd := exec.CommandContext(ctx, cfg.Binary, append(args, "start")...)
	cmd.Dir = cfg.Dir
	cmd.Env = shimEnv(os.Environ(), cfg)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// The shim's own children (the shim daemon) must not keep our pipes open.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("start shim: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	address := strings.TrimSpace(stdout.String())
	if address == "" {
		return "", fmt.Errorf("start shim: no address printed: %s", strings.TrimSpace(stderr.String()))
	}
	log.G(ctx).WithField("address", address).Debug("shim started")
	return address, nil
}

// shimEnv is the environment of a shim the CLI starts: ours, without containerd's
// addresses (there is no containerd to publish events to), plus where to keep state and
// logs.
func shimEnv(env []string, cfg StartConfig) []string {
	out := make([]string, 0, len(env)+3)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "TTRPC_ADDRESS", "GRPC_ADDRESS", "NAMESPACE", "MAX_SHIM_VERSION", "VESSEL_SANDBOX_ROOT", shim.LogEnv:
			continue
		}
		out = append(out, kv)
	}
	return append(out, "VESSEL_SANDBOX_ROOT="+cfg.SandboxRoot, shim.LogEnv+"="+cfg.Log)
}

// Client is a connection to one shim. The embedded TaskService is containerd's typed
// client: one method per task API call.
type Client struct {
	taskAPI.TaskService
	conn *ttrpc.Client
}

// dialTimeout bounds connecting to a shim's socket; a live shim accepts at once.
const dialTimeout = 2 * time.Second

// Dial connects to the shim at address ("unix://path"). A shim that is gone is
// errdefs.ErrUnavailable.
func Dial(ctx context.Context, address string) (*Client, error) {
	path := strings.TrimPrefix(address, "unix://")
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connect to shim %s: %w: %w", address, ErrShimGone, err)
	}
	c := ttrpc.NewClient(conn, ttrpc.WithUnaryClientInterceptor(nativeErrors))
	return &Client{TaskService: taskAPI.NewTaskClient(c), conn: c}, nil
}

// ErrShimGone marks errors that mean the shim process is not there.
var ErrShimGone = errors.New("shim is not running")

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// nativeErrors turns the shim's gRPC status codes back into errdefs errors.
func nativeErrors(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, info *ttrpc.UnaryClientInfo, invoker ttrpc.Invoker) error {
	err := invoker(ctx, req, resp)
	if err == nil {
		return nil
	}
	if errors.Is(err, ttrpc.ErrClosed) {
		return fmt.Errorf("%s: %w: %w", info.FullMethod, ErrShimGone, err)
	}
	return fmt.Errorf("%s: %w", info.FullMethod, errgrpc.ToNative(err))
}
