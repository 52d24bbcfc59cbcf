//go:build !cgo

package taskpid

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// hooked records that this binary's main called Main: only then does re-executing it
// with Argv0 make a stand-in rather than run the binary itself.
var hooked atomic.Bool

// Main makes this process a stand-in when argv[0] is Argv0, and then does not return;
// otherwise it returns at once. Call it first in main. This is the stand-in of builds
// without cgo, where no C constructor runs before the Go runtime: it is a whole Go
// runtime (megabytes of memory and a few threads per stand-in). Build with cgo.
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

// canStart tells whether Start can make stand-ins: only when main called Main.
func canStart() error {
	if !hooked.Load() {
		return fmt.Errorf("start a task stand-in: this binary, built without cgo, does not run the stand-in (its main must call taskpid.Main first): %w", errdefs.ErrFailedPrecondition)
	}
	return nil
}
