//go:build linux

package portforward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/atomicfile"
	"github.com/vessel-containers/vessel/internal/network"
)

// MaxConns bounds the connections a forwarder relays at once; a connection beyond it is
// closed at once. The agent has its own bound (agent.MaxPortForwards).
const MaxConns = 16

// chunk is the most one write to, or read from, the guest carries.
const chunk = 256 << 10

// closeTimeout bounds closing a connection in the guest once its relay ended.
const closeTimeout = 10 * time.Second

// StateName is the file in the sandbox directory that records the namespace the forwarder
// added its table to, so that Teardown finds it after a crash.
const StateName = "portforward.json"

// Guest is the agent's PortForward service (agentclient.Client has it).
type Guest interface {
	PortForwardOpen(ctx context.Context, id string, port uint16, ipv6 bool) error
	PortForwardWrite(ctx context.Context, id string, data []byte) error
	PortForwardRead(ctx context.Context, id string, n uint32) (data []byte, eof bool, err error)
	PortForwardCloseWrite(ctx context.Context, id string) error
	PortForwardClose(ctx context.Context, id string) error
}

// Forwarder relays the connections redirected to its listeners into the guest.
type Forwarder struct {
	guest  Guest
	dir    string
	netns  string
	ports  Ports
	lns    []net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts the accept loops and the relays.
	wg sync.WaitGroup
	// slots holds one token per relayed connection.
	slots chan struct{}
	next  atomic.Uint64
}

type state struct {
	NetNS string `json:"netns"`
}

// Start opens the listeners in the network namespace at nsPath, records the namespace in
// dir and installs the redirect table there, then relays every redirected connection to
// guest. Close stops it; Teardown removes the table (after a crash too).
func Start(ctx context.Context, dir, nsPath string, guest Guest) (_ *Forwarder, retErr error) {
	ns, err := openNS(nsPath)
	if err != nil {
		return nil, fmt.Errorf("port forwarding: %w", err)
	}
	defer ns.Close()
	f := &Forwarder{guest: guest, dir: dir, netns: nsPath, slots: make(chan struct{}, MaxConns)}
	defer func() {
		if retErr != nil {
			for _, ln := range f.lns {
				_ = ln.Close()
			}
		}
	}()
	err = network.InNetNS(ns, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("listen on 127.0.0.1: %w", err)
		}
		f.lns = append(f.lns, ln)
		f.ports.V4 = uint16(ln.Addr().(*net.TCPAddr).Port) //nolint:gosec // a port
		ln6, err := net.Listen("tcp6", "[::1]:0")
		if err != nil {
			// No IPv6 in the namespace (disabled, or no ::1): CRI's dial of ::1 fails
			// there as it would with runc.
			log.G(ctx).WithError(err).Debug("port forwarding: no IPv6 listener")
			return nil
		}
		f.lns = append(f.lns, ln6)
		f.ports.V6 = uint16(ln6.Addr().(*net.TCPAddr).Port) //nolint:gosec // a port
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("port forwarding in %s: %w", nsPath, err)
	}
	data, err := json.Marshal(state{NetNS: nsPath})
	if err != nil {
		return nil, fmt.Errorf("port forwarding: encode state: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, StateName), data, 0o600); err != nil {
		return nil, fmt.Errorf("port forwarding: save state: %w", err)
	}
	if err := installRules(ns, f.ports); err != nil {
		return nil, errors.Join(fmt.Errorf("port forwarding in %s: %w", nsPath, err), Teardown(dir))
	}
	f.ctx, f.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, ln := range f.lns {
		f.wg.Add(1)
		go f.accept(ln) // owner: f; Close closes ln and waits
	}
	log.G(ctx).WithField("netns", nsPath).WithField("ports", f.ports).Debug("port forwarding ready")
	return f, nil
}

// Ports are the listeners' ports.
func (f *Forwarder) Ports() Ports { return f.ports }

// Close stops accepting, ends every relay (closing its connections on both sides) and
// waits for them, then removes the table and the record.
func (f *Forwarder) Close() error {
	f.cancel()
	for _, ln := range f.lns {
		_ = ln.Close()
	}
	f.wg.Wait()
	return Teardown(f.dir)
}

// Teardown removes the table the forwarder recorded in dir from its namespace, and the
// record. With no record there is nothing to remove; a namespace that is gone took the
// table with it.
func Teardown(dir string) error {
	p := filepath.Join(dir, StateName)
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("port forwarding: %w", err)
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("port forwarding: %s: %w", p, err)
	}
	if st.NetNS != "" {
		if err := RemoveRules(st.NetNS); err != nil {
			return err
		}
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("port forwarding: %w", err)
	}
	return nil
}

