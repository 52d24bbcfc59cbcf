package session

import (
	"io"
	"net"
	"sync"
	"testing"

	"github.com/containerd/ttrpc"
)

// lagPort is the guest end of a virtio-serial port with the device's timing: a host's bytes
// are readable as soon as they arrive, while the attach state (what poll reports, see
// devicePort) changes only when the test delivers the control message, with setAttached.
// Read returns buffered bytes first; with none, it returns EOF while detached and blocks
// while attached. Writes block while detached and go to the newest host line.
type lagPort struct {
	// mu guards every field below.
	mu       sync.Mutex
	cond     *sync.Cond
	buf      []byte
	attached bool
	closed   bool
	line     net.Conn // guest end of the newest host line
	// readDetached is set when Read returned bytes while detached: they ran ahead of
	// the attach notice.
	readDetached bool
	// staleLooks counts EOFs and "no host" answers given after readDetached.
	staleLooks int
}

func newLagPort(attached bool) *lagPort {
	p := &lagPort{attached: attached}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// connect opens a host line and returns the host end. Its bytes reach the buffer as they
// are written; its attach notice is the test's setAttached.
func (p *lagPort) connect(t *testing.T) net.Conn {
	host, guest := net.Pipe()
	p.mu.Lock()
	p.line = guest
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { // owner: the test; ends when the host end closes
		defer close(done)
		b := make([]byte, 4096)
		for {
			n, err := guest.Read(b)
			p.mu.Lock()
			p.buf = append(p.buf, b[:n]...)
			p.cond.Broadcast()
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		host.Close()
		<-done
	})
	return host
}

// setAttached delivers an attach (true) or detach (false) notice. A notice delivered
// quietly wakes no blocked reader, as when the guest handled it while the reader was busy.
func (p *lagPort) setAttached(v, quietly bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attached = v
	p.readDetached = false
	if !quietly {
		p.cond.Broadcast()
	}
}

func (p *lagPort) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && p.attached && !p.closed {
		p.cond.Wait()
	}
	switch {
	case p.closed:
		return 0, net.ErrClosed
	case len(p.buf) > 0:
		n := copy(b, p.buf)
		p.buf = p.buf[n:]
		if !p.attached {
			p.readDetached = true
		}
		return n, nil
	}
	p.lookedStale()
	return 0, io.EOF
}

func (p *lagPort) Write(b []byte) (int, error) {
	p.mu.Lock()
	for !p.attached && !p.closed {
		p.cond.Wait()
	}
	line, closed := p.line, p.closed
	p.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	if line != nil {
		_, _ = line.Write(b) // lost if that host went away, like the device
	}
	return len(b), nil
}

func (p *lagPort) hostAttached() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.attached {
		p.lookedStale()
	}
	return p.attached, nil
}

// Preconditions: p.mu is held.
func (p *lagPort) lookedStale() {
	if p.readDetached {
		p.staleLooks++
		p.cond.Broadcast()
	}
}

// waitStaleLook blocks until the mux has looked at the port's host state after reading
// bytes that ran ahead of the attach notice.
func (p *lagPort) waitStaleLook() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.staleLooks == 0 && !p.closed {
		p.cond.Wait()
	}
}

func (p *lagPort) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.cond.Broadcast()
	return nil
}

// TestRequestAheadOfAttach reproduces the restored template VM that never answered: the
// host's first request is readable before the guest has handled the host's attach notice,
// so the read after it returns EOF. That EOF is the previous host's detach, not this
// host's: the session holding the request must live and answer it.
func TestRequestAheadOfAttach(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before runs before the new host connects; it leaves the port detached.
		before func(t *testing.T, p *lagPort, m *Mux)
	}{{
		// A template saved after its agent saw the hang-up.
		name: "detach seen",
		before: func(t *testing.T, p *lagPort, m *Mux) {
			waitFor(t, func() bool { return m.Stats().Detaches > 0 })
		},
	}, {
		// A template saved after the guest handled the detach notice but before the
		// agent read the EOF: its session is still current.
		name: "detach not seen",
		before: func(t *testing.T, p *lagPort, m *Mux) {
			p.setAttached(true, false)
			old := ttrpc.NewClient(p.connect(t))
			echo(t, old, "old", 1)
			old.Close()
			p.setAttached(false, true)
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newLagPort(false)
			m := startServer(t, p)
			tc.before(t, p, m)
			c := ttrpc.NewClient(p.connect(t))
			defer c.Close()
			notified := make(chan struct{})
			go func() { // owner: this test; ends at the notice or when the port closes
				defer close(notified)
				p.waitStaleLook()
				p.setAttached(true, false) // the guest handles the attach notice at last
			}()
			echo(t, c, "new", 2)
			<-notified
		})
	}
}
