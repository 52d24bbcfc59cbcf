package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/sandbox"
	"github.com/vessel-containers/vessel/internal/taskpid"
	"github.com/vessel-containers/vessel/internal/tracing"
)

// stdio are the names containerd gave for a process's streams: FIFO paths, or for the
// output file:// and binary:// URIs (see openStdio).
type stdio struct {
	stdin, stdout, stderr string
	terminal              bool
}

// container is the shim's view of one task.
type container struct {
	id, bundle string
	// rootfs is the plan's root file system path; rootfsMounted is set while the shim's
	// mount of containerd's snapshot is there.
	rootfs        string
	rootfsMounted bool
	// idmapped is set while the overlay mountIDMapped made for an unprivileged VMM is
	// mounted (idmap.go).
	idmapped bool
	// layerMounts are the host mounts of a templated rootfs's layers under the overlay at
	// rootfs, in mount order (layers.go).
	layerMounts []string
	// ctr is the container in the sandbox: nil until Create commits, then never changed.
	ctr *sandbox.Container
	// cgroups are the directories of the sandbox's host cgroups (hostcgroup.Dirs), where
	// its VM runs: the container's stand-ins join them. Set before Create commits, then
	// never changed; none when the sandbox has no host cgroup.
	cgroups []string
	init    *process
	// hooks are the spec's OCI hooks the shim runs (hooks.go); nil when there are none or
	// the caller runs them. Set before Create commits, then never changed.
	hooks *ociHooks
	// oomSent is set once TaskOOM was published for the container.
	oomSent atomic.Bool
	// created is closed when Create returns, whether it committed the container or not.
	created chan struct{}

	// creating and cancelCreate are guarded by the service's mu. creating is set from the
	// reservation of the id until Create commits or gives up; cancelCreate cancels the
	// context Create's slow steps run under.
	creating     bool
	cancelCreate context.CancelCauseFunc

	// mu guards execs.
	mu    sync.Mutex
	execs map[string]*process
}

func (c *container) process(execID string) (*process, error) {
	if execID == "" {
		return c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.execs[execID]
	if !ok {
		return nil, fmt.Errorf("exec %s in container %s: %w", execID, c.id, errdefs.ErrNotFound)
	}
	return p, nil
}

func (c *container) addExec(p *process) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.execs[p.execID]; dup {
		return fmt.Errorf("exec %s in container %s: %w", p.execID, c.id, errdefs.ErrAlreadyExists)
	}
	c.execs[p.execID] = p
	return nil
}

func (c *container) removeExec(execID string) {
	c.mu.Lock()
	delete(c.execs, execID)
	c.mu.Unlock()
}

// start runs the init process or an exec'd process.
func (c *container) start(ctx context.Context, p *process) error {
	if p.status() != task.Status_CREATED {
		return fmt.Errorf("process %q of %s is %s: %w", p.execID, c.id, p.status(), errdefs.ErrFailedPrecondition)
	}
	if p.execID == "" {
		if err := c.ctr.Start(ctx); err != nil {
			return err
		}
	} else {
		if err := p.startStandIn(c.cgroups); err != nil {
			return err
		}
		spec := *p.spec
		spec.Terminal = p.stdio.terminal
		if err := c.ctr.Exec(ctx, p.execID, &spec, p.execOptions); err != nil {
			p.stopStandIn()
			return err
		}
		// The guest keeps the output until it is read, so attaching after Exec loses nothing.
		if err := p.openIO(ctx, c.ctr); err != nil {
			if kerr := c.ctr.Kill(ctx, p.execID, syscall.SIGKILL, false); kerr != nil {
				log.G(ctx).WithError(kerr).Warn("kill exec whose stdio failed")
			}
			p.stopStandIn()
			return err
		}
	}
	p.setRunning()
	return nil
}

