// Package agentclient is the host side of the agent protocol: a typed client with one method
// per RPC, per-request timeouts, error conversion to containerd's errdefs, and dialers for
// the agent transports (virtio-serial unix socket, vsock, hybrid vsock).
package agentclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/status"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/guesttext"
	"github.com/vessel-containers/vessel/internal/tracing"
)

// Timeouts bounds how long requests may take. Zero fields use DefaultTimeouts.
type Timeouts struct {
	// Ready bounds the first Check, which waits for the guest to boot.
	Ready time.Duration
	// Request bounds ordinary requests.
	Request time.Duration
	// Create bounds CreateContainer and ExecProcess (they start processes in the guest).
	Create time.Duration
}

// DefaultTimeouts are generous enough for software emulation (TCG).
var DefaultTimeouts = Timeouts{Ready: 90 * time.Second, Request: 30 * time.Second, Create: 60 * time.Second}

func (t Timeouts) withDefaults() Timeouts {
	if t.Ready == 0 {
		t.Ready = DefaultTimeouts.Ready
	}
	if t.Request == 0 {
		t.Request = DefaultTimeouts.Request
	}
	if t.Create == 0 {
		t.Create = DefaultTimeouts.Create
	}
	return t
}

// Client talks to one agent over one connection.
type Client struct {
	conn     net.Conn
	ttrpc    *ttrpc.Client
	svc      agentv1.AgentService
	tracing  agentv1.TracingService
	files    agentv1.FilesService
	timeouts Timeouts
	// traceAgent sends the trace context of traced calls to the agent (SetTraceAgent).
	traceAgent atomic.Bool
	// observer is told of finished calls (SetObserver); nil when none.
	observer atomic.Pointer[Observer]
}

// Observer is told of every finished agent call but the long polls (LongPoll): the RPC's
// name, how long it took and its error (nil on success). It must not block.
type Observer func(method string, took time.Duration, err error)

// LongPoll reports whether an RPC waits for an event (a process exit, output, an OOM kill)
// rather than doing work: its duration says nothing about the agent.
func LongPoll(method string) bool {
	switch method {
	case "WaitProcess", "ReadStdout", "ReadStderr", "GetOOMEvent", "PortForwardRead":
		return true
	}
	return false
}

// SetObserver has o told of every later call (nil: none).
func (c *Client) SetObserver(o Observer) {
	if o == nil {
		c.observer.Store(nil)
		return
	}
	c.observer.Store(&o)
}

// observe is the client's outermost interceptor: it tells the observer of each call.
func (c *Client) observe(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, _ *ttrpc.UnaryClientInfo, invoke ttrpc.Invoker) error {
	o := c.observer.Load()
	if o == nil || LongPoll(req.Method) {
		return invoke(ctx, req, resp)
	}
	start := time.Now()
	err := invoke(ctx, req, resp)
	callErr := err
	if callErr == nil && resp.Status != nil && resp.Status.Code != 0 {
		callErr = status.ErrorProto(resp.Status)
	}
	(*o)(req.Method, time.Since(start), callErr)
	return err
}

// New wraps an established connection to the agent. The client owns conn.
//
// An observer (SetObserver) is told of each call. A call made under a recording span (package tracing) gets a client span "agent <RPC>";
// with SetTraceAgent its context also goes to the agent in the request's metadata.
func New(conn net.Conn, timeouts Timeouts) *Client {
	c := &Client{conn: conn, timeouts: timeouts.withDefaults()}
	c.ttrpc = ttrpc.NewClient(conn, ttrpc.WithChainUnaryClientInterceptor(c.observe, tracing.ClientInterceptor("agent ", c.traceAgent.Load)))
	c.svc = agentv1.NewAgentClient(c.ttrpc)
	c.tracing = agentv1.NewTracingClient(c.ttrpc)
	c.files = agentv1.NewFilesClient(c.ttrpc)
	return c
}

// SetTraceAgent turns on or off sending the trace context to the agent, which then records
// spans under it (agent.enable_tracing); CollectSpans fetches them.
func (c *Client) SetTraceAgent(on bool) { c.traceAgent.Store(on) }

