package session

import (
	"encoding/binary"
	"fmt"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	// MaxInFlight bounds the requests of one session that have no response yet. ttrpc
	// starts a handler goroutine for each request, and the host keeps long polls open
	// (stdout, stderr and wait of every process: three per process) besides its short
	// calls: 1024 covers hundreds of processes in one sandbox while bounding the
	// goroutines and decoded requests a session can pile up in the guest.
	MaxInFlight = 1024
	// MaxInFlightBytes bounds the bytes of those requests: sixteen requests of the largest
	// size ttrpc sends (MaxPayload), far above what the host has outstanding (its large
	// requests are CopyFile parts of 1 MiB and stdin writes), and a small share of the
	// guest's memory.
	MaxInFlightBytes = 16 * MaxPayload
	// maxBuffered bounds the bytes routed to a session that its reader has not taken
	// yet. Requests are bounded by MaxInFlightBytes already; frames of other types
	// (ttrpc stream data, which the agent's service does not use) are dropped past it.
	maxBuffered = MaxInFlightBytes + MaxPayload

	typeResponse = 0x2
)

// flight is one session's requests without a response, by stream id.
type flight struct {
	requests map[uint32]int // request frame size by stream id
	bytes    int
}

// admit records request h (whose frame has size bytes) in flight, or says why not.
func (f *flight) admit(h Header, size int) error {
	if _, dup := f.requests[h.StreamID]; dup {
		// ttrpc answers a reused stream id itself; it does not add a request.
		return nil
	}
	if len(f.requests) >= MaxInFlight {
		return fmt.Errorf("session has %d requests without a response, the limit (MaxInFlight)", len(f.requests))
	}
	if f.bytes+size > MaxInFlightBytes {
		return fmt.Errorf("session has %d bytes of requests in flight; %d more would pass the limit of %d (MaxInFlightBytes)", f.bytes, size, MaxInFlightBytes)
	}
	if f.requests == nil {
		f.requests = make(map[uint32]int)
	}
	f.requests[h.StreamID] = size
	f.bytes += size
	return nil
}

// done forgets the request answered by a response on streamID.
func (f *flight) done(streamID uint32) {
	if size, ok := f.requests[streamID]; ok {
		delete(f.requests, streamID)
		f.bytes -= size
	}
}

// refusal is the ttrpc response frame that answers request streamID with a
// ResourceExhausted status carrying why.
func refusal(streamID uint32, why error) ([]byte, error) {
	payload, err := proto.Marshal(&ttrpc.Response{
		Status: status.New(codes.ResourceExhausted, "vessel-agent: request refused: "+why.Error()).Proto(),
	})
	if err != nil {
		return nil, fmt.Errorf("encode refusal: %w", err)
	}
	frame := make([]byte, HeaderLen+len(payload))
	binary.BigEndian.PutUint32(frame[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(frame[4:8], streamID)
	frame[8] = typeResponse
	copy(frame[HeaderLen:], payload)
	return frame, nil
}