// processInfo is what Pids reports of a guest process: the host pid of the process the
// shim started it as (the init or an exec, by the guest's marks), else its guest pid;
// for an exec's, which exec it is, as containerd's runc shim does.
func (c *container) processInfo(gp *agentv1.ProcessInfo) (*task.ProcessInfo, error) {
	info := &task.ProcessInfo{Pid: gp.GetPid()}
	var own *process
	switch {
	case gp.GetInit():
		own = c.init
	case gp.GetExecId() != "":
		own, _ = c.process(gp.GetExecId())
		details, err := typeurl.MarshalAnyToProto(&options.ProcessDetails{ExecID: gp.GetExecId()})
		if err != nil {
			return nil, fmt.Errorf("encode process details: %w", err)
		}
		info.Info = details
	}
	if own != nil {
		if pid := own.pid(); pid != 0 {
			info.Pid = pid
		}
	}
	return info, nil
}

// stopStandIns ends the stand-ins of the container's processes (the container is gone).
func (c *container) stopStandIns() {
	c.init.stopStandIn()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.execs {
		p.stopStandIn()
	}
}

// closeIO stops every stdio copier of the container.
func (c *container) closeIO() {
	c.init.closeIO()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.execs {
		p.closeIO()
	}
}

// running reports whether a process of the container was started and its exit status is
// not recorded yet.
func (c *container) running() bool {
	if c.init.status() == task.Status_RUNNING {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.execs {
		if p.status() == task.Status_RUNNING {
			return true
		}
	}
	return false
}

// mountRootfs mounts the snapshot containerd gave for the container at its rootfs. With
// ids (the VMM's host id range) the snapshot is an overlay (checkIDMappable) whose lower
// layers are idmapped into ids (containerd's mount package does that for the uidmap and
// gidmap options) and whose upper and work directories are given to ids' root first:
// image files keep their owners as the VMM sees them, and everything the guest writes
// lands in the upper directory owned by ids' host ids.
func (c *container) mountRootfs(rootfs []*types.Mount, ids *idrange.Range) error {
	if sm := specMounts(rootfs); ids == nil && oci.IsTemplated(sm) {
		return c.mountLayerOverlay(sm) // layers.go
	}
	mounts := make([]mount.Mount, 0, len(rootfs))
	for _, m := range rootfs {
		mounts = append(mounts, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	if ids != nil {
		if !isOneOverlay(rootfs) {
			return fmt.Errorf("mount rootfs of %s idmapped: not one overlay mount: %w", c.id, errdefs.ErrInvalidArgument)
		}
		m := &mounts[0]
		uid := int(ids.HostID(0))
		for _, o := range m.Options {
			k, v, _ := strings.Cut(o, "=")
			if k != "upperdir" && k != "workdir" {
				continue
			}
			if err := os.Lchown(v, uid, uid); err != nil {
				return fmt.Errorf("give the rootfs %s of %s to the vmm's ids: %w", k, c.id, err)
			}
		}
		m.Options = append(slices.Clone(m.Options), ids.MountOptions()...)
	}
	if err := os.MkdirAll(c.rootfs, 0o711); err != nil {
		return fmt.Errorf("create rootfs dir of %s: %w", c.id, err)
	}
	if err := mount.All(mounts, c.rootfs); err != nil {
		return fmt.Errorf("mount rootfs of %s at %s: %w", c.id, c.rootfs, err)
	}
	c.rootfsMounted = true
	return nil
}

// tracedMountRootfs is mountRootfs in a "rootfs mount" span.
func (c *container) tracedMountRootfs(ctx context.Context, rootfs []*types.Mount, ids *idrange.Range) error {
	_, span := tracing.Start(ctx, "rootfs mount")
	err := c.mountRootfs(rootfs, ids)
	tracing.End(span, err)
	return err
}

// tracedMountRootfsMapped is mountRootfsMapped (idmap_mapped.go) in a "rootfs mount" span.
func (c *container) tracedMountRootfsMapped(ctx context.Context, rootfs []*types.Mount, ids idrange.Range) error {
	_, span := tracing.Start(ctx, "rootfs mount")
	err := c.mountRootfsMapped(rootfs, ids)
	tracing.End(span, err)
	return err
}

// specMounts converts the task's rootfs mounts.
func specMounts(rootfs []*types.Mount) []specs.Mount {
	out := make([]specs.Mount, 0, len(rootfs))
	for _, m := range rootfs {
		out = append(out, specs.Mount{Type: m.Type, Source: m.Source, Options: m.Options})
	}
	return out
}

// unmountRootfs removes the overlay an unprivileged VMM saw (idmap.go) and the snapshot
// mount the shim made for the container.
func (c *container) unmountRootfs(ctx context.Context) {
	if err := c.unmountIDMapped(); err != nil {
		log.G(ctx).WithError(err).WithField("rootfs", c.rootfs).Warn("unmount idmapped rootfs")
		return
	}
	if !c.rootfsMounted {
		return
	}
	if err := mount.UnmountRecursive(c.rootfs, 0); err != nil {
		log.G(ctx).WithError(err).WithField("rootfs", c.rootfs).Warn("unmount rootfs")
		return
	}
	if err := c.unmountLayers(); err != nil { // layers.go
		log.G(ctx).WithError(err).WithField("rootfs", c.rootfs).Warn("unmount rootfs layers")
		return
	}
	c.rootfsMounted = false
}

// process is one process of a container: its stdio and its exit.
type process struct {
	containerID string
	execID      string
	stdio       stdio
	spec        *specs.Process // exec'd processes only
	// execOptions are how Start starts an exec'd process.
	execOptions sandbox.ExecOptions

	// done is closed once the process has exited and its output is drained.
	done chan struct{}
	// watch starts the goroutine that waits for the exit, once: at Start, or at a Kill of
	// an init process that was created but never started (its exit must be reported too).
	watch sync.Once

	// mu guards st, code, exited, streams, files, fifos, standIn.
	mu      sync.Mutex
	st      task.Status
	code    int
	exited  time.Time
	streams *sandbox.Streams
	stdin   *stdinFIFO
	files   []io.Closer
	// standIn is the host process that stands for the process (internal/taskpid): its pid
	// is the one the task API reports. It runs from the init's Create or the exec's Start
	// until the exit is recorded; nil before.
	standIn *taskpid.Process
	// fifos are the output FIFOs among files.
	fifos []syscall.Conn
}

func newProcess(containerID, execID string, s stdio) *process {
	return &process{containerID: containerID, execID: execID, stdio: s, done: make(chan struct{}), st: task.Status_CREATED}
}

// id is the process id containerd uses in events: the exec id, or the container id.
func (p *process) id() string {
	if p.execID == "" {
		return p.containerID
	}
	return p.execID
}

// openIO opens the process's stdio as containerd named it (see openStdio) and starts
// copying between it and the guest.
func (p *process) openIO(ctx context.Context, ctr *sandbox.Container) error {
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	h, err := openStdio(ctx, openCtx, p.id(), p.stdio)
	if err != nil {
		return err
	}
	streams := ctr.Attach(ctx, p.execID, h.pio)
	p.mu.Lock()
	p.streams = streams
	p.stdin = h.stdin
	p.files = h.closers
	p.fifos = h.fifos
	p.mu.Unlock()
	return nil
}

// waitIO blocks until the output streams are drained and the reader of each output FIFO
// has taken what is in it (awaitTaken, at most outputTakeTimeout in all), then closes the
// FIFOs so the reader sees EOF.
func (p *process) waitIO() {
	p.mu.Lock()
	st, fifos := p.streams, p.fifos
	p.mu.Unlock()
	if st == nil {
		return
	}
	if err := st.Wait(); err != nil {
		log.L.WithError(err).WithField("container", p.containerID).Debug("stdio")
	}
	ctx, cancel := context.WithTimeout(context.Background(), outputTakeTimeout)
	defer cancel()
	for _, f := range fifos {
		if err := awaitTaken(ctx, f, sleepCtx); err != nil {
			l := log.L.WithError(err).WithField("container", p.containerID).WithField("exec", p.execID)
			if errors.Is(err, errReaderGone) {
				l.Debug("output not taken")
			} else {
				l.Warn("output not taken by the reader of its fifo before the exit is reported")
			}
		}
	}
	p.closeFiles()
}

// closeIO stops copying at once and closes the FIFOs.
func (p *process) closeIO() {
	p.mu.Lock()
	st := p.streams
	p.mu.Unlock()
	if st != nil {
		st.Close()
	}
	p.closeFiles()
}

func (p *process) closeFiles() {
	p.mu.Lock()
	files := p.files
	p.files, p.fifos = nil, nil
	p.mu.Unlock()
	var errs []error
	for _, f := range files {
		if err := f.Close(); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		err := errors.Join(errs...)
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			// A logging binary failed: output may be lost.
			log.L.WithError(err).WithField("container", p.containerID).Warn("close stdio")
		} else {
			log.L.WithError(err).Debug("close stdio")
		}
	}
}

// closeStdin closes the stdin FIFO once the copier has taken what is in it: the copier
// then sees the close and closes the guest's stdin.
func (p *process) closeStdin() {
	p.mu.Lock()
	f := p.stdin
	p.stdin = nil
	p.mu.Unlock()
	if f != nil {
		if err := f.closeDrained(); err != nil {
			log.L.WithError(err).WithField("container", p.containerID).Debug("close stdin")
		}
	}
}

func (p *process) status() task.Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

func (p *process) setRunning() {
	p.mu.Lock()
	if p.st == task.Status_CREATED {
		p.st = task.Status_RUNNING
	}
	p.mu.Unlock()
}

// startStandIn starts the process's stand-in, labelled with its container and exec ids, in
// the cgroups whose directories cgroups lists (container.cgroups). A process has one
// stand-in in its life: a second start (a concurrent Start of the same exec) and a start
// once the exit is recorded are refused, the new stand-in stopped.
func (p *process) startStandIn(cgroups []string) error {
	label := []string{p.containerID}
	if p.execID != "" {
		label = append(label, p.execID)
	}
	sp, err := taskpid.Start(cgroups, label...)
	if err != nil {
		return fmt.Errorf("process %q of %s: %w", p.execID, p.containerID, err)
	}
	p.mu.Lock()
	had, st := p.standIn != nil, p.st
	if !had && st != task.Status_STOPPED {
		p.standIn = sp
	}
	p.mu.Unlock()
	switch {
	case had:
		sp.Stop()
		return fmt.Errorf("process %q of %s is started already: %w", p.execID, p.containerID, errdefs.ErrFailedPrecondition)
	case st == task.Status_STOPPED:
		sp.Stop()
		return fmt.Errorf("process %q of %s has exited: %w", p.execID, p.containerID, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// pid is the process's pid on the host, its stand-in's: 0 before it has one. It stays
// the same once the stand-in has ended, as a process's pid stays in its exit status.
func (p *process) pid() uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.standIn == nil {
		return 0
	}
	return uint32(p.standIn.Pid())
}

// joinCgroups moves the process's running stand-in into the cgroups whose directories
// cgroups lists: an init's stand-in starts before its sandbox's cgroup exists.
func (p *process) joinCgroups(cgroups []string) error {
	p.mu.Lock()
	sp := p.standIn
	p.mu.Unlock()
	if sp == nil {
		return fmt.Errorf("process %q of %s has no stand-in to place in cgroups: %w", p.execID, p.containerID, errdefs.ErrFailedPrecondition)
	}
	if err := sp.Join(cgroups); err != nil {
		return fmt.Errorf("process %q of %s: %w", p.execID, p.containerID, err)
	}
	return nil
}

// stopStandIn ends the stand-in and returns once its pid is gone.
func (p *process) stopStandIn() {
	p.mu.Lock()
	sp := p.standIn
	p.mu.Unlock()
	sp.Stop()
}

// setExited records the exit once and wakes every waiter. The stand-in ends first: whoever
// learns of the exit finds the process's pid gone, as with a process on the host.
func (p *process) setExited(code int) {
	p.stopStandIn()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st == task.Status_STOPPED {
		return
	}
	p.st = task.Status_STOPPED
	p.code = code
	p.exited = time.Now()
	close(p.done)
}

func (p *process) exitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.code
}

func (p *process) exitedAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}
