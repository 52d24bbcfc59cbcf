// Package taskpid runs the host processes that stand for a VM's processes: a container's
// processes live in the guest, where no host pid names them, yet containerd's task API
// reports a pid per process and its clients take it for a host process that exists
// exactly as long as the container's process does (containerd's client tests check that
// the task's pid is gone once its exit is delivered, and that it is among the task's
// Pids). The shim starts one stand-in per process it runs and stops it, reaped, before
// it reports the process's exit: the stand-in's pid is the process's pid on the host.
//
// A stand-in is the running binary executed again with argv[0] Argv0. A C constructor
// (standin_cgo.go) catches that before the Go runtime starts, as runc's nsexec catches
// "runc init": it does nothing but read its stdin, a pipe whose write end only its starter
// holds, and exits at end of file. So a stand-in is one thread and the few pages the
// dynamic loader and libc touch, and a shim that crashes leaves none behind: the kernel
// closes the write end with the shim's last thread. (PR_SET_PDEATHSIG would follow the
// thread that started the stand-in, which the Go runtime may end while the shim lives
// on.) A binary built without cgo has no constructor, and Start refuses there.
//
// A stand-in can be placed in cgroups (the sandbox's host cgroup, where its VM runs), so
// that the host's /proc/PID/cgroup of the task's pid shows the container's cgroup, as it
// does for runc's container processes.
package taskpid

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// Argv0 is the argv[0] that makes a process a stand-in (standin_cgo.go's constructor
// compares the same string).
const Argv0 = "vessel-task"

// selfExe is the running executable.
const selfExe = "/proc/self/exe"

// Process is one running stand-in. Its owner stops it with Stop; a goroutine reaps it.
type Process struct {
	cmd *exec.Cmd
	// hold is the write end of the stand-in's stdin: the stand-in lives while it is open.
	hold *os.File
	// done is closed once the stand-in is reaped.
	done chan struct{}
	stop sync.Once
}

// Start starts a stand-in labelled with the names of the process it stands for (shown in
// its command line, for people reading ps), in the cgroups whose directories cgroups lists
// (see Join; none leaves it in the caller's). It has joined them when Start returns, before
// anyone learns its pid. It fails in a binary built without cgo.
func Start(cgroups []string, label ...string) (*Process, error) {
	if err := canStart(); err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start a task stand-in: %w", err)
	}
	defer r.Close()
	cmd := &exec.Cmd{
		Path:  selfExe,
		Args:  append([]string{Argv0}, label...),
		Stdin: r,
		// The stand-in needs no environment; without cgo, one thread at most for the Go
		// runtime.
		Env: []string{"GOMAXPROCS=1"},
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start a task stand-in: %w", err)
	}
	p := &Process{cmd: cmd, hold: w, done: make(chan struct{})}
	go func() {
		// The exit status says nothing: a stand-in ends by Stop or by a signal.
		_ = cmd.Wait()
		close(p.done)
	}()
	if err := p.Join(cgroups); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// Join moves the stand-in into the cgroups whose directories (on cgroup v1 or v2 file
// systems, such as /sys/fs/cgroup/memory/pod1) cgroups lists, one per hierarchy. The
// stand-in is one thread that never forks, so writing its pid to each cgroup.procs moves
// all of it at once. On error it may be in some of them.
func (p *Process) Join(cgroups []string) error {
	pid := strconv.Itoa(p.Pid())
	for _, dir := range cgroups {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(pid), 0); err != nil {
			return fmt.Errorf("task stand-in %s: join cgroup %s: %w", pid, dir, err)
		}
	}
	return nil
}

// Pid is the stand-in's pid; it stays the same after Stop (the pid the process had).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the stand-in has ended and was reaped, whoever ended it.
func (p *Process) Done() <-chan struct{} { return p.done }

// Stop kills the stand-in and returns once it is reaped: its pid no longer exists. It may
// be called more than once and on a nil Process.
func (p *Process) Stop() {
	if p == nil {
		return
	}
	p.stop.Do(func() {
		// An error means it has ended already; done tells when it was reaped.
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		p.hold.Close()
	})
	<-p.done
}
