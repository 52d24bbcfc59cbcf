//go:build linux

package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/mdlayher/vsock"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/guard"
	"github.com/vessel-containers/vessel/internal/agent/policy"
	"github.com/vessel-containers/vessel/internal/agent/session"
	"github.com/vessel-containers/vessel/internal/tracing"
)

// interceptor returns the edge of every call: it checks the request against the policy in
// gate before any work (a request the policy denies by name is not even decoded; the
// others are checked once decoded, before their handler runs), turns undecodable requests
// into InvalidArgument, a panic into Internal (the agent must not die on input), errdefs
// errors into status codes (errgrpc.ToGRPC: the only place where they become wire codes),
// and logs each call at debug level and each denial as a warning. With a recorder, a call
// whose metadata carries a sampled trace context gets a server span (tracing.Recorder).
func interceptor(gate *policy.Gate, rec *tracing.Recorder) ttrpc.UnaryServerInterceptor {
	return func(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (resp any, err error) {
		if rec != nil {
			var span trace.Span
			ctx, span = rec.StartServer(ctx, "vessel-agent "+info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:])
			defer func() { tracing.End(span, err) }()
		}
		return intercept(ctx, gate.Policy(), unmarshal, info, method)
	}
}

func intercept(ctx context.Context, pol *policy.Policy, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (resp any, err error) {
	start := time.Now()
	name := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	defer func() {
		if r := recover(); r != nil {
			log.G(ctx).WithField("stack", string(debug.Stack())).Errorf("panic in %s: %v", name, r)
			resp, err = nil, status.Errorf(codes.Internal, "%s: agent panic: %v", name, r)
		}
		entry := log.G(ctx).WithField("took", time.Since(start).Round(time.Microsecond))
		if err != nil {
			entry.WithError(err).Debugf("%s failed", name)
		} else {
			entry.Tracef("%s", name)
		}
	}()
	if pol.Denied(name) {
		err := pol.Check(name, nil)
		log.G(ctx).WithError(err).Warn("request denied by the agent policy")
		return nil, errgrpc.ToGRPC(err)
	}
	decode := func(v any) error {
		if err := unmarshal(v); err != nil {
			// The decoder's error may carry a status of its own (Internal): keep only its
			// text, so the caller sees InvalidArgument.
			return fmt.Errorf("%w: %s: cannot decode request: %s", errdefs.ErrInvalidArgument, name, err.Error())
		}
		if err := pol.Check(name, v); err != nil {
			log.G(ctx).WithError(err).Warn("request denied by the agent policy")
			return err
		}
		return nil
	}
	resp, err = method(ctx, decode)
	return resp, errgrpc.ToGRPC(err)
}

// NewServer returns a ttrpc server for svc that enforces the policy in gate (nil: none).
// It serves the Debug, Files, Volume, PortForward, CPUs, Memory and InitLog services too
// when svc implements them (Service does).
func NewServer(svc agentv1.AgentService, gate *policy.Gate) (*ttrpc.Server, error) {
	return newServer(svc, gate, nil)
}

// newServer is NewServer that also records spans of traced calls in rec and serves them
// with the Tracing service; rec nil records nothing and serves no Tracing service.
func newServer(svc agentv1.AgentService, gate *policy.Gate, rec *tracing.Recorder) (*ttrpc.Server, error) {
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(interceptor(gate, rec)))
	if err != nil {
		return nil, fmt.Errorf("ttrpc server: %w", err)
	}
	agentv1.RegisterAgentService(srv, svc)
	if rec != nil {
		agentv1.RegisterTracingService(srv, spanService{rec})
	}
	if dbg, ok := svc.(agentv1.DebugService); ok {
		agentv1.RegisterDebugService(srv, dbg)
	}
	if files, ok := svc.(agentv1.FilesService); ok {
		agentv1.RegisterFilesService(srv, files)
	}
	if vol, ok := svc.(agentv1.VolumeService); ok {
		agentv1.RegisterVolumeService(srv, vol)
	}
	if pf, ok := svc.(agentv1.PortForwardService); ok {
		agentv1.RegisterPortForwardService(srv, pf)
	}
	if cpus, ok := svc.(agentv1.CPUsService); ok {
		agentv1.RegisterCPUsService(srv, cpus)
	}
	if mem, ok := svc.(agentv1.MemoryService); ok {
		agentv1.RegisterMemoryService(srv, mem)
	}
	if il, ok := svc.(agentv1.InitLogService); ok {
		agentv1.RegisterInitLogService(srv, il)
	}
	return srv, nil
}

