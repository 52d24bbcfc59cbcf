// Package guard starts the agent's goroutines so that a panic in one of them is contained:
// the agent is PID 1 of the guest, and an unrecovered panic in any goroutine would end the
// process and with it the VM. Go runs a goroutine's deferred recover only in that goroutine,
// so every goroutine the agent starts goes through Go (ttrpc request handlers are covered by
// the server's interceptor instead).
package guard

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/containerd/log"
)

// PanicError is a panic recovered from a goroutine started by Go.
type PanicError struct {
	// Name is the goroutine's name as given to Go.
	Name string
	// Value is what was passed to panic.
	Value any
	// Stack is the goroutine's stack at the panic.
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("%s: panic: %v", e.Name, e.Value)
}

// Go runs fn in a new goroutine named name. A panic in fn is recovered, logged with its stack
// through ctx's logger, and handed to onPanic (when not nil), which fails the goroutine's work
// cleanly: closes what waiters wait on, records an error for the request that owns the work.
// onPanic runs in the same goroutine, after fn's own deferred calls.
func Go(ctx context.Context, name string, fn func(), onPanic func(*PanicError)) {
	go Run(ctx, name, fn, onPanic)
}

// Run is Go without the new goroutine: it calls fn and contains its panic the same way. It
// is for goroutines started elsewhere (a callback the agent does not start itself).
func Run(ctx context.Context, name string, fn func(), onPanic func(*PanicError)) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		perr := &PanicError{Name: name, Value: r, Stack: debug.Stack()}
		log.G(ctx).WithField("stack", string(perr.Stack)).Errorf("contained a panic in goroutine %s: %v", name, r)
		if onPanic != nil {
			onPanic(perr)
		}
	}()
	fn()
}