// TracesAgent reports whether SetTraceAgent turned tracing in the agent on.
func (c *Client) TracesAgent() bool { return c.traceAgent.Load() }

// Close closes the connection; calls in flight fail.
func (c *Client) Close() error {
	if err := c.ttrpc.Close(); err != nil {
		return fmt.Errorf("close agent connection: %w", err)
	}
	return nil
}

// call runs one RPC with a timeout (0: none, for long polls) and converts the error.
func call[Req, Resp any](ctx context.Context, name string, timeout time.Duration, fn func(context.Context, Req) (Resp, error), req Req) (Resp, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	resp, err := fn(ctx, req)
	if err != nil {
		var zero Resp
		if st, isStatus := status.FromError(err); isStatus {
			// The message is the agent's: guest text, escaped before it reaches a host
			// error; the code keeps the error's kind.
			err = errgrpc.ToNative(status.Error(st.Code(), guesttext.Quote(st.Message(), 0)))
		}
		return zero, fmt.Errorf("agent %s: %w", name, err)
	}
	return resp, nil
}

// WaitReady sends Check until the agent answers or the ready timeout passes. The request is
// queued by the hypervisor until the guest opens its port, so one request suffices.
func (c *Client) WaitReady(ctx context.Context) (*agentv1.CheckResponse, error) {
	resp, err := call(ctx, "Check", c.timeouts.Ready, c.svc.Check, &agentv1.CheckRequest{})
	if err != nil {
		return nil, err
	}
	if resp.ProtocolVersion != agentv1.ProtocolVersion {
		return nil, fmt.Errorf("agent speaks protocol %d, host speaks %d: rebuild the guest image", resp.ProtocolVersion, agentv1.ProtocolVersion)
	}
	return resp, nil
}

func (c *Client) Check(ctx context.Context) (*agentv1.CheckResponse, error) {
	return call(ctx, "Check", c.timeouts.Request, c.svc.Check, &agentv1.CheckRequest{})
}

func (c *Client) CreateSandbox(ctx context.Context, req *agentv1.CreateSandboxRequest) error {
	_, err := call(ctx, "CreateSandbox", c.timeouts.Create, c.svc.CreateSandbox, req)
	return err
}

// DestroySandbox has the agent remove every container (running their poststop hooks) and
// unmount the sandbox's storages.
func (c *Client) DestroySandbox(ctx context.Context) error {
	_, err := call(ctx, "DestroySandbox", c.timeouts.Create, c.svc.DestroySandbox, &agentv1.DestroySandboxRequest{})
	return err
}

func (c *Client) CreateContainer(ctx context.Context, req *agentv1.CreateContainerRequest) error {
	_, err := call(ctx, "CreateContainer", c.timeouts.Create, c.svc.CreateContainer, req)
	return err
}

func (c *Client) StartContainer(ctx context.Context, id string) error {
	_, err := call(ctx, "StartContainer", c.timeouts.Create, c.svc.StartContainer, &agentv1.StartContainerRequest{ContainerId: id})
	return err
}

func (c *Client) RemoveContainer(ctx context.Context, id string, timeout uint32) error {
	_, err := call(ctx, "RemoveContainer", c.timeouts.Request+time.Duration(timeout)*time.Second, c.svc.RemoveContainer,
		&agentv1.RemoveContainerRequest{ContainerId: id, Timeout: timeout})
	return err
}

// CopyFile writes one part of a file, a directory or a symlink into the guest.
func (c *Client) CopyFile(ctx context.Context, req *agentv1.CopyFileRequest) error {
	_, err := call(ctx, "CopyFile", c.timeouts.Request, c.svc.CopyFile, req)
	return err
}

// RemovePath removes what CopyFile wrote at path in the guest; a directory with its
// contents when recursive. A path that is not there is no error.
func (c *Client) RemovePath(ctx context.Context, path string, recursive bool) error {
	_, err := call(ctx, "RemovePath", c.timeouts.Request, c.files.RemovePath, &agentv1.RemovePathRequest{Path: path, Recursive: recursive})
	return err
}

// WarmUp has the agent run a throwaway container through the whole life cycle.
func (c *Client) WarmUp(ctx context.Context) error {
	_, err := call(ctx, "WarmUp", c.timeouts.Create, c.svc.WarmUp, &agentv1.WarmUpRequest{})
	return err
}

