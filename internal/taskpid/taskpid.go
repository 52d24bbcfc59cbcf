// Package taskpid runs the host processes that stand for a VM's processes: a container's
// processes live in the guest, where no host pid names them, yet containerd's task API
// reports a pid per process and its clients take it for a host process that exists
// exactly as long as the container's process does (containerd's client tests check that
// the task's pid is gone once its exit is delivered, and that it is among the task's
// Pids). The shim starts one stand-in per process it runs and stops it, reaped, before
// it reports the process's exit: the stand-in's pid is the process's pid on the host.
//
// A stand-in is the running binary executed again with argv[0] Argv0 (Main): it does
// nothing but read its stdin, a pipe whose write end only its starter holds, and exits
// at end of file. So a shim that crashes leaves none behind: the kernel closes the write
// end with the shim's last thread. (PR_SET_PDEATHSIG would follow the thread that started
// the stand-in, which the Go runtime may end while the shim lives on.)
package taskpid

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Argv0 is the argv[0] that makes a process a stand-in.
const Argv0 = "vessel-task"

// selfExe is the running executable.
const selfExe = "/proc/self/exe"

// hooked records that this binary's main called Main: only then does re-executing it with
// Argv0 make a stand-in rather than run the binary itself.
var hooked atomic.Bool

// Main makes this process a stand-in when argv[0] is Argv0, and then does not return;
// otherwise it returns at once. Call it first in main.
func Main() {
	hooked.Store(true)
	if len(os.Args) == 0 || os.Args[0] != Argv0 {
		return
	}
	// The default dispositions stay: any fatal signal ends the stand-in too.
	var buf [64]byte
	for {
		n, err := unix.Read(0, buf[:])
		if errors.Is(err, unix.EINTR) || err == nil && n > 0 {
			continue
		}
		os.Exit(0)
	}
}

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
// its command line, for people reading ps). It fails when this binary's main does not
// call Main.
func Start(label ...string) (*Process, error) {
	if !hooked.Load() {
		return nil, fmt.Errorf("start a task stand-in: this binary does not run the stand-in (its main must call taskpid.Main first): %w", errdefs.ErrFailedPrecondition)
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
		// The stand-in needs no environment, and one thread at most for the Go runtime.
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
	return p, nil
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
