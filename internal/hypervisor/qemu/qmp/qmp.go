// Package qmp is Vessel's only client of the QEMU Machine Protocol (QMP): it connects to a
// QMP unix socket, reads the greeting, negotiates capabilities, runs commands matched to
// their responses by id, and delivers asynchronous events (SHUTDOWN, STOP, RESUME, ...) on
// a channel.
//
// One Client owns one reader goroutine; Close (or the server closing the connection) stops
// it, and Done reports that it has stopped.
//
// Not supported: out-of-band execution (the "oob" capability is never enabled), and
// responses that carry no id (QEMU sends them only for JSON it could not parse, which this
// client never writes; they are logged and dropped).
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/unixsock"
)

// ErrClosed is returned by calls on a client whose connection is closed.
var ErrClosed = errors.New("qmp: connection closed")

// eventBuffer is how many events wait for a reader before new ones are dropped.
const eventBuffer = 128

// maxMessage bounds one message from QEMU. The largest this client asks for
// (query-hotpluggable-cpus, query-migrate) are tens of KiB; a QEMU the guest took over could
// otherwise make the decoder buffer without end in the host process that reads it.
const maxMessage = 1 << 20

// messageReader hands the JSON decoder at most left bytes; Decode calls reset it, so each
// message (with what the decoder reads ahead) is bounded by maxMessage.
type messageReader struct {
	r    io.Reader
	left int
}

func (m *messageReader) Read(p []byte) (int, error) {
	if m.left <= 0 {
		return 0, fmt.Errorf("qmp: a message from QEMU is over %d bytes", maxMessage)
	}
	if len(p) > m.left {
		p = p[:m.left]
	}
	n, err := m.r.Read(p)
	m.left -= n
	return n, err
}

// Error is an error response from QEMU: {"error": {"class": ..., "desc": ...}}.
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *Error) Error() string { return "qmp: " + e.Class + ": " + e.Desc }

// Version is QEMU's version triple from the greeting.
type Version struct {
	Major int `json:"major"`
	Minor int `json:"minor"`
	Micro int `json:"micro"`
}

// Greeting is the first message QEMU sends on a new connection.
type Greeting struct {
	Version struct {
		QEMU    Version `json:"qemu"`
		Package string  `json:"package"`
	} `json:"version"`
	Capabilities []string `json:"capabilities"`
}

// Event is an asynchronous QMP event.
type Event struct {
	Name string
	Data json.RawMessage
	Time time.Time
}

