package factory

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"

	factoryv1 "github.com/vessel-containers/vessel/api/factory/v1"
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
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: endpoint, Net: "unix"})
	if err != nil {
		return fmt.Errorf("vm cache: listen: %w", err)
	}
	defer l.Close()
	if err := os.Chmod(endpoint, 0o600); err != nil {
		return fmt.Errorf("vm cache: %w", err)
	}

	base := s.f.cfg.Base
	c, err := newCache(ctx, cacheConfig{
		dir: CacheDir(endpoint), target: s.target,
		key: s.f.baseKey(), currentKey: s.f.baseKey, shape: ShapeOf(base), boot: s.f.bootForCache,
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

	srv, err := ttrpc.NewServer()
	if err != nil {
		return fmt.Errorf("vm cache: %w", err)
	}
	factoryv1.RegisterCacheService(srv, s)
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
