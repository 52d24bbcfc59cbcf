package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/unixsock"
)

// The guest's serial console (ttyS0) is a QEMU socket chardev in server mode on
// console.sock, a listening socket the driver creates, like QMP's. The VM's owner (the
// process that started QEMU, or the one that adopted it) connects as the one client and
// reads continuously: into a ring holding the last hypervisor.MaxConsoleLog bytes, used
// for error messages (Err, ConsoleTail), into console.log for operators, which is kept at
// the same bound, and line by line into the owner's log at debug level (consoleLines). A guest writing without end costs the host that much memory and
// that much disk, and nothing more.
//
// The reader never stops while QEMU runs, so QEMU's writes do not back up; if it did fall
// behind, QEMU's serial device retries a few times and then drops the byte: the guest's
// vCPUs are never blocked. While no client is connected (between Detach and the adopter's
// connect) QEMU discards console output. The socket outlives a handover: the adopter
// connects to the same socket, moved into its state directory.

// consoleReadSize is the reader's buffer: one read takes what QEMU wrote since the last.
const consoleReadSize = 32 << 10

// consoleLog is a VM's view of its guest console: the last MaxConsoleLog bytes in memory
// and in console.log.
type consoleLog struct {
	// mu guards ring, file, fileSize, total and fileErr.
	mu   sync.Mutex
	ring ring
	// file is console.log, written at fileSize; nil when not open (before the reader
	// starts, after it stopped, or after a write error).
	file     *os.File
	fileSize int64
	// total counts every byte the guest wrote while this VM read.
	total int64
	// fileErr is the first error writing console.log; the file is abandoned then.
	fileErr error
}

func newConsoleLog() *consoleLog {
	return &consoleLog{ring: ring{size: hypervisor.MaxConsoleLog}}
}

// open opens console.log at path for writing: a new file, or the file a previous owner
// wrote (adoption), whose end seeds the ring.
func (c *consoleLog) open(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("console log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("console log: %w", err)
	}
	size := st.Size()
	off := max(size-hypervisor.MaxConsoleLog, 0)
	seed, err := io.ReadAll(io.NewSectionReader(f, off, size-off))
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("console log: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ring.write(seed)
	c.file, c.fileSize = f, size
	if size > hypervisor.MaxConsoleLog { // written by something that did not bound it
		c.rewriteLocked()
	}
	return nil
}

// write records p: into the ring, and into console.log. When the file would pass the
// bound it is rewritten with the newest half of the ring, so it always holds at least the
// last MaxConsoleLog/2 bytes and never more than MaxConsoleLog; that rewrites each byte at
// most once more.
func (c *consoleLog) write(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total += int64(len(p))
	c.ring.write(p)
	if c.file == nil {
		return
	}
	if c.fileSize+int64(len(p)) > hypervisor.MaxConsoleLog {
		c.rewriteLocked()
		return
	}
	n, err := c.file.WriteAt(p, c.fileSize)
	c.fileSize += int64(n)
	if err != nil {
		c.failLocked(err)
	}
}

// rewriteLocked replaces console.log's content with the newest half of the ring.
// Preconditions: c.mu is held; c.file is set.
func (c *consoleLog) rewriteLocked() {
	keep := c.ring.last(hypervisor.MaxConsoleLog / 2)
	if err := c.file.Truncate(0); err != nil {
		c.failLocked(err)
		return
	}
	n, err := c.file.WriteAt(keep, 0)
	c.fileSize = int64(n)
	if err != nil {
		c.failLocked(err)
	}
}

// failLocked abandons console.log after a write error; the ring goes on.
// Preconditions: c.mu is held.
func (c *consoleLog) failLocked(err error) {
	c.fileErr = fmt.Errorf("console log: %w", err)
	_ = c.file.Close()
	c.file = nil
}

// closeFile closes console.log; the ring stays readable.
func (c *consoleLog) closeFile() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.fileErr
	if c.file != nil {
		err = errors.Join(err, c.file.Close())
		c.file = nil
	}
	return err
}

// tail returns a copy of what the ring holds: the guest's last MaxConsoleLog bytes.
func (c *consoleLog) tail() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ring.bytes()
}

// stats is how many bytes the guest wrote and how many the ring and file hold now.
func (c *consoleLog) stats() (total int64, kept int, fileSize int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total, c.ring.len(), c.fileSize
}

