//go:build linux

// Package reaper waits for the agent's orphans. The agent is PID 1 of the guest: a process
// whose parent exits is re-parented to it (the processes of a container that shares the
// guest's pid namespace and double-forks, the children of a debug process) and stays a
// zombie until the agent waits for it. The agent's other children are waited for by whoever
// started them (os/exec, libcontainer's own waits for `runc init` and its stages, the
// container processes the agent watches), which would lose their exit status to a catch-all
// wait4(-1). So the Reaper waits only for zombie children that nobody owns:
//
//   - Hold covers the starting of processes (libcontainer's Start, Exec and Destroy, which
//     fork and wait for helpers and hooks whose pids the agent never sees): no reaping
//     happens while a hold is taken;
//   - Own marks a started process that its starter will wait for (a container's init or
//     exec process, a debug process) from before the hold that covered its start is
//     released until its wait returned.
//
// On SIGCHLD, and when the last hold or an ownership is released, the Reaper lists its
// zombie children in /proc and waits for each that is not owned, by pid: a zombie's pid
// cannot be reused, so the pid it waits for is the zombie it saw.
package reaper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// Reaper waits for the zombie children of the current process that nobody owns. A nil
// *Reaper does nothing: its Hold and Own return no-op releases.
type Reaper struct {
	// proc is the proc file system's mount point.
	proc string
	// self is the pid whose children are reaped (the current process).
	self int
	// kick asks Run for a pass outside SIGCHLD (a hold or an ownership was released).
	kick chan struct{}

	// mu guards holds, owned and reaped. A pass holds it from its scan to its last wait, so
	// no start begins (Hold) during a pass.
	mu sync.Mutex
	// holds counts the starts in progress.
	holds int
	// owned counts, by pid, the owners waiting for that pid.
	owned map[int]int
	// reaped counts the orphans reaped.
	reaped uint64
}

// New returns a reaper of the current process's children, reading procDir ("" for /proc).
func New(procDir string) *Reaper {
	if procDir == "" {
		procDir = "/proc"
	}
	return &Reaper{proc: procDir, self: os.Getpid(), kick: make(chan struct{}, 1), owned: map[int]int{}}
}

// Hold keeps the reaper from reaping until the returned release is called: the processes
// started meanwhile are waited for by their starters. Release is idempotent.
func (r *Reaper) Hold() (release func()) {
	if r == nil {
		return func() {}
	}
	r.mu.Lock()
	r.holds++
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			r.holds--
			last := r.holds == 0
			r.mu.Unlock()
			if last {
				r.poke()
			}
		})
	}
}

// Own marks pid as waited for by its starter until the returned release is called (after
// that wait returned). Call it while a Hold covers the process's start. Release is
// idempotent.
func (r *Reaper) Own(pid int) (release func()) {
	if r == nil || pid <= 0 {
		return func() {}
	}
	r.mu.Lock()
	r.owned[pid]++
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			if r.owned[pid]--; r.owned[pid] <= 0 {
				delete(r.owned, pid)
			}
			r.mu.Unlock()
			r.poke()
		})
	}
}

// Reaped is the number of orphans reaped so far.
func (r *Reaper) Reaped() uint64 {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reaped
}

// poke asks Run for a pass; a pass already asked for covers this one.
func (r *Reaper) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run reaps on every SIGCHLD and poke until ctx ends. It does one pass first, for orphans
// that exited before it started.
func (r *Reaper) Run(ctx context.Context) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGCHLD)
	defer signal.Stop(sigs)
	for {
		if n, err := r.Reap(); err != nil {
			log.G(ctx).WithError(err).Warn("reap orphans")
		} else if n > 0 {
			log.G(ctx).Debugf("reaped %d orphan(s)", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-sigs:
		case <-r.kick:
		}
	}
}

// Reap does one pass: unless a hold is taken, it waits for every zombie child that is not
// owned, and returns how many it reaped.
func (r *Reaper) Reap() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.holds > 0 {
		return 0, nil // the last release pokes Run
	}
	zombies, err := r.zombieChildren()
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, pid := range zombies {
		if r.owned[pid] > 0 {
			continue
		}
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.ECHILD):
			// Its owner waited meanwhile (an os/exec wait of a process started before
			// this reaper existed).
		case err != nil:
			errs = append(errs, fmt.Errorf("wait for orphan %d: %w", pid, err))
		case got == pid:
			n++
		}
	}
	r.reaped += uint64(n) //nolint:gosec // n >= 0
	return n, errors.Join(errs...)
}

// zombieChildren lists the pids of the zombies whose parent is r.self.
//
// Preconditions: r.mu is held.
func (r *Reaper) zombieChildren() ([]int, error) {
	entries, err := os.ReadDir(r.proc)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(r.proc, e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		state, ppid, ok := parseStat(stat)
		if ok && state == 'Z' && ppid == r.self {
			out = append(out, pid)
		}
	}
	return out, nil
}

// parseStat reads the state and parent pid of a /proc/<pid>/stat line: "pid (comm) S ppid
// ...", where comm may hold spaces and parentheses.
func parseStat(stat []byte) (state byte, ppid int, ok bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := bytes.Fields(stat[i+1:])
	if len(fields) < 2 || len(fields[0]) != 1 {
		return 0, 0, false
	}
	ppid, err := strconv.Atoi(string(fields[1]))
	if err != nil {
		return 0, 0, false
	}
	return fields[0][0], ppid, true
}
