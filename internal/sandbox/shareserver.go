package sandbox

import (
	"context"
	"fmt"

	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/procid"
)

// attachInFileServer makes the share attach containers' root file systems and volumes in
// the mount namespace of the sandbox's file server, when it has one of its own: virtiofsd's
// file server always, QEMU's 9p server when the VMM is jailed (hypervisor.vmm_id_range),
// a VM from the factory's cache included. The host's mount namespace then holds none of
// them, so a mount point under a bind source is one only in the file server's namespace,
// and a user removing it on the host detaches it there (sharefs.Share.AttachIn). A 9p
// server that runs in the host's mount namespace (no jail) gets the mounts in the host's.
// Call it once the VM is up and the view is published.
func (s *Sandbox) attachInFileServer(ctx context.Context) error {
	var srv procid.ID
	switch {
	case s.copyMode():
		return nil
	case s.fsd != nil:
		pid, err := s.fsd.ServerPid()
		if err != nil {
			return err
		}
		if srv, err = procid.Of(pid); err != nil {
			return fmt.Errorf("virtiofsd's file server: %w", err)
		}
	case s.vmmIDs != nil:
		srv = procid.ID{Pid: s.vm.Pid(), StartTime: s.vmStart}
	default:
		return nil
	}
	s.share.AttachIn(srv)
	log.G(ctx).WithField("server", srv.String()).Debug("shares attach in the file server's mount namespace")
	if !s.FileIDsMapped() { // userns.go
		return nil
	}
	// Volumes are idmapped for the file server: so must be the mounts that reach an
	// `rslave` or `rshared` one from the host later. Without the watcher they are not
	// (the container reads them only where their modes let any user read), which is
	// logged, not refused.
	stop, err := s.share.WatchPropagation(context.WithoutCancel(ctx))
	if err != nil {
		log.G(ctx).WithError(err).Warn("mounts propagated into volumes will not be idmapped for the file server")
		return nil
	}
	s.stopPropagation = stop
	return nil
}

// stopWatchingPropagation stops the share's propagation watcher, if it runs, and waits
// for it.
func (s *Sandbox) stopWatchingPropagation() {
	if s.stopPropagation != nil {
		s.stopPropagation()
		s.stopPropagation = nil
	}
}
