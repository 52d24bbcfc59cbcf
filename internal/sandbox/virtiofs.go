package sandbox

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/procid"
	"github.com/vessel-containers/vessel/internal/sharefs/virtiofsd"
)

// Files of the sandbox's virtiofsd in the sandbox directory.
const (
	virtiofsdSocketName = "virtiofsd.sock"
	virtiofsdLogName    = "virtiofsd.log"
)

// startVirtioFSD starts the sandbox's virtiofsd, serving the export, and returns its socket
// for the VM. The view is published first: the daemon takes its copy of the host's mounts
// (its own mount namespace) when the VMM connects, and follows the view, a shared mount,
// as a slave, so containers' mounts made later reach it. The caller stops the daemon
// (stopVirtioFSD) on a later failure.
func (s *Sandbox) startVirtioFSD(ctx context.Context) (string, error) {
	if err := s.share.Publish(ctx); err != nil {
		return "", fmt.Errorf("sandbox %s: %w", s.id, err)
	}
	cfg := oci.VirtioFSD(s.cfg.Effective)
	cfg.Source = s.share.Dir()
	cfg.Socket = filepath.Join(s.dir, virtiofsdSocketName)
	cfg.Log = filepath.Join(s.dir, virtiofsdLogName)
	cfg.UserNS = s.VMMIDs()
	d, err := virtiofsd.Start(ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("sandbox %s: %w", s.id, err)
	}
	s.fsd = d
	return cfg.Socket, nil
}

// watchVirtioFSD ends the sandbox when its virtiofsd exits on its own: the guest's shared
// files are gone, so the VM is stopped, and every agent request from then on fails with
// the daemon's exit (explain). The daemon is never restarted: a new one would not know
// the guest's open files. It returns when the VM stops, whoever stops it, and closes done.
func (s *Sandbox) watchVirtioFSD(ctx context.Context, done chan struct{}) {
	defer close(done)
	select {
	case <-s.fsd.Done():
	case <-s.vm.Done():
		return
	}
	err := s.fsd.Err()
	if err == nil {
		return // stopped by Delete or a rollback, which stop the VM too
	}
	// The daemon exits when its VMM hangs up: a VMM that died first explains itself.
	if vmm := (procid.ID{Pid: s.vm.Pid(), StartTime: s.vmStart}); !vmm.Alive() {
		return
	}
	s.mu.Lock()
	s.fsdFailure = err
	s.mu.Unlock()
	log.G(ctx).WithError(err).Error("virtiofsd exited; stopping the sandbox's vm")
	stopVM(ctx, s.vm)
}

// expectVirtioFSDExit tells the daemon that the VM is about to stop, so that its exit is
// not taken for a failure. Call it before stopping the VM.
func (s *Sandbox) expectVirtioFSDExit() {
	if s.fsd != nil {
		s.fsd.ExpectExit()
	}
}

// stopVirtioFSD stops the sandbox's virtiofsd, if it has one, after the VM.
func (s *Sandbox) stopVirtioFSD(ctx context.Context) error {
	if s.fsd == nil {
		return nil
	}
	if err := s.fsd.Stop(ctx); err != nil {
		return err
	}
	if s.fsdWatch != nil {
		<-s.fsdWatch // the VM is stopped: the watcher returns
	}
	return nil
}

// virtioFSDFailure is the daemon's exit that made watchVirtioFSD stop the VM, or nil.
func (s *Sandbox) virtioFSDFailure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fsdFailure
}

// virtioFSDErr is how the sandbox's virtiofsd exited when nobody asked it to, or nil.
func (s *Sandbox) virtioFSDErr() error {
	if s.fsd == nil {
		return nil
	}
	select {
	case <-s.fsd.Done():
		return s.fsd.Err()
	default:
		return nil
	}
}

// unshareContainer removes a container's shares. With virtiofsd, whose mounts outlive
// their unmount for what the guest still holds (they are only detached), the shares are
// first made read-only in the daemon's mount namespace; a failure there is logged, not
// fatal: the daemon may be gone with the VM.
func (s *Sandbox) unshareContainer(ctx context.Context, id string) error {
	if s.fsd != nil && s.virtioFSDErr() == nil {
		pid, err := s.fsd.ServerPid()
		if err == nil {
			err = s.share.RevokeWritesIn(ctx, pid, id)
		}
		if err != nil {
			log.G(ctx).WithError(err).WithField("container", id).Warn("virtiofsd keeps write access to the removed container's shares")
		}
	}
	return s.share.RemoveContainer(ctx, id)
}
