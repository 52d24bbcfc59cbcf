//go:build linux

package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/network/nettest"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestPortForward drives the PortForward service through the ttrpc edge against an echo
// server on the loopback of the pod network namespace the agent makes: refusals before a
// sandbox and for a closed port, the bytes both ways with a half-close, close, and the
// bound on open forwards.
func TestPortForward(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	svc := testService(t)
	svc.cfg.PodNetNS = filepath.Join(t.TempDir(), "netns", "pod")
	t.Cleanup(func() { _ = unix.Unmount(svc.cfg.PodNetNS, unix.MNT_DETACH) })
	srv, err := NewServer(svc, gateOf(svc))
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(testutil.ServeTTRPC(t, srv))
	t.Cleanup(func() { client.Close() })
	pf := agentv1.NewPortForwardClient(client)

	_, err = pf.PortForwardOpen(ctx, &agentv1.PortForwardOpenRequest{Id: "a", Port: 80})
	wantCode(t, "open without a sandbox", err, codes.FailedPrecondition, "no sandbox")
	svc.mu.Lock()
	svc.sandbox = &sandbox{id: "sb", ready: true}
	svc.mu.Unlock()
	if _, err := svc.podNetNS(); err != nil {
		t.Fatal(err)
	}
	pod := &nettest.NetNS{Path: svc.cfg.PodNetNS}

	// An echo server on the pod namespace's loopback.
	var ln net.Listener
	if err := pod.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	// Registered after the server's cleanup, so it runs first: the server waits for its
	// connections to end.
	t.Cleanup(svc.closePortForwards)
	port := uint32(ln.Addr().(*net.TCPAddr).Port) //nolint:gosec // a port

	closed, err := net.Listen("tcp4", "127.0.0.1:0") // a port nothing listens on in the pod namespace
	if err != nil {
		t.Fatal(err)
	}
	closedPort := uint32(closed.Addr().(*net.TCPAddr).Port) //nolint:gosec // a port
	_ = closed.Close()
	_, err = pf.PortForwardOpen(ctx, &agentv1.PortForwardOpenRequest{Id: "a", Port: closedPort})
	wantCode(t, "open a closed port", err, codes.FailedPrecondition, "connection refused")
	_, err = pf.PortForwardOpen(ctx, &agentv1.PortForwardOpenRequest{Id: "a", Port: 70000})
	wantCode(t, "open port 70000", err, codes.InvalidArgument, "out of range")

	if _, err := pf.PortForwardOpen(ctx, &agentv1.PortForwardOpenRequest{Id: "a", Port: port}); err != nil {
		t.Fatal(err)
	}
	_, err = pf.PortForwardOpen(ctx, &agentv1.PortForwardOpenRequest{Id: "a", Port: port})
	wantCode(t, "open an open id", err, codes.AlreadyExists, "open already")
	if _, err := pf.PortForwardWrite(ctx, &agentv1.PortForwardWriteRequest{Id: "a", Data: []byte("ping")}); err != nil {
		t.Fatal(err)
	}
	if _, err := pf.PortForwardCloseWrite(ctx, &agentv1.PortForwardRequest{Id: "a"}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		resp, err := pf.PortForwardRead(ctx, &agentv1.PortForwardReadRequest{Id: "a", Len: 2})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetEof() {
			break
		}
		got = append(got, resp.GetData()...)
	}
	if string(got) != "ping" {
		t.Fatalf("echo: %q, want ping", got)
	}
	for range 2 { // closing twice is no error
		if _, err := pf.PortForwardClose(ctx, &agentv1.PortForwardRequest{Id: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = pf.PortForwardRead(ctx, &agentv1.PortForwardReadRequest{Id: "a"})
	wantCode(t, "read a closed forward", err, codes.NotFound, "not found")

	for i := range MaxPortForwards {
		if _, err := pf.PortForwardOpen(ctx, &agentv1.PortForwardOpenRequest{Id: strconv.Itoa(i), Port: port}); err != nil {
			t.Fatalf("open forward %d: %v", i, err)
		}
	}
	_, err = pf.PortForwardOpen(ctx, &agentv1.PortForwardOpenRequest{Id: "one-more", Port: port})
	wantCode(t, fmt.Sprintf("open forward %d", MaxPortForwards+1), err, codes.ResourceExhausted, "forwards are open")
	if _, err := pf.PortForwardClose(ctx, &agentv1.PortForwardRequest{Id: "0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := pf.PortForwardOpen(ctx, &agentv1.PortForwardOpenRequest{Id: "one-more", Port: port}); err != nil {
		t.Fatalf("open after a close freed a slot: %v", err)
	}
}