func (f *Forwarder) accept(ln net.Listener) {
	defer f.wg.Done()
	v6 := ln.Addr().(*net.TCPAddr).IP.To4() == nil
	for {
		c, err := ln.Accept()
		if err != nil {
			if f.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				log.G(f.ctx).WithError(err).Warn("port forwarding: accept")
			}
			return
		}
		conn, ok := c.(*net.TCPConn)
		if !ok {
			_ = c.Close()
			continue
		}
		select {
		case f.slots <- struct{}{}:
		default:
			log.G(f.ctx).Warnf("port forwarding: %d connections are relayed already; refusing one more", MaxConns)
			_ = conn.Close()
			continue
		}
		f.wg.Add(1)
		go func() { // owner: f; Close cancels f.ctx, which ends the relay
			defer f.wg.Done()
			defer func() { <-f.slots }()
			f.relay(conn, v6)
		}()
	}
}

// relay moves one redirected connection's bytes to and from the guest until both sides
// finished or one failed, then closes it on both sides.
func (f *Forwarder) relay(conn *net.TCPConn, v6 bool) {
	defer conn.Close()
	ctx := f.ctx
	port, err := originalPort(conn, v6)
	if err != nil {
		log.G(ctx).WithError(err).Warn("port forwarding: original destination")
		return
	}
	own := f.ports.V4
	if v6 {
		own = f.ports.V6
	}
	if port == own {
		return // a connection to the listener itself, not a redirected one
	}
	id := strconv.FormatUint(f.next.Add(1), 10)
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("port", port).WithField("forward", id))
	err = f.guest.PortForwardOpen(ctx, id, port, v6)
	if err != nil && !v6 && errdefs.IsFailedPrecondition(err) {
		// CRI falls back to [::1] when 127.0.0.1 refuses; the listener here accepted the
		// IPv4 dial, so the fallback happens in the guest.
		err = f.guest.PortForwardOpen(ctx, id, port, true)
	}
	if err != nil {
		log.G(ctx).WithError(err).Info("port forwarding: connect in the guest")
		_ = conn.SetLinger(0) // the client sees a reset, not an empty stream
		return
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		if err := f.guest.PortForwardClose(cctx, id); err != nil {
			log.G(ctx).WithError(err).Debug("port forwarding: close in the guest")
		}
	}()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A failure on either side (or Close) ends the relay: the connection is closed, so
	// the side reading from it returns too.
	stop := context.AfterFunc(rctx, func() { _ = conn.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // owner: relay, which waits
		defer wg.Done()
		if err := f.up(rctx, conn, id); err != nil {
			log.G(ctx).WithError(err).Debug("port forwarding: to the guest")
			cancel()
		}
	}()
	go func() { // owner: relay, which waits
		defer wg.Done()
		if err := f.down(rctx, conn, id); err != nil {
			log.G(ctx).WithError(err).Debug("port forwarding: from the guest")
			cancel()
		}
	}()
	wg.Wait()
}

// up copies from the host connection to the guest; at EOF it closes the guest's sending
// side.
func (f *Forwarder) up(ctx context.Context, conn *net.TCPConn, id string) error {
	buf := make([]byte, chunk)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if werr := f.guest.PortForwardWrite(ctx, id, buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return f.guest.PortForwardCloseWrite(ctx, id)
		}
		if err != nil {
			return err
		}
	}
}

// down copies from the guest to the host connection; at the guest's EOF it closes the
// connection's sending side.
func (f *Forwarder) down(ctx context.Context, conn *net.TCPConn, id string) error {
	for {
		data, eof, err := f.guest.PortForwardRead(ctx, id, chunk)
		if err != nil {
			return err
		}
		if len(data) > 0 {
			if _, err := conn.Write(data); err != nil {
				return err
			}
		}
		if eof {
			return conn.CloseWrite()
		}
	}
}

// soOriginalDst is SO_ORIGINAL_DST (IPv4) and IP6T_SO_ORIGINAL_DST (IPv6): both 80.
const soOriginalDst = 80

// originalPort is the port a redirected connection was dialled to.
func originalPort(conn *net.TCPConn, v6 bool) (uint16, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	level := unix.SOL_IP
	var buf [unix.SizeofSockaddrInet6]byte // the larger of sockaddr_in and sockaddr_in6
	size := uint32(unix.SizeofSockaddrInet4)
	if v6 {
		level = unix.SOL_IPV6
		size = unix.SizeofSockaddrInet6
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		// getsockopt writes at most size bytes into buf and the length it wrote into size.
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), soOriginalDst,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0) //nolint:gosec // buf and size outlive the call
		if errno != 0 {
			serr = errno
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, fmt.Errorf("getsockopt original destination: %w", err)
	}
	// sockaddr_in and sockaddr_in6 both start with the family, then the port (big endian).
	return uint16(buf[2])<<8 | uint16(buf[3]), nil
}
