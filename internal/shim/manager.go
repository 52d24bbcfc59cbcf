// Package shim is Vessel's containerd shim v2 (runtime type io.containerd.vessel.v2): the
// shim manager that starts one shim process per sandbox, and the task service that maps the
// task API onto internal/sandbox. It is the only place that converts errors to gRPC status
// codes and the only place that publishes task events.
package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/persist"
	"github.com/vessel-containers/vessel/internal/sandbox"
	"github.com/vessel-containers/vessel/internal/version"
)

// RuntimeName is the runtime type containerd knows Vessel by.
const RuntimeName = "io.containerd.vessel.v2"

// Manager starts and cleans up shim processes.
type Manager struct{}

// NewManager returns the shim manager.
func NewManager() Manager { return Manager{} }

// Name is the runtime name.
func (Manager) Name() string { return RuntimeName }

// bundleSpec is the part of config.json the manager needs.
type bundleSpec struct {
	Annotations map[string]string `json:"annotations,omitempty"`
}

// sandboxIDOf returns the id of the sandbox a container belongs to: the CRI sandbox id for
// a pod's containers, the container's own id otherwise. The shim runs in the bundle dir.
func sandboxIDOf(id string) (string, error) {
	data, err := os.ReadFile("config.json")
	if err != nil {
		return "", fmt.Errorf("read bundle config.json: %w", err)
	}
	var s bundleSpec
	if err := json.Unmarshal(data, &s); err != nil {
		return "", fmt.Errorf("parse bundle config.json: %w", err)
	}
	_, sandboxID, err := oci.Identify(id, s.Annotations)
	if err != nil {
		return "", fmt.Errorf("bundle config.json: %w", err)
	}
	return sandboxID, nil
}

// Start starts a shim process for the container's sandbox, or returns the address of the
// one already running for it (containers of one pod share one shim and one VM).
//
// containerd 1.6 reads the address as plain text from stdout, containerd 2.x accepts plain
// text as a version 2 ttrpc address too, but the shim package writes JSON. So Start writes
// the plain address itself and points os.Stdout at /dev/null for the JSON that follows.
func (m Manager) Start(ctx context.Context, id string, opts shim.StartOpts) (_ shim.BootstrapParams, retErr error) {
	params := shim.BootstrapParams{Version: 2, Protocol: "ttrpc"}
	group, err := sandboxIDOf(id)
	if err != nil {
		return params, err
	}
	address, err := shim.SocketAddress(ctx, opts.Address, group, false)
	if err != nil {
		return params, fmt.Errorf("shim socket address: %w", err)
	}
	listener, err := shim.NewSocket(address)
	if err != nil {
		if !shim.SocketEaddrinuse(err) {
			return params, fmt.Errorf("create shim socket: %w", err)
		}
		if shim.CanConnect(address) {
			// The sandbox's shim is running: this container joins it.
			params.Address = address
			return params, writeAddress(address)
		}
		if err := shim.RemoveSocket(address); err != nil {
			return params, fmt.Errorf("remove stale shim socket: %w", err)
		}
		if listener, err = shim.NewSocket(address); err != nil {
			return params, fmt.Errorf("create shim socket: %w", err)
		}
	}
	defer func() {
		if retErr != nil {
			listener.Close()
			_ = shim.RemoveSocket(address)
		}
	}()
	f, err := listener.File()
	if err != nil {
		return params, fmt.Errorf("shim socket file: %w", err)
	}
	defer f.Close()

	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return params, fmt.Errorf("shim start: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return params, fmt.Errorf("shim start: %w", err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		return params, fmt.Errorf("shim start: %w", err)
	}
	args := []string{"-namespace", ns, "-id", id, "-address", opts.Address}
	if opts.Debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	cmd.ExtraFiles = []*os.File{f}
	// Its own process group: signals to containerd's group do not reach the shim.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return params, fmt.Errorf("start shim process: %w", err)
	}
	pid := cmd.Process.Pid
	// The shim outlives this process; release it so it is not left a zombie of ours.
	if err := cmd.Process.Release(); err != nil {
		return params, fmt.Errorf("release shim process: %w", err)
	}
	// containerd 1.6 reads stdout and stderr together as the address, so nothing may be
	// logged here. A failed adjustment leaves the shim at the default score, which is fine.
	_ = shim.AdjustOOMScore(pid)
	params.Address = address
	return params, writeAddress(address)
}

// writeAddress records the address in the bundle's "address" file, which containerd 1.6
// reads to reconnect after a restart, prints the plain address for containerd, and silences
// the JSON the shim package writes after Start returns.
func writeAddress(address string) error {
	tmp := "address.tmp"
	if err := os.WriteFile(tmp, []byte(address), 0o600); err != nil {
		return fmt.Errorf("write shim address file: %w", err)
	}
	if err := os.Rename(tmp, "address"); err != nil {
		return fmt.Errorf("write shim address file: %w", err)
	}
	if _, err := io.WriteString(os.Stdout, address); err != nil {
		return fmt.Errorf("write shim address: %w", err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	os.Stdout = devnull
	return nil
}

// Stop is `shim delete`: containerd calls it when a shim died, to clean up after it. It
// removes the container's rootfs mount and, for the sandbox's own container, the VM and
// all sandbox state.
func (m Manager) Stop(ctx context.Context, id string) (shim.StopStatus, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return shim.StopStatus{}, fmt.Errorf("shim delete: %w", err)
	}
	bundle := filepath.Join(filepath.Dir(cwd), id)
	if err := mount.UnmountRecursive(filepath.Join(bundle, "rootfs"), 0); err != nil {
		log.G(ctx).WithError(err).Warn("unmount rootfs")
	}
	group, err := sandboxIDOf(id)
	if err != nil {
		log.G(ctx).WithError(err).Warn("no bundle spec; assuming a standalone container")
		group = id
	}
	if group == id {
		if err := sandbox.Cleanup(ctx, sandboxRoot(), id); err != nil && !errdefs.IsNotFound(err) {
			return shim.StopStatus{}, err
		}
	}
	return shim.StopStatus{ExitedAt: time.Now(), ExitStatus: 128 + int(syscall.SIGKILL)}, nil
}

// Info describes the runtime to containerd.
func (m Manager) Info(ctx context.Context, _ io.Reader) (*types.RuntimeInfo, error) {
	return &types.RuntimeInfo{
		Name:    RuntimeName,
		Version: &types.RuntimeVersion{Version: version.Version},
	}, nil
}

// sandboxRoot is where sandboxes keep state; VESSEL_SANDBOX_ROOT overrides it (tests).
func sandboxRoot() string {
	if r := os.Getenv("VESSEL_SANDBOX_ROOT"); r != "" {
		return r
	}
	return persist.DefaultRoot
}
