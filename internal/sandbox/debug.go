package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/persist"
	"github.com/vessel-containers/vessel/internal/unixsock"
)

// debugRelay serves persist.DebugSocketName: the agent's transport has room for one host,
// and the sandbox's owner keeps it, so `vessel debug` goes through the owner.
type debugRelay struct {
	srv  *ttrpc.Server
	done chan struct{}
}

// serveDebug starts the relay. The socket is the owner's user's only (mode 0600, and the
// peer must run as the same user); it is removed when the relay stops.
func (s *Sandbox) serveDebug(ctx context.Context) error {
	path := filepath.Join(s.dir, persist.DebugSocketName)
	l, err := unixsock.Listen(path, 0o600)
	if err != nil {
		return fmt.Errorf("debug console: %w", err)
	}
	srv, err := ttrpc.NewServer(ttrpc.WithServerHandshaker(ttrpc.UnixSocketRequireSameUser()))
	if err != nil {
		_ = l.Close()
		return fmt.Errorf("debug console: %w", err)
	}
	agentv1.RegisterDebugService(srv, relayService{s.agent.Debug()})
	r := &debugRelay{srv: srv, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := srv.Serve(ctx, l); err != nil && !errors.Is(err, ttrpc.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			log.G(ctx).WithError(err).Warn("debug console relay stopped")
		}
	}()
	s.debug = r
	log.G(ctx).WithField("socket", path).Info("debug console enabled")
	return nil
}

// stopDebug stops the relay and waits for it; calls in flight fail. Without a relay it does
// nothing.
func (s *Sandbox) stopDebug() {
	r := s.debug
	if r == nil {
		return
	}
	s.debug = nil
	_ = r.srv.Close()
	<-r.done
	_ = os.Remove(filepath.Join(s.dir, persist.DebugSocketName))
}

// relayService passes the Debug calls through to the agent. A DebugWait whose caller went
// away (its connection closed: vessel was killed) before the process exited kills the
// process: nobody is left to drive it. `vessel debug` keeps a DebugWait pending for the
// whole session for this.
type relayService struct {
	agentv1.DebugService
}

// orphanKillTimeout bounds the kill of a debug process whose client is gone.
const orphanKillTimeout = 10 * time.Second

func (r relayService) DebugWait(ctx context.Context, req *agentv1.DebugProcessRequest) (*agentv1.WaitProcessResponse, error) {
	resp, err := r.DebugService.DebugWait(ctx, req)
	if err == nil || ctx.Err() == nil {
		return resp, err
	}
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), orphanKillTimeout)
	defer cancel()
	_, kerr := r.DebugSignal(kctx, &agentv1.DebugSignalRequest{ExecId: req.GetExecId(), Signal: uint32(unix.SIGKILL)})
	log.G(ctx).WithField("exec", req.GetExecId()).WithError(kerr).Info("debug console: client gone, killed its guest process")
	return resp, err
}
