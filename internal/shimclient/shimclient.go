// Package shimclient is the vessel CLI's side of the shim: it finds the
// containerd-shim-vessel-v2 binary, runs its start action the way containerd does, with the
// flags internal/shimproto defines (state, socket and log under the CLI's --root), to start
// or find the shim that serves a container's sandbox, dials it, and runs the delete action
// to clean up behind a shim that died. Calls go through containerd's typed task API
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
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"

	// Registers the runtime-spec types the task API (Process, LinuxResources) and the
	// runtime info (Features) carry.
	_ "github.com/containerd/containerd/v2/core/runtime"

	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/unixsock"
)

// Namespace is the containerd namespace the CLI runs its shims in. The shim only records
// it; its socket, state and log locations come from flags.
const Namespace = "vessel"

// FindBinary returns the shim next to the running executable, else the one on PATH.
func FindBinary() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), shimproto.BinaryName)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(shimproto.BinaryName)
	if err != nil {
		return "", fmt.Errorf("%s is neither next to vessel nor on PATH: %w", shimproto.BinaryName, err)
	}
	return p, nil
}

// Config describes one run of the shim binary for a container.
type Config struct {
	// Binary is the shim executable.
	Binary string
	// Dir is the shim's working directory: the container's state directory. The start
	// action writes the shim's address there.
	Dir string
	// Invocation holds the flags: the namespace, the container (or, for delete, sandbox)
	// id, the bundle holding config.json, and where state, socket and log go.
	shimproto.Invocation
}

// Start runs the shim's start action: it starts a shim for the container's sandbox, or
// finds the one already serving it (a pod's containers share one), and returns its address.
func Start(ctx context.Context, cfg Config) (string, error) {
	stdout, err := run(ctx, cfg, shimproto.ActionStart)
	if err != nil {
		return "", err
	}
	address := strings.TrimSpace(stdout)
	if address == "" {
		return "", fmt.Errorf("shim %s: no address printed", shimproto.ActionStart)
	}
	log.G(ctx).WithField("address", address).Debug("shim started")
	return address, nil
}

// Delete runs the shim's delete action, as containerd does when a shim died: it removes
// the dead shim's socket and, when cfg.ID names the sandbox, the VM and all sandbox state.
func Delete(ctx context.Context, cfg Config) error {
	_, err := run(ctx, cfg, shimproto.ActionDelete)
	return err
}

// run runs the shim binary's action and returns its standard output. What the action
// writes to standard error is logged (warnings of a successful delete) or, when it fails,
// part of the error.
func run(ctx context.Context, cfg Config, action string) (string, error) {
	cmd := exec.CommandContext(ctx, cfg.Binary, cfg.Args(action)...)
	cmd.Dir = cfg.Dir
	cmd.Env = shimEnv(os.Environ())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// The shim's own children (the shim daemon) must not keep our pipes open.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("shim %s: %w: %s", action, err, strings.TrimSpace(stderr.String()))
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		log.G(ctx).WithField("action", action).Debug(s)
	}
	return stdout.String(), nil
}

// shimEnv is the environment of a shim the CLI runs: ours, without the variables through
// which containerd gives its shims its addresses (there is no containerd to publish events
// to).
func shimEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "TTRPC_ADDRESS", "GRPC_ADDRESS", "NAMESPACE", "MAX_SHIM_VERSION":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// Info runs the shim binary's info action (-info), which describes the runtime as it
// does to containerd, and returns the features it reports.
func Info(ctx context.Context, binary string) (*features.Features, error) {
	cmd := exec.CommandContext(ctx, binary, "-"+shimproto.FlagInfo)
	cmd.Env = shimEnv(os.Environ())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("shim -info: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var info types.RuntimeInfo
	if err := proto.Unmarshal(out, &info); err != nil {
		return nil, fmt.Errorf("shim -info: decode runtime info: %w", err)
	}
	if info.Features == nil {
		return nil, fmt.Errorf("shim -info: runtime %s reports no features", info.Name)
	}
	v, err := typeurl.UnmarshalAny(info.Features)
	if err != nil {
		return nil, fmt.Errorf("shim -info: decode features: %w", err)
	}
	f, ok := v.(*features.Features)
	if !ok {
		return nil, fmt.Errorf("shim -info: features are %T, want runtime-spec features", v)
	}
	return f, nil
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
	conn, err := unixsock.Dial(ctx, &d, path)
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
