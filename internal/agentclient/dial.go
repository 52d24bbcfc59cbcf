package agentclient

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/mdlayher/vsock"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/unixsock"
)

// Dial connects to the agent at addr.
func Dial(ctx context.Context, addr hypervisor.AgentAddress, timeouts Timeouts) (*Client, error) {
	conn, err := dialConn(ctx, addr)
	if err != nil {
		return nil, err
	}
	return New(conn, timeouts), nil
}

func dialConn(ctx context.Context, addr hypervisor.AgentAddress) (net.Conn, error) {
	var d net.Dialer
	switch addr.Kind {
	case "serial":
		// A unix socket the hypervisor connects to a virtio-serial port.
		conn, err := unixsock.Dial(ctx, &d, addr.Path)
		if err != nil {
			return nil, fmt.Errorf("dial agent serial socket %s: %w", addr.Path, err)
		}
		return conn, nil
	case "vsock":
		conn, err := vsock.Dial(addr.CID, addr.Port, nil)
		if err != nil {
			return nil, fmt.Errorf("dial agent vsock %d:%d: %w", addr.CID, addr.Port, err)
		}
		return conn, nil
	case "hvsock":
		return dialHybridVsock(ctx, addr.Path, addr.Port)
	default:
		return nil, fmt.Errorf("unknown agent transport %q (want serial, vsock or hvsock)", addr.Kind)
	}
}

// dialHybridVsock connects through a hybrid vsock unix socket (Firecracker, Cloud
// Hypervisor): the host writes "CONNECT <port>\n" and expects "OK <hostport>\n".
func dialHybridVsock(ctx context.Context, path string, port uint32) (net.Conn, error) {
	var d net.Dialer
	conn, err := unixsock.Dial(ctx, &d, path)
	if err != nil {
		return nil, fmt.Errorf("dial hybrid vsock %s: %w", path, err)
	}
	if _, err := fmt.Fprintf(conn, "CONNECT %d\n", port); err != nil {
		conn.Close()
		return nil, fmt.Errorf("hybrid vsock %s: send CONNECT: %w", path, err)
	}
	// Read byte by byte so no agent data after the OK line is swallowed by a buffer.
	line, err := readLine(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("hybrid vsock %s: read CONNECT answer: %w", path, err)
	}
	if !strings.HasPrefix(line, "OK ") {
		conn.Close()
		return nil, fmt.Errorf("hybrid vsock %s: port %d refused: %q", path, port, line)
	}
	return conn, nil
}

func readLine(conn net.Conn) (string, error) {
	r := bufio.NewReaderSize(oneByteReader{conn}, 16)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

type oneByteReader struct{ c net.Conn }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.c.Read(p)
}
