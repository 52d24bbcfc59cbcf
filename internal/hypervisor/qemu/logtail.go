package qemu

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/vessel-containers/vessel/internal/guesttext"
	"github.com/vessel-containers/vessel/internal/hypervisor"
)

const (
	// tailLines is how many lines of each log an unexpected-exit error quotes.
	tailLines = 20
	// tailBytes bounds what an error quotes of each log, whatever its lines' length.
	tailBytes = 4096
)

// readTail returns the last n bytes of the file at path, or a note when it cannot be read.
func readTail(path string, n int64) []byte {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return []byte("(no file)")
	}
	if err != nil {
		return []byte(fmt.Sprintf("(%v)", err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return []byte(fmt.Sprintf("(%v)", err))
	}
	off := max(st.Size()-n, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return []byte(fmt.Sprintf("(%v)", err))
	}
	return b
}

// logTails formats, for an error message, the end of the guest console (from the VM's
// ring) and of qemu.log, escaped: the console is guest text, and QEMU's messages may
// quote the guest.
func (v *VM) logTails() string {
	qemuLog := v.statePath(qemuLogName)
	return fmt.Sprintf("\n--- guest console (%s, last %d lines) ---\n%s\n--- %s (last %d lines) ---\n%s",
		hypervisor.ConsoleLogName, tailLines, guesttext.Tail(v.console.tail(), tailLines, tailBytes),
		qemuLog, tailLines, guesttext.Tail(readTail(qemuLog, tailBytes), tailLines, tailBytes))
}