// ExecProcess starts a process in a container. With ignore_paused it waits for a paused
// container to be resumed, with no timeout: bound it with ctx.
func (c *Client) ExecProcess(ctx context.Context, req *agentv1.ExecProcessRequest) error {
	timeout := c.timeouts.Create
	if req.GetIgnorePaused() {
		timeout = 0
	}
	_, err := call(ctx, "ExecProcess", timeout, c.svc.ExecProcess, req)
	return err
}

// TakeInitLog returns, and has the agent forget, what libcontainer logged while it set up
// a process whose start asked for its log (init_log).
func (c *Client) TakeInitLog(ctx context.Context, containerID, execID string) ([]*agentv1.LogEntry, error) {
	resp, err := call(ctx, "TakeInitLog", c.timeouts.Request, agentv1.NewInitLogClient(c.ttrpc).TakeInitLog,
		&agentv1.TakeInitLogRequest{ContainerId: containerID, ExecId: execID})
	if err != nil {
		return nil, err
	}
	return resp.GetEntries(), nil
}

func (c *Client) SignalProcess(ctx context.Context, req *agentv1.SignalProcessRequest) error {
	_, err := call(ctx, "SignalProcess", c.timeouts.Request, c.svc.SignalProcess, req)
	return err
}

// WaitProcess blocks until the process exits (no timeout: bound it with ctx).
func (c *Client) WaitProcess(ctx context.Context, containerID, execID string) (*agentv1.WaitProcessResponse, error) {
	return call(ctx, "WaitProcess", 0, c.svc.WaitProcess, &agentv1.WaitProcessRequest{ContainerId: containerID, ExecId: execID})
}

func (c *Client) ListProcesses(ctx context.Context, containerID string) (*agentv1.ListProcessesResponse, error) {
	return call(ctx, "ListProcesses", c.timeouts.Request, c.svc.ListProcesses, &agentv1.ListProcessesRequest{ContainerId: containerID})
}

func (c *Client) UpdateContainer(ctx context.Context, req *agentv1.UpdateContainerRequest) error {
	_, err := call(ctx, "UpdateContainer", c.timeouts.Request, c.svc.UpdateContainer, req)
	return err
}

func (c *Client) PauseContainer(ctx context.Context, id string) error {
	_, err := call(ctx, "PauseContainer", c.timeouts.Request, c.svc.PauseContainer, &agentv1.PauseContainerRequest{ContainerId: id})
	return err
}

func (c *Client) ResumeContainer(ctx context.Context, id string) error {
	_, err := call(ctx, "ResumeContainer", c.timeouts.Request, c.svc.ResumeContainer, &agentv1.ResumeContainerRequest{ContainerId: id})
	return err
}

func (c *Client) StatsContainer(ctx context.Context, id string) (*agentv1.StatsContainerResponse, error) {
	return call(ctx, "StatsContainer", c.timeouts.Request, c.svc.StatsContainer, &agentv1.StatsContainerRequest{ContainerId: id})
}

// GetOOMEvent blocks until a container is OOM-killed (no timeout: bound it with ctx).
func (c *Client) GetOOMEvent(ctx context.Context) (*agentv1.OOMEvent, error) {
	return call(ctx, "GetOOMEvent", 0, c.svc.GetOOMEvent, &agentv1.GetOOMEventRequest{})
}

func (c *Client) WriteStdin(ctx context.Context, containerID, execID string, data []byte) (int, error) {
	resp, err := call(ctx, "WriteStdin", c.timeouts.Request, c.svc.WriteStdin,
		&agentv1.WriteStreamRequest{ContainerId: containerID, ExecId: execID, Data: data})
	if err != nil {
		return 0, err
	}
	return int(resp.Len), nil
}

// ReadStdout long-polls for output (no timeout: bound it with ctx).
func (c *Client) ReadStdout(ctx context.Context, containerID, execID string, n uint32) (*agentv1.ReadStreamResponse, error) {
	return call(ctx, "ReadStdout", 0, c.svc.ReadStdout, &agentv1.ReadStreamRequest{ContainerId: containerID, ExecId: execID, Len: n})
}

