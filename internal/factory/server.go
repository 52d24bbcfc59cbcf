package factory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	factoryv1 "github.com/vessel-containers/vessel/api/factory/v1"
	"github.com/vessel-containers/vessel/internal/unixsock"
)

// Server is the VM cache server: a cache of n VMs served over ttrpc on the factory's cache
// endpoint. It owns the cache's goroutines and the ttrpc server's; Serve stops them all.
type Server struct {
	f      *Factory
	target int
	// cache is set by Serve before the ttrpc server starts.
	cache *cache
}

var _ factoryv1.CacheService = (*Server)(nil)

// NewServer prepares a server keeping n VMs ready. It starts nothing: Serve does.
func (f *Factory) NewServer(n int) (*Server, error) {
	if f.cfg.CacheEndpoint == "" {
		return nil, fmt.Errorf("vm cache: no endpoint configured (factory.vm_cache_endpoint): %w", errdefs.ErrInvalidArgument)
	}
	if n <= 0 {
		return nil, fmt.Errorf("vm cache: %d vms: want at least 1: %w", n, errdefs.ErrInvalidArgument)
	}
	return &Server{f: f, target: n}, nil
}

// Serve fills the cache and answers requests until ctx ends, then stops the cached VMs
// (not the ones handed out) and removes the socket and the cache's directory. ready, if
// not nil, is called once the socket accepts connections.
//
// The socket is created with mode 0600 (never wider, not even between bind and a chmod),
// and every connection's peer must run as this process's effective uid (SO_PEERCRED):
// a VM handed out is a running VMM whose process the taker adopts, so only a process as
// privileged as the server may ask for one.
func (s *Server) Serve(ctx context.Context, ready func()) error {
	endpoint := s.f.cfg.CacheEndpoint
	if err := os.MkdirAll(filepath.Dir(endpoint), 0o711); err != nil {
		return fmt.Errorf("vm cache: %w", err)
	}
	if c, err := dialCache(ctx, endpoint); err == nil {
		c.close()
		return fmt.Errorf("vm cache: a server already answers on %s: %w", endpoint, errdefs.ErrAlreadyExists)
	}
	_ = os.Remove(endpoint) // a stale socket of a server that died
	l, err := unixsock.Listen(endpoint, 0o600)
	if err != nil {
		return fmt.Errorf("vm cache: %w", err)
	}
	defer l.Close()

	base := s.f.cfg.Base
	c, err := newCache(ctx, cacheConfig{
		dir: CacheDir(endpoint), target: s.target,
		key: s.f.cacheKey(), currentKey: s.f.cacheKey, shape: ShapeOf(base), boot: s.f.bootForCache,
		remove: s.f.releaseVMDir,
	})
	if err != nil {
		return err
	}
	s.cache = c
	defer func() {
		cctx := context.WithoutCancel(ctx)
		c.close(cctx)
		log.G(cctx).Info("vm cache: stopped")
	}()

	srv, err := s.ttrpcServer()
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }() // owner: Serve; returns when srv shuts down
	log.G(ctx).WithField("endpoint", endpoint).WithField("vms", c.cfg.target).Info("vm cache: serving")
	if ready != nil {
		ready()
	}
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	_ = srv.Close()
	if err == nil {
		err = <-served
	}
	if errors.Is(err, ttrpc.ErrServerClosed) {
		err = nil
	}
	return err
}

// ttrpcServer is the ttrpc server that serves s: it refuses a peer of another uid.
// Preconditions: s.cache is set.
func (s *Server) ttrpcServer() (*ttrpc.Server, error) {
	srv, err := ttrpc.NewServer(ttrpc.WithServerHandshaker(requireSameUID()))
	if err != nil {
		return nil, fmt.Errorf("vm cache: %w", err)
	}
	factoryv1.RegisterCacheService(srv, s)
	return srv, nil
}

// requireSameUID refuses a connection whose peer does not run as this process's
// effective uid; ttrpc logs the refusal and closes the connection.
func requireSameUID() ttrpc.UnixCredentialsFunc {
	uid := os.Geteuid()
	return func(cred *unix.Ucred) error {
		if int64(cred.Uid) != int64(uid) {
			return fmt.Errorf("vm cache: peer pid %d runs as uid %d, want uid %d: %w", cred.Pid, cred.Uid, uid, errdefs.ErrPermissionDenied)
		}
		return nil
	}
}

// GetVM hands a VM over: see factory.proto.
func (s *Server) GetVM(ctx context.Context, req *factoryv1.GetVMRequest) (*factoryv1.GetVMResponse, error) {
	e, ad, err := s.cache.take(ctx, req)
	if err != nil {
		log.G(ctx).WithError(err).WithField("sandbox", req.GetSandboxId()).Info("vm cache: no vm for a sandbox")
		return nil, errgrpc.ToGRPC(err)
	}
	return &factoryv1.GetVMResponse{
		VmId: e.id, Pid: int32(ad.Pid), StartTime: ad.StartTime, StateDir: e.dir,
		Shape: shapeToProto(s.cache.cfg.shape), FromTemplate: e.fromTemplate,
	}, nil
}

// Status describes the cache: see factory.proto.
func (s *Server) Status(ctx context.Context, _ *factoryv1.StatusRequest) (*factoryv1.StatusResponse, error) {
	return s.cache.status(), nil
}
