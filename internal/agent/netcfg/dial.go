//go:build linux

package netcfg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
)

// DialTCP connects to addr (an IP literal and port) from inside the pod's network
// namespace. The socket is made on a thread that joined the namespace and left it again;
// a thread that cannot go back ends with its goroutine.
func (p *PodNS) DialTCP(ctx context.Context, addr string) (*net.TCPConn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	resc := make(chan result, 1)
	go func() { // owner: DialTCP, which waits for it
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			resc <- result{err: fmt.Errorf("current netns: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(p.ns); err != nil {
			runtime.UnlockOSThread()
			resc <- result{err: fmt.Errorf("enter pod netns: %w", err)}
			return
		}
		// One address, so the dialer makes its socket on this thread (no parallel
		// attempts on other threads).
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if rerr := netns.Set(orig); rerr != nil {
			if conn != nil {
				_ = conn.Close()
			}
			resc <- result{err: errors.Join(err, fmt.Errorf("leave pod netns: %w", rerr))}
			return // the thread stays locked and ends with the goroutine
		}
		runtime.UnlockOSThread()
		resc <- result{conn: conn, err: err}
	}()
	res := <-resc
	if res.err != nil {
		return nil, res.err
	}
	tc, ok := res.conn.(*net.TCPConn)
	if !ok {
		_ = res.conn.Close()
		return nil, fmt.Errorf("dial %s: not a TCP connection", addr)
	}
	return tc, nil
}
