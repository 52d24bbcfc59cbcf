//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/boot"
)

// sandbox is what CreateSandbox set up.
type sandbox struct {
	id string
	// ready is false while CreateSandbox is still running.
	ready bool
	// storages are the mount points of the sandbox's storages, in mount order.
	storages []string
	// pidns records that the host wants one pid namespace for the sandbox; containers
	// join it when their CreateContainerRequest.sandbox_pidns is set.
	pidns bool
	// debugConsole allows the Debug service (debug.go).
	debugConsole bool
	// hookPath is the guest directory of OCI hooks run for each container (hooks.go).
	hookPath string
}

// ResolvConfPath is where CreateSandbox writes the sandbox's resolv.conf, relative to RunDir.
const resolvConfPath = "sandbox/resolv.conf"

// CreateSandbox sets the hostname and DNS, mounts the sandbox storages and loads modules.
func (s *Service) CreateSandbox(ctx context.Context, req *agentv1.CreateSandboxRequest) (_ *agentv1.Empty, retErr error) {
	if h := req.GetHostname(); len(h) > 64 {
		return nil, fmt.Errorf("%w: hostname %q is longer than 64 bytes", errdefs.ErrInvalidArgument, h)
	}
	if err := checkHookPath(req.GetGuestHookPath()); err != nil { // hooks.go
		return nil, err
	}
	s.mu.Lock()
	if s.sandbox != nil {
		id := s.sandbox.id
		s.mu.Unlock()
		return nil, fmt.Errorf("sandbox %q: %w: CreateSandbox was already called", id, errdefs.ErrAlreadyExists)
	}
	sb := &sandbox{id: req.GetSandboxId(), pidns: req.GetSandboxPidns(), debugConsole: req.GetDebugConsole(), hookPath: req.GetGuestHookPath()}
	s.sandbox = sb
	s.mu.Unlock()
	defer func() {
		if retErr != nil {
			s.unmountAll(ctx, sb.storages)
			s.mu.Lock()
			s.sandbox = nil
			s.mu.Unlock()
		}
	}()

	if h := req.GetHostname(); h != "" {
		if err := unix.Sethostname([]byte(h)); err != nil {
			return nil, fmt.Errorf("set hostname %q: %w", h, err)
		}
	}
	if len(req.GetDns()) > 0 {
		if err := s.writeResolvConf(req.GetDns(), req.GetDnsSearch(), req.GetDnsOptions()); err != nil {
			return nil, err
		}
	}
	for i, st := range req.GetStorages() {
		mp, err := s.storage.Mount(ctx, st)
		if err != nil {
			return nil, fmt.Errorf("sandbox storage %d: %w", i, err)
		}
		sb.storages = append(sb.storages, mp)
	}
	for _, m := range req.GetKernelModules() {
		if err := boot.LoadModule(ctx, m.GetName(), m.GetParameters()); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	sb.ready = true
	s.mu.Unlock()
	log.G(ctx).WithField("sandbox", sb.id).WithField("debug_console", sb.debugConsole).Infof("sandbox created (%d storages)", len(sb.storages))
	return &agentv1.Empty{}, nil
}

func (s *Service) writeResolvConf(dns, search, options []string) error {
	var b strings.Builder
	for _, ns := range dns {
		if strings.ContainsAny(ns, " \t\n") || ns == "" {
			return fmt.Errorf("%w: dns entry %q is not an address", errdefs.ErrInvalidArgument, ns)
		}
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	if len(options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(options, " "))
	}
	// Written like a host's CopyFile: through no symlink, replacing whatever is there.
	err := s.files.copy(&agentv1.CopyFileRequest{
		Path: filepath.Join(s.cfg.RunDir, resolvConfPath), FileSize: int64(b.Len()), Data: []byte(b.String()),
		FileMode: unix.S_IFREG | 0o644, DirMode: 0o755, Uid: -1, Gid: -1,
	})
	if err != nil {
		return fmt.Errorf("write resolv.conf: %w", err)
	}
	return nil
}

// DestroySandbox kills and removes every container and unmounts the sandbox storages. The
// host stops the VM after the answer.
func (s *Service) DestroySandbox(ctx context.Context, _ *agentv1.DestroySandboxRequest) (*agentv1.Empty, error) {
	s.mu.Lock()
	sb := s.sandbox
	ids := make([]string, 0, len(s.containers))
	for id := range s.containers {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	if sb == nil {
		return nil, fmt.Errorf("sandbox: %w: CreateSandbox was not called", errdefs.ErrNotFound)
	}
	s.closePortForwards() // portforward.go
	var errs []error
	for _, id := range ids {
		if _, err := s.RemoveContainer(ctx, &agentv1.RemoveContainerRequest{ContainerId: id}); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	s.unmountAll(ctx, sb.storages)
	s.mu.Lock()
	s.sandbox = nil
	s.pidnsHolder = ""
	s.mu.Unlock()
	log.G(ctx).WithField("sandbox", sb.id).Info("sandbox destroyed")
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("destroy sandbox %q: %w", sb.id, err)
	}
	return &agentv1.Empty{}, nil
}

// unmountAll unmounts in reverse order, logging failures.
func (s *Service) unmountAll(ctx context.Context, mountPoints []string) {
	for i := len(mountPoints) - 1; i >= 0; i-- {
		if err := s.storage.Unmount(ctx, mountPoints[i]); err != nil {
			log.G(ctx).WithError(err).Warn("unmount storage")
		}
	}
}

// sandboxReady returns an error unless CreateSandbox completed.
func (s *Service) sandboxReady() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sandbox == nil || !s.sandbox.ready {
		return fmt.Errorf("%w: no sandbox: call CreateSandbox first", errdefs.ErrFailedPrecondition)
	}
	return nil
}

// hookPath is the sandbox's guest hook directory, "" when it has none.
func (s *Service) hookPath() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sandbox == nil {
		return ""
	}
	return s.sandbox.hookPath
}
