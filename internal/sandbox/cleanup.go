package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/containerid"
	"github.com/vessel-containers/vessel/internal/hostcgroup"
	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/network"
	"github.com/vessel-containers/vessel/internal/persist"
	"github.com/vessel-containers/vessel/internal/portforward"
	"github.com/vessel-containers/vessel/internal/procid"
	"github.com/vessel-containers/vessel/internal/sharefs"
)

// WaitOOM blocks until a container of the sandbox is OOM-killed and returns its id.
func (s *Sandbox) WaitOOM(ctx context.Context) (string, error) {
	ev, err := s.agent.GetOOMEvent(ctx)
	if err != nil {
		return "", s.explain(err)
	}
	return ev.ContainerId, nil
}

// Cleanup removes what a sandbox whose owner died left behind: the VM process and then its
// virtiofsd (each when it still runs and is still the process that was recorded), the
// port-forwarding table, taps and tc filters in the pod's network namespace, the pod's host
// cgroup, the lease of the VMM's id slot, mounts in the share and the state directory.
// A sandbox that does not exist is not an error.
//
// Cleanup never removes the directory of a sandbox whose VM may still run without killing
// that VM first: a state it cannot read (corrupt, or a newer format), a VM that does not
// exit after SIGKILL, or a recorded VM it cannot identify is an error, and the directory is
// kept for the operator or a newer vessel.
func Cleanup(ctx context.Context, root, id string) error {
	if err := containerid.Validate(id); err != nil {
		return err
	}
	if root == "" {
		root = persist.DefaultRoot
	}
	dir := filepath.Join(root, id)
	st, err := persist.Load(dir)
	switch {
	case errdefs.IsNotFound(err):
		// No state, so no VM this process does not own: a cold-booted VMM dies with the
		// process that started it, and a VM from the factory is recorded (recordVM) before
		// the sandbox uses it.
		st = nil
	case err != nil:
		return fmt.Errorf("clean up sandbox %s: %w (directory %s kept: the VM it records may still run)", id, err, dir)
	}
	if st != nil && st.VMPid > 0 {
		if err := killVM(ctx, st); err != nil {
			return fmt.Errorf("clean up sandbox %s: %w (directory %s kept)", id, err, dir)
		}
	}
	// The shared file system daemon, once the VM that used it is gone. It dies with the
	// process that started it too (parent-death signal); this covers the rest.
	if st != nil && st.FSDaemonPid > 0 {
		d := procid.ID{Pid: st.FSDaemonPid, StartTime: st.FSDaemonStartTime}
		if err := killProcess(ctx, "file system daemon", d); err != nil {
			return fmt.Errorf("clean up sandbox %s: %w (directory %s kept)", id, err, dir)
		}
	}
	// The port-forwarding table the sandbox added to the pod's network namespace.
	if err := portforward.Teardown(dir); err != nil {
		return fmt.Errorf("clean up sandbox %s: %w (directory %s kept)", id, err, dir)
	}
	// The taps and tc filters the sandbox added to the pod's network namespace, once the
	// VM that used them is gone.
	if err := network.Teardown(ctx, dir); err != nil {
		return fmt.Errorf("clean up sandbox %s: %w (directory %s kept)", id, err, dir)
	}
	// The pod's host cgroup, once the processes in it are gone. A cgroup that cannot be
	// removed yet (a process someone else put there) keeps the directory, which holds its
	// record for the next cleanup; the share is unmounted all the same, since the VM that
	// used it is gone and its mounts would pin the containers' root file systems.
	if cgErr := hostcgroup.Remove(ctx, dir); cgErr != nil {
		if err := sharefs.Open(dir).Close(ctx); err != nil {
			cgErr = errors.Join(cgErr, err)
		}
		return fmt.Errorf("clean up sandbox %s: %w (directory %s kept)", id, cgErr, dir)
	}
	// The VMM's id slot, while the directory that holds its lease still exists: a lease
	// whose holder is gone is free for the taking anyway, but its file would stay.
	if st != nil && st.VMMIDLeaseDir != "" {
		if err := idrange.ReleaseOwner(st.VMMIDLeaseDir, dir); err != nil {
			log.G(ctx).WithError(err).Warn("release the vmm id slot of a dead sandbox owner")
		}
	}
	if err := removeDir(ctx, sharefs.Open(dir), dir); err != nil {
		return fmt.Errorf("clean up sandbox %s: %w", id, err)
	}
	return nil
}

// vmExitTimeout bounds the wait for a killed VMM to exit.
const vmExitTimeout = 10 * time.Second

// killVM kills the VMM st records if it still runs, and waits for it to exit. The VMM is
// known by pid and start time only (procid): a process that reuses its pid is never killed,
// and nothing here knows how a driver names or starts its process.
func killVM(ctx context.Context, st *persist.Sandbox) error {
	if st.VMStartTime == 0 {
		// A format-1 state written without the start time. A process with the pid may be
		// the VM or a later process that reused the pid; killing it on a guess could kill
		// anything, and removing the directory would pull the share from under a VM that
		// still runs. Only when no process has the pid is the VM certainly gone.
		if _, err := procid.ReadStat(st.VMPid); errdefs.IsNotFound(err) {
			return nil
		}
		log.G(ctx).WithField("pid", st.VMPid).WithField("format", st.Version).
			Warn("sandbox state records a vm pid without its start time and that pid runs; not killing it on a guess")
		return fmt.Errorf("vm pid %d is recorded without a start time (state format %d) and a process with that pid runs: "+
			"it cannot be identified as the sandbox's VM; stop it if it is, then clean up again: %w",
			st.VMPid, st.Version, errdefs.ErrFailedPrecondition)
	}
	return killProcess(ctx, "vm", procid.ID{Pid: st.VMPid, StartTime: st.VMStartTime})
}

// killProcess kills the process id names, if it still is that process, and waits for it
// to exit.
func killProcess(ctx context.Context, what string, id procid.ID) error {
	err := id.Signal(syscall.SIGKILL)
	if errdefs.IsNotFound(err) {
		return nil // exited, or its pid names another process now
	}
	if err != nil {
		return fmt.Errorf("kill %s: %w", what, err)
	}
	if !id.Wait(vmExitTimeout) {
		return fmt.Errorf("%s %s did not exit %v after SIGKILL", what, id, vmExitTimeout)
	}
	log.G(ctx).WithField("pid", id.Pid).Infof("killed the %s of a dead sandbox owner", what)
	return nil
}

// removeDir unmounts and removes the share, then the sandbox directory. When the share
// cannot be removed the directory is kept for a later cleanup: RemoveAll would reach
// through a mount left in place into a container's root filesystem or a host directory.
func removeDir(ctx context.Context, share *sharefs.Share, dir string) error {
	if err := share.Close(ctx); err != nil {
		return fmt.Errorf("%w (sandbox dir %s kept)", err, dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove sandbox dir: %w", err)
	}
	return nil
}
