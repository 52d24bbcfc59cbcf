package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/containerid"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/persist"
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

// Cleanup removes what a sandbox whose owner died left behind: the VM process (when it still
// runs and is still the VM that was recorded), mounts in the share and the state directory.
// A sandbox that does not exist is not an error.
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
		st = nil
	case err != nil:
		log.G(ctx).WithError(err).Warn("sandbox state unreadable; cleaning what is there")
		st = nil
	}
	var errs []error
	if st != nil && st.VMPid > 0 && isVMProcess(st.VMPid, st.VMStartTime, id) {
		if err := syscall.Kill(st.VMPid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill vm %d: %w", st.VMPid, err))
		}
		log.G(ctx).WithField("pid", st.VMPid).Info("killed the VM of a dead sandbox owner")
	}
	if err := removeDir(ctx, sharefs.Open(dir), dir); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("clean up sandbox %s: %w", id, errors.Join(errs...))
	}
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

// isVMProcess reports whether pid still is the VMM of sandbox id, so a recycled pid is
// never killed: by its start time when recorded (a VM from the factory's cache is named
// after the cache's VM, not the sandbox), else by its name: drivers name their process
// after the sandbox (QEMU: -name vessel-<id>).
func isVMProcess(pid int, startTime uint64, id string) bool {
	if startTime != 0 {
		st, err := hypervisor.ProcessStartTime(pid)
		return err == nil && st == startTime
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	name := "vessel-" + id
	for _, arg := range bytes.Split(cmdline, []byte{0}) {
		a := string(arg)
		if a == name || a == "guest="+name || strings.HasPrefix(a, "guest="+name+",") || strings.HasPrefix(a, name+",") {
			return true
		}
	}
	return false
}