// message is any message the server sends; which fields are set tells its kind.
type message struct {
	QMP       *Greeting       `json:"QMP"`
	Return    json.RawMessage `json:"return"`
	Error     *Error          `json:"error"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
	ID *uint64 `json:"id"`
}

// request is a command as sent on the wire.
type request struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        uint64 `json:"id"`
}

// response is a command's outcome handed from the reader to the caller.
type response struct {
	ret json.RawMessage
	err error
}

// Client is a QMP connection. Its methods are safe for concurrent use.
type Client struct {
	conn     net.Conn
	in       *messageReader
	dec      *json.Decoder
	greeting Greeting
	logger   *log.Entry

	events chan Event
	// done is closed when the reader goroutine has returned.
	done chan struct{}

	// writeMu serializes writes to conn.
	writeMu sync.Mutex

	// mu guards nextID, pending, dropped, closing and err.
	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan response
	dropped uint64
	closing bool
	// err is why the reader stopped; set before done is closed.
	err error
}

// Dial connects to the QMP socket at path and negotiates capabilities. ctx bounds the
// connection and negotiation only, not the life of the client.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := unixsock.Dial(ctx, &d, path)
	if err != nil {
		return nil, fmt.Errorf("qmp: dial %s: %w", path, err)
	}
	c, err := NewClient(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", path, err)
	}
	return c, nil
}

// NewClient takes ownership of conn: it reads the greeting, sends qmp_capabilities and
// starts the reader goroutine. On error conn is closed.
func NewClient(ctx context.Context, conn net.Conn) (*Client, error) {
	in := &messageReader{r: bufio.NewReader(conn)}
	c := &Client{
		conn:    conn,
		in:      in,
		dec:     json.NewDecoder(in),
		logger:  log.G(ctx),
		events:  make(chan Event, eventBuffer),
		done:    make(chan struct{}),
		pending: map[uint64]chan response{},
	}
	if err := c.negotiate(ctx); err != nil {
		_ = conn.Close()
		return nil, err
	}
	go c.readLoop()
	return c, nil
}

// negotiate reads the greeting and leaves capabilities negotiation mode. It runs before the
// reader goroutine starts, so it reads the connection itself.
func (c *Client) negotiate(ctx context.Context) (err error) {
	// Unblock reads and writes when ctx ends; if that happened, the connection keeps a
	// deadline in the past and is useless, so report ctx's error.
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() && err == nil {
			err = fmt.Errorf("qmp: negotiate: %w", context.Cause(ctx))
		}
	}()
	wrap := func(what string, err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("qmp: %s: %w", what, ctx.Err())
		}
		return fmt.Errorf("qmp: %s: %w", what, err)
	}

	var m message
	if err := c.decode(&m); err != nil {
		return wrap("read greeting", err)
	}
	if m.QMP == nil {
		return errors.New("qmp: first message is not a QMP greeting")
	}
	c.greeting = *m.QMP

	const id = 0
	c.nextID = id + 1
	if err := c.write(request{Execute: "qmp_capabilities", ID: id}); err != nil {
		return wrap("send qmp_capabilities", err)
	}
	for {
		var m message
		if err := c.decode(&m); err != nil {
			return wrap("read qmp_capabilities response", err)
		}
		switch {
		case m.Event != "":
			// QEMU may already emit events here; keep them for the reader.
			c.deliver(m)
		case m.ID != nil && *m.ID == id && m.Error != nil:
			return fmt.Errorf("qmp: qmp_capabilities: %w", m.Error)
		case m.ID != nil && *m.ID == id:
			return nil
		default:
			c.logger.WithField("message", m).Debug("qmp: ignoring message during negotiation")
		}
	}
}

// Greeting is what QEMU announced on connect.
func (c *Client) Greeting() Greeting { return c.greeting }

// Events delivers asynchronous events in order. It is closed when the reader stops. If
// nobody reads and eventBuffer events are waiting, newer events are dropped (and counted
// by Dropped) rather than stalling command responses.
func (c *Client) Events() <-chan Event { return c.events }

// Dropped is how many events were dropped because the Events channel was full.
func (c *Client) Dropped() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// Done is closed once the connection is gone and the reader goroutine has returned.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the connection ended: ErrClosed after Close, otherwise the read error
// (io.EOF when QEMU closed it). Nil while the connection is up.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection and waits for the reader goroutine to return. Calls still
// waiting for a response fail with ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	err := c.conn.Close()
	<-c.done
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Execute runs command with args (nil for none) and decodes the "return" value into
// result (nil to discard it). A QEMU error response is returned as *Error.
func (c *Client) Execute(ctx context.Context, command string, args, result any) error {
	return c.execute(ctx, command, args, result, nil)
}

// execute is Execute, sending the descriptor of file with the request when it is set.
func (c *Client) execute(ctx context.Context, command string, args, result any, file *os.File) error {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	id := c.nextID
	c.nextID++
	ch := make(chan response, 1)
	c.pending[id] = ch
	c.mu.Unlock()

	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}

	if err := c.writeCtx(ctx, request{Execute: command, Arguments: args, ID: id}, file); err != nil {
		forget()
		return fmt.Errorf("qmp %s: send: %w", command, err)
	}

	var resp response
	select {
	case resp = <-ch:
	case <-ctx.Done():
		forget()
		select {
		case resp = <-ch: // the answer won the race
		default:
			return fmt.Errorf("qmp %s: %w", command, ctx.Err())
		}
	}
	if resp.err != nil {
		return fmt.Errorf("qmp %s: %w", command, resp.err)
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(resp.ret, result); err != nil {
		return fmt.Errorf("qmp %s: decode result %s: %w", command, resp.ret, err)
	}
	return nil
}

// writeCtx writes one request, with file's descriptor if set, giving up when ctx ends.
func (c *Client) writeCtx(ctx context.Context, r request, file *os.File) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.conn.SetWriteDeadline(dl)
		defer func() { _ = c.conn.SetWriteDeadline(time.Time{}) }()
	}
	if file != nil {
		return c.writeFileLocked(r, file)
	}
	return c.writeLocked(r)
}

// writeFileLocked writes one request with file's descriptor attached to its first byte
// (SCM_RIGHTS): QEMU's monitor keeps the descriptor it receives with a command for that
// command (getfd).
// Preconditions: c.writeMu is held.
func (c *Client) writeFileLocked(r request, file *os.File) error {
	uc, ok := c.conn.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("pass a descriptor over a %T: want a unix socket", c.conn)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	b = append(b, '\n')
	n, _, err := uc.WriteMsgUnix(b, unix.UnixRights(int(file.Fd())), nil)
	runtime.KeepAlive(file)
	if err != nil {
		return c.connErr(err)
	}
	if n < len(b) {
		if _, err := c.conn.Write(b[n:]); err != nil {
			return c.connErr(err)
		}
	}
	return nil
}

// write writes one request with no deadline of its own.
func (c *Client) write(r request) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	return c.writeLocked(r)
}

// Preconditions: c.writeMu is held.
func (c *Client) writeLocked(r request) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	b = append(b, '\n')
	if _, err := c.conn.Write(b); err != nil {
		return c.connErr(err)
	}
	return nil
}

// connErr maps an I/O error on a connection we closed ourselves to ErrClosed.
func (c *Client) connErr(err error) error {
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing {
		return ErrClosed
	}
	return err
}

// readLoop dispatches responses and events until the connection fails or is closed. It is
// the only reader of c.dec after negotiation.
func (c *Client) readLoop() {
	var err error
	for {
		var m message
		if err = c.decode(&m); err != nil {
			break
		}
		switch {
		case m.Event != "":
			c.deliver(m)
		case m.ID != nil:
			c.respond(*m.ID, m)
		default:
			c.logger.WithField("message", m).Warn("qmp: dropping a response without an id")
		}
	}
	err = c.connErr(err)

	c.mu.Lock()
	c.err = err
	for id, ch := range c.pending {
		ch <- response{err: err}
		delete(c.pending, id)
	}
	c.mu.Unlock()
	close(c.events)
	close(c.done)
}

// decode reads the next message, at most maxMessage bytes. Only negotiate and then readLoop
// call it, never both at once.
func (c *Client) decode(m *message) error {
	c.in.left = maxMessage
	return c.dec.Decode(m)
}

// respond hands a response to the caller waiting for id.
func (c *Client) respond(id uint64, m message) {
	c.mu.Lock()
	ch, ok := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if !ok {
		// The caller gave up (its context ended).
		c.logger.WithField("id", id).Debug("qmp: response for a request nobody waits for")
		return
	}
	if m.Error != nil {
		ch <- response{err: m.Error}
		return
	}
	ch <- response{ret: m.Return}
}

// deliver queues an event without blocking.
func (c *Client) deliver(m message) {
	ev := Event{Name: m.Event, Data: m.Data}
	if m.Timestamp != nil {
		ev.Time = time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)
	}
	select {
	case c.events <- ev:
	default:
		c.mu.Lock()
		c.dropped++
		c.mu.Unlock()
		c.logger.WithField("event", ev.Name).Warn("qmp: event queue full, dropping event")
	}
}
