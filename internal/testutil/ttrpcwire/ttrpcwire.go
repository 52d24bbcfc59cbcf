// Package ttrpcwire speaks ttrpc's wire format by hand, for tests that send what no real
// client or server would: the fuzz targets of the agent's and the VM cache's ttrpc edges.
// A frame is a 10-byte header (body length, stream id, type, flags) and the body.
package ttrpcwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"slices"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
)

// Frame types.
const (
	TypeRequest  = 0x1
	TypeResponse = 0x2
)

// maxBody is ttrpc's largest message.
const maxBody = 4 << 20

// timeout bounds one RoundTrip: a server that neither answers nor hangs up by then is
// stuck, which is what the fuzz targets look for.
const timeout = 10 * time.Second

// WriteFrame writes one frame.
func WriteFrame(conn net.Conn, stream uint32, typ byte, body []byte) error {
	hdr := make([]byte, 10)
	binary.BigEndian.PutUint32(hdr[0:4], uint32(len(body)))
	binary.BigEndian.PutUint32(hdr[4:8], stream)
	hdr[8] = typ
	_, err := conn.Write(append(hdr, body...))
	return err
}

// ReadFrame reads one frame.
func ReadFrame(conn net.Conn) (stream uint32, typ byte, body []byte, err error) {
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(conn, hdr); err != nil {
		return 0, 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[0:4])
	if n > maxBody {
		return 0, 0, nil, fmt.Errorf("frame of %d bytes, more than ttrpc's %d", n, maxBody)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(conn, body); err != nil {
		return 0, 0, nil, fmt.Errorf("frame body: %w", err)
	}
	return binary.BigEndian.Uint32(hdr[4:8]), hdr[8], body, nil
}

// Request encodes a ttrpc request for method of service.
func Request(service, method string, payload []byte) ([]byte, error) {
	return proto.Marshal(&ttrpc.Request{Service: service, Method: method, Payload: payload, TimeoutNano: int64(time.Second)})
}

// FuzzBody turns a fuzz input into a frame body: the payload itself when raw, else a
// request for method of service, where a method not in methods is mapped onto one of
// them, so every input reaches a handler. It returns the method used.
func FuzzBody(service string, methods []string, method string, payload []byte, raw bool) (string, []byte, error) {
	if !slices.Contains(methods, method) {
		method = methods[crc32.ChecksumIEEE([]byte(method))%uint32(len(methods))]
	}
	if raw {
		return method, payload, nil
	}
	body, err := Request(service, method, payload)
	return method, body, err
}

// RoundTrip sends body as request frame 1 on conn, returns the response to stream 1, and
// closes conn. It returns nil, nil when the server hung up instead of answering (what a
// ttrpc server does with a frame it cannot take), and an error when no answer came in
// time or the answer is not a ttrpc response.
func RoundTrip(conn net.Conn, body []byte) (*ttrpc.Response, error) {
	written := make(chan struct{})
	defer func() {
		conn.Close() // ends a write still blocked on a server that stopped reading
		<-written
	}()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		close(written)
		return nil, err
	}
	go func() {
		// The answer may come before the server read the whole body, and a body larger
		// than the connection buffers blocks until it is read or the connection closes.
		defer close(written)
		_ = WriteFrame(conn, 1, TypeRequest, body)
	}()
	for {
		stream, typ, p, err := ReadFrame(conn)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
				return nil, nil
			}
			var op *net.OpError
			if errors.As(err, &op) && !op.Timeout() {
				return nil, nil // reset by the server
			}
			return nil, fmt.Errorf("no answer: %w", err)
		}
		if stream != 1 || typ != TypeResponse {
			continue
		}
		var resp ttrpc.Response
		if err := proto.Unmarshal(p, &resp); err != nil {
			return nil, fmt.Errorf("answer is not a ttrpc response: %w", err)
		}
		return &resp, nil
	}
}
