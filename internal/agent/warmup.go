//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/bundle"
)

// WarmUpEnv (set to "1") and WarmUpArgv0 are the warm-up container's environment and
// program: the agent binary, run as that container's process, exits at once when it sees
// both (cmd/vessel-agent).
const (
	WarmUpEnv   = "VESSEL_AGENT_WARMUP"
	WarmUpArgv0 = "/agent"
)

// warmUpID names the throwaway sandbox and container.
const warmUpID = "vessel-warmup"

// WarmUp runs a throwaway container, whose process is this binary exiting at once, through
// CreateSandbox, CreateContainer, StartContainer, WaitProcess, RemoveContainer and
// DestroySandbox: the same calls, and so the same guest code (the agent's, libcontainer's,
// nsexec's, runc init's and the kernel's namespace and mount paths), as a real container.
// Under TCG a VM translates guest code on first use, which costs the first container of a
// fresh VM ~0.3 s; the VM factory's cache warms its VMs up before handing them out. Its
// root filesystem is an empty directory on the agent's tmpfs with this binary bind-mounted
// read-only into it; everything is removed again, also on failure.
func (s *Service) WarmUp(ctx context.Context, _ *agentv1.WarmUpRequest) (_ *agentv1.Empty, retErr error) {
	start := time.Now()
	s.mu.Lock()
	busy := s.sandbox != nil
	s.mu.Unlock()
	if busy {
		return nil, fmt.Errorf("%w: warm-up needs a guest without a sandbox", errdefs.ErrFailedPrecondition)
	}
	dir := filepath.Join(s.cfg.RunDir, "warmup")
	rootfs, cleanup, err := warmUpRootfs(dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := cleanup(); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	spec := bundle.DefaultSpec([]string{WarmUpArgv0}, false)
	spec.Root.Path = rootfs
	spec.Root.Readonly = true
	spec.Hostname = warmUpID
	spec.Process.Env = append(spec.Process.Env, WarmUpEnv+"=1")
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("warm-up spec: %w", err)
	}
	if _, err := s.CreateSandbox(ctx, &agentv1.CreateSandboxRequest{SandboxId: warmUpID, Hostname: warmUpID}); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	defer func() {
		if _, err := s.DestroySandbox(context.WithoutCancel(ctx), &agentv1.DestroySandboxRequest{}); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("warm-up: %w", err))
		}
	}()
	if _, err := s.CreateContainer(ctx, &agentv1.CreateContainerRequest{ContainerId: warmUpID, OciSpec: data}); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	if _, err := s.StartContainer(ctx, &agentv1.StartContainerRequest{ContainerId: warmUpID}); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	w, err := s.WaitProcess(ctx, &agentv1.WaitProcessRequest{ContainerId: warmUpID})
	if err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	if w.GetStatus() != 0 {
		return nil, fmt.Errorf("warm-up: the container's process exited with status %d", w.GetStatus())
	}
	// DestroySandbox (deferred) removes the container with the sandbox.
	log.G(ctx).WithField("took", time.Since(start).Round(time.Millisecond)).Info("warmed up")
	return &agentv1.Empty{}, nil
}

// warmUpRootfs makes dir/rootfs with this binary bind-mounted read-only at WarmUpArgv0, and
// returns its path and the function that removes it all.
func warmUpRootfs(dir string) (string, func() error, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("warm-up: own binary: %w", err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	target := filepath.Join(rootfs, WarmUpArgv0)
	cleanup := func() error {
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("warm-up: unmount %s: %w", target, err)
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		return nil
	}
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return "", nil, fmt.Errorf("warm-up: %w", err)
	}
	if err := os.WriteFile(target, nil, 0o755); err != nil {
		_ = cleanup()
		return "", nil, fmt.Errorf("warm-up: %w", err)
	}
	if err := unix.Mount(exe, target, "", unix.MS_BIND, ""); err != nil {
		_ = cleanup()
		return "", nil, fmt.Errorf("warm-up: bind %s: %w", exe, err)
	}
	if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		_ = cleanup()
		return "", nil, fmt.Errorf("warm-up: read-only %s: %w", target, err)
	}
	return rootfs, cleanup, nil
}