// ReadStderr long-polls for output (no timeout: bound it with ctx).
func (c *Client) ReadStderr(ctx context.Context, containerID, execID string, n uint32) (*agentv1.ReadStreamResponse, error) {
	return call(ctx, "ReadStderr", 0, c.svc.ReadStderr, &agentv1.ReadStreamRequest{ContainerId: containerID, ExecId: execID, Len: n})
}

func (c *Client) CloseStdin(ctx context.Context, containerID, execID string) error {
	_, err := call(ctx, "CloseStdin", c.timeouts.Request, c.svc.CloseStdin, &agentv1.CloseStdinRequest{ContainerId: containerID, ExecId: execID})
	return err
}

func (c *Client) TtyWinResize(ctx context.Context, containerID, execID string, rows, cols uint32) error {
	_, err := call(ctx, "TtyWinResize", c.timeouts.Request, c.svc.TtyWinResize,
		&agentv1.TtyWinResizeRequest{ContainerId: containerID, ExecId: execID, Row: rows, Column: cols})
	return err
}

func (c *Client) UpdateInterface(ctx context.Context, iface *agentv1.Interface) (*agentv1.Interface, error) {
	return call(ctx, "UpdateInterface", c.timeouts.Request, c.svc.UpdateInterface, &agentv1.UpdateInterfaceRequest{Interface: iface})
}

func (c *Client) UpdateRoutes(ctx context.Context, routes *agentv1.Routes) (*agentv1.Routes, error) {
	return call(ctx, "UpdateRoutes", c.timeouts.Request, c.svc.UpdateRoutes, &agentv1.UpdateRoutesRequest{Routes: routes})
}

func (c *Client) ListInterfaces(ctx context.Context) (*agentv1.Interfaces, error) {
	return call(ctx, "ListInterfaces", c.timeouts.Request, c.svc.ListInterfaces, &agentv1.ListInterfacesRequest{})
}

func (c *Client) ListRoutes(ctx context.Context) (*agentv1.Routes, error) {
	return call(ctx, "ListRoutes", c.timeouts.Request, c.svc.ListRoutes, &agentv1.ListRoutesRequest{})
}

func (c *Client) AddARPNeighbors(ctx context.Context, neighbors []*agentv1.ARPNeighbor) error {
	_, err := call(ctx, "AddARPNeighbors", c.timeouts.Request, c.svc.AddARPNeighbors, &agentv1.AddARPNeighborsRequest{Neighbors: neighbors})
	return err
}

func (c *Client) OnlineCPUMem(ctx context.Context, req *agentv1.OnlineCPUMemRequest) error {
	_, err := call(ctx, "OnlineCPUMem", c.timeouts.Request, c.svc.OnlineCPUMem, req)
	return err
}

func (c *Client) MemHotplugByProbe(ctx context.Context, addrs []uint64) error {
	_, err := call(ctx, "MemHotplugByProbe", c.timeouts.Request, c.svc.MemHotplugByProbe, &agentv1.MemHotplugByProbeRequest{MemHotplugProbeAddr: addrs})
	return err
}

func (c *Client) ReseedRandomDev(ctx context.Context, seed []byte) error {
	_, err := call(ctx, "ReseedRandomDev", c.timeouts.Request, c.svc.ReseedRandomDev, &agentv1.ReseedRandomDevRequest{Data: seed})
	return err
}

// SetGuestDateTime sets the guest clock to t. Send it only after the first answer from the
// agent: a request queued before the guest was up would carry a stale time.
func (c *Client) SetGuestDateTime(ctx context.Context, t time.Time) error {
	_, err := call(ctx, "SetGuestDateTime", c.timeouts.Request, c.svc.SetGuestDateTime,
		&agentv1.SetGuestDateTimeRequest{Sec: t.Unix(), Usec: int64(t.Nanosecond() / 1000)})
	return err
}

