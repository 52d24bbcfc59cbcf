package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// tailLines is how many lines of each log an unexpected-exit error quotes.
const tailLines = 20

// tailFile returns the last n lines of the file at path (from at most its last 64 KiB),
// or a short note when it is missing or empty.
func tailFile(path string, n int) string {
	const maxRead = 64 * 1024
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "(no file)"
	}
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	off := st.Size() - maxRead
	if off < 0 {
		off = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return lastLines(b, n)
}

// lastLines returns the last n non-empty-trailing lines of b, with carriage returns removed.
func lastLines(b []byte, n int) string {
	b = bytes.ReplaceAll(b, []byte("\r"), nil)
	b = bytes.TrimRight(b, "\n")
	if len(b) == 0 {
		return "(empty)"
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logTails formats the tails of the console and QEMU logs for an error message.
func logTails(consoleLog, qemuLog string) string {
	return fmt.Sprintf("\n--- %s (last %d lines) ---\n%s\n--- %s (last %d lines) ---\n%s",
		consoleLog, tailLines, tailFile(consoleLog, tailLines), qemuLog, tailLines, tailFile(qemuLog, tailLines))
}