// ConsoleTail returns the last bytes the guest wrote to its serial console, at most
// hypervisor.MaxConsoleLog: see hypervisor.ConsoleTailer.
func (v *VM) ConsoleTail() []byte { return v.console.tail() }

// consoleReader is a running reader: the connection it reads and when it is done.
type consoleReader struct {
	conn net.Conn
	done chan struct{}
}

// startConsole opens console.log, connects to QEMU's console socket and starts the reader,
// which runs until QEMU closes the connection or stopConsole closes it. The listening
// socket exists before QEMU runs, so the connection is queued at once and accepted when
// QEMU's main loop runs.
func (v *VM) startConsole(logger *log.Entry) error {
	if err := v.console.open(v.statePath(hypervisor.ConsoleLogName)); err != nil {
		return err
	}
	conn, err := unixsock.Dial(context.Background(), &net.Dialer{}, v.statePath(consoleSocketName))
	if err != nil {
		_ = v.console.closeFile()
		return fmt.Errorf("connect to the console socket: %w", err)
	}
	r := &consoleReader{conn: conn, done: make(chan struct{})}
	v.mu.Lock()
	v.consoleReader = r
	v.mu.Unlock()
	go v.readConsole(r, logger)
	return nil
}

// readConsole copies the guest's console into v.console until the connection ends. It is
// owned by the VM: stopConsole (Detach, or once QEMU exited) ends it and waits for it.
func (v *VM) readConsole(r *consoleReader, logger *log.Entry) {
	defer close(r.done)
	buf := make([]byte, consoleReadSize)
	lines := consoleLines{logger: logger}
	for {
		n, err := r.conn.Read(buf)
		if n > 0 {
			v.console.write(buf[:n])
			lines.write(buf[:n])
		}
		if err != nil {
			break
		}
	}
	lines.flush()
	_ = r.conn.Close()
	total, kept, fileSize := v.console.stats()
	entry := logger.WithField("console_bytes", total).WithField("ring_bytes", kept).WithField("file_bytes", fileSize)
	if err := v.console.closeFile(); err != nil {
		entry.WithError(err).Warn("guest console log")
		return
	}
	entry.Debug("guest console reader stopped")
}

// stopConsole ends the console reader: after QEMU exited it first waits up to wait for the
// reader to read what QEMU wrote last (QEMU's exit closes the connection, so this is
// normally immediate); then it closes the connection and waits for the reader to return.
// Without a reader it does nothing.
func (v *VM) stopConsole(wait time.Duration) {
	v.mu.Lock()
	r := v.consoleReader
	v.consoleReader = nil
	v.mu.Unlock()
	if r == nil {
		return
	}
	if wait > 0 {
		select {
		case <-r.done:
		case <-time.After(wait):
		}
	}
	_ = r.conn.Close()
	<-r.done
}

// ring keeps the last size bytes written to it.
type ring struct {
	size int
	// buf grows to size, then is overwritten in place from start (the oldest byte).
	buf   []byte
	start int
}

func (r *ring) len() int { return len(r.buf) }

func (r *ring) write(p []byte) {
	if len(p) >= r.size {
		if cap(r.buf) < r.size {
			r.buf = make([]byte, r.size)
		}
		r.buf = r.buf[:r.size]
		copy(r.buf, p[len(p)-r.size:])
		r.start = 0
		return
	}
	if r.buf == nil {
		r.buf = make([]byte, 0, r.size)
	}
	if free := r.size - len(r.buf); free > 0 {
		n := min(free, len(p))
		r.buf = append(r.buf, p[:n]...)
		p = p[n:]
	}
	for len(p) > 0 {
		n := copy(r.buf[r.start:], p)
		p = p[n:]
		r.start = (r.start + n) % r.size
	}
}

// bytes returns a copy of the content, oldest byte first.
func (r *ring) bytes() []byte {
	out := make([]byte, 0, len(r.buf))
	out = append(out, r.buf[r.start:]...)
	return append(out, r.buf[:r.start]...)
}

// last returns a copy of the newest n bytes (fewer if the ring holds fewer).
func (r *ring) last(n int) []byte {
	b := r.bytes()
	return b[max(len(b)-n, 0):]
}