// SetPolicy puts the agent policy doc in force in the guest and checks that the agent
// reports the document's digest.
func (c *Client) SetPolicy(ctx context.Context, doc []byte) error {
	resp, err := call(ctx, "SetPolicy", c.timeouts.Request, c.svc.SetPolicy, &agentv1.SetPolicyRequest{Policy: doc})
	if err != nil {
		return err
	}
	sum := sha256.Sum256(doc)
	if want := hex.EncodeToString(sum[:]); resp.GetDigest() != want {
		return fmt.Errorf("SetPolicy: the agent reports policy digest %q, want %s", resp.GetDigest(), want)
	}
	return nil
}

func (c *Client) GetGuestDetails(ctx context.Context, req *agentv1.GuestDetailsRequest) (*agentv1.GuestDetailsResponse, error) {
	return call(ctx, "GetGuestDetails", c.timeouts.Request, c.svc.GetGuestDetails, req)
}

func (c *Client) GetMetrics(ctx context.Context) (*agentv1.Metrics, error) {
	return call(ctx, "GetMetrics", c.timeouts.Request, c.svc.GetMetrics, &agentv1.GetMetricsRequest{})
}

// VolumeStats is the usage of the file system the agent mounted at mountPoint.
func (c *Client) VolumeStats(ctx context.Context, mountPoint string) (*agentv1.VolumeStatsResponse, error) {
	return call(ctx, "VolumeStats", c.timeouts.Request, agentv1.NewVolumeClient(c.ttrpc).VolumeStats, &agentv1.VolumeStatsRequest{MountPoint: mountPoint})
}

// ResizeVolume grows the file system the agent mounted at mountPoint to size bytes; it
// runs as long as a create may (the guest waits for its disk's new size, then resizes).
func (c *Client) ResizeVolume(ctx context.Context, mountPoint string, size uint64) error {
	_, err := call(ctx, "ResizeVolume", c.timeouts.Create, agentv1.NewVolumeClient(c.ttrpc).ResizeVolume, &agentv1.ResizeVolumeRequest{MountPoint: mountPoint, Size: size})
	return err
}

// CollectSpans fetches the spans the agent recorded for traced requests since the last call
// (the agent forgets them) and how many it dropped for lack of room.
func (c *Client) CollectSpans(ctx context.Context) ([]*tracepb.ResourceSpans, uint32, error) {
	resp, err := call(ctx, "CollectSpans", c.timeouts.Request, c.tracing.CollectSpans, &agentv1.CollectSpansRequest{})
	if err != nil {
		return nil, 0, err
	}
	spans, err := tracing.DecodeSpans(resp.GetOtlp())
	if err != nil {
		return nil, resp.GetDropped(), fmt.Errorf("agent CollectSpans: %w", err)
	}
	return spans, resp.GetDropped(), nil
}

// Debug is the agent's Debug service on this connection, for a relay that passes calls
// through as they are (the caller bounds them: reads long-poll).
func (c *Client) Debug() agentv1.DebugService { return agentv1.NewDebugClient(c.ttrpc) }

// OfflineCPUs has the guest offline its CPUs at the places given (socket and core), before
// the host unplugs those vCPUs; it returns the guest CPU numbers it offlined.
func (c *Client) OfflineCPUs(ctx context.Context, places []*agentv1.CPUPlace) ([]uint32, error) {
	resp, err := call(ctx, "OfflineCPUs", c.timeouts.Request, agentv1.NewCPUsClient(c.ttrpc).OfflineCPUs, &agentv1.OfflineCPUsRequest{Places: places})
	if err != nil {
		return nil, err
	}
	return resp.GetCpus(), nil
}

// OfflineMemory has the guest offline the memory blocks in the ranges given (guest-physical
// address and size), within timeout, before the host unplugs the memory device holding
// them; it returns the block numbers it offlined.
func (c *Client) OfflineMemory(ctx context.Context, ranges []*agentv1.MemoryRange, timeout time.Duration) ([]uint64, error) {
	req := &agentv1.OfflineMemoryRequest{Ranges: ranges, TimeoutMs: uint32(timeout.Milliseconds())}
	// The guest gives up at timeout; the call waits a little longer for its answer.
	resp, err := call(ctx, "OfflineMemory", max(c.timeouts.Request, timeout+5*time.Second), agentv1.NewMemoryClient(c.ttrpc).OfflineMemory, req)
	if err != nil {
		return nil, err
	}
	return resp.GetBlocks(), nil
}