// spanService serves the spans of a recorder.
type spanService struct{ rec *tracing.Recorder }

func (s spanService) CollectSpans(context.Context, *agentv1.CollectSpansRequest) (*agentv1.CollectSpansResponse, error) {
	b, dropped, err := s.rec.Collect()
	if err != nil {
		return nil, err
	}
	return &agentv1.CollectSpansResponse{Otlp: b, Dropped: dropped}, nil
}

// FindPort returns the device of the virtio-serial port called name, looking under
// sysDir/class/virtio-ports.
func FindPort(sysDir, name string) (string, error) {
	dir := filepath.Join(sysDir, "class/virtio-ports")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("list virtio ports: %w", err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "name"))
		if err != nil {
			continue
		}
		if strings.TrimSpace(string(b)) == name {
			return "/dev/" + e.Name(), nil
		}
	}
	return "", fmt.Errorf("virtio-serial port %q: %w (looked in %s)", name, errdefs.ErrNotFound, dir)
}

// ServeOptions select the transports.
type ServeOptions struct {
	// PortName is the virtio-serial port to serve on: vessel.agent.
	PortName string
	// VsockPort is the vsock port to listen on when the guest has vsock; 0 disables it.
	VsockPort uint32
	// PortWait bounds the wait for the port to show up in sysfs.
	PortWait time.Duration
}

// VsockAvailable reports whether the guest has a vsock transport to the host (a device,
// not only the /dev/vsock node that the vsock core always creates).
func VsockAvailable() bool {
	if _, err := os.Stat("/dev/vsock"); err != nil {
		return false
	}
	cid, err := vsock.ContextID()
	return err == nil && cid > 2 && cid != 0xffffffff
}

// Serve serves svc on the virtio-serial port and, when the guest has one, on vsock, until
// ctx ends or a transport fails. ready is called once the transports are up.
func Serve(ctx context.Context, svc *Service, opts ServeOptions, ready func()) error {
	srv, err := newServer(svc, svc.PolicyGate(), svc.spans)
	if err != nil {
		return err
	}
	defer srv.Close()

	var devPath string
	deadline := time.Now().Add(opts.PortWait)
	for {
		devPath, err = FindPort("/sys", opts.PortName)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	// Kept open for the VM's life: closing it would lose data the host already sent.
	port, err := os.OpenFile(devPath, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", devPath, err)
	}
	mux := session.NewMux(port)
	svc.SetSessionCounter(func() uint64 { return mux.Stats().Sessions })
	// Stop path: ctx ends → the mux, the port and the server close, which ends Run (its
	// port read fails) and every Serve (Accept fails).
	stop := context.AfterFunc(ctx, func() {
		mux.Close()
		port.Close()
		srv.Close()
	})
	defer stop()

	errc := make(chan error, 3)
	serve := func(name string, run func() error) {
		guard.Go(ctx, name, func() { errc <- fmt.Errorf("%s: %w", name, run()) },
			func(p *guard.PanicError) { errc <- p })
	}
	serve("virtio-serial session mux", func() error { return mux.Run(ctx) })
	serve("ttrpc on virtio-serial", func() error { return srv.Serve(ctx, mux) })
	if opts.VsockPort != 0 && VsockAvailable() {
		l, err := vsock.Listen(opts.VsockPort, nil)
		if err != nil {
			log.G(ctx).WithError(err).Warn("vsock listen failed; serving on virtio-serial only")
		} else {
			serve("ttrpc on vsock", func() error { return srv.Serve(ctx, l) })
			log.G(ctx).Infof("listening on vsock port %d", opts.VsockPort)
		}
	}
	log.G(ctx).Infof("serving on virtio-serial port %s (%s)", opts.PortName, devPath)
	if ready != nil {
		ready()
	}
	err = <-errc
	mux.Close()
	port.Close()
	return err
}
