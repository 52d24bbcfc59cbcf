package jail

import (
	"os/exec"
	"runtime"
	"sync"
)

// StartPinned starts cmd from an OS thread reserved for it until release is called, which
// the caller does once the child has exited (after cmd.Wait).
//
// A child started with Pdeathsig is killed when the thread that forked it exits, not the
// process, and the Go runtime ends any thread whose goroutine exits while locked to it, as
// code that enters another namespace does. A pooled thread may run such a goroutine at any
// time; a thread locked to a goroutine that waits here runs nothing else, so nothing else
// can end it while the child lives.
func StartPinned(cmd *exec.Cmd) (release func(), err error) {
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() { // owner: the caller, through release
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		started <- cmd.Start()
		<-done
	}()
	var once sync.Once
	release = func() { once.Do(func() { close(done) }) }
	if err := <-started; err != nil {
		release()
		return nil, err
	}
	return release, nil
}
