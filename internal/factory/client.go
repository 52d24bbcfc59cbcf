package factory

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/status"

	factoryv1 "github.com/vessel-containers/vessel/api/factory/v1"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/procid"
	"github.com/vessel-containers/vessel/internal/unixsock"
)

// dialTimeout bounds connecting to the cache server and each request to it.
const dialTimeout = 5 * time.Second

// CacheDir is where the cache server at endpoint keeps its VMs' directories: beside the
// socket, so that with the defaults it is on the same file system as the sandboxes'
// state (/run/vessel).
func CacheDir(endpoint string) string {
	return filepath.Join(filepath.Dir(endpoint), "vmcache")
}

// cacheClient is one connection to the cache server.
type cacheClient struct {
	tc  *ttrpc.Client
	svc factoryv1.CacheService
}

// dialCache connects to the cache server. A server that is not running is
// errdefs.ErrNotFound. The server must run as this process's effective uid: it hands out
// processes that the caller adopts and directories whose entries it moves.
func dialCache(ctx context.Context, endpoint string) (*cacheClient, error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "unix", endpoint)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("no vm cache server at %s: %w", endpoint, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("dial vm cache %s: %w", endpoint, err)
	}
	if err := unixsock.RequireUID(conn, os.Geteuid()); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("vm cache %s: %w", endpoint, err)
	}
	tc := ttrpc.NewClient(conn)
	return &cacheClient{tc: tc, svc: factoryv1.NewCacheClient(tc)}, nil
}

func (c *cacheClient) close() { _ = c.tc.Close() }

// fromGRPC turns a ttrpc status error back into an errdefs error.
func fromGRPC(err error) error {
	if _, ok := status.FromError(err); ok {
		return errgrpc.ToNative(err)
	}
	return err
}

// CacheStatus asks the cache server at endpoint for its status.
func CacheStatus(ctx context.Context, endpoint string) (*factoryv1.StatusResponse, error) {
	c, err := dialCache(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	defer c.close()
	rctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	st, err := c.svc.Status(rctx, &factoryv1.StatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("vm cache status: %w", fromGRPC(err))
	}
	return st, nil
}

// fromCache takes a VM from the cache server and adopts it: the VM's directory entries
// (sockets, logs, "shared") move into want.StateDir, then a VM with Config.Adopt attaches
// to the process. If anything fails after the handover, the VM is killed.
func (f *Factory) fromCache(ctx context.Context, key Key, want hypervisor.Config) (_ hypervisor.VM, retErr error) {
	dir := CacheDir(f.cfg.CacheEndpoint)
	if _, err := os.Stat(f.cfg.CacheEndpoint); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no vm cache server at %s: %w", f.cfg.CacheEndpoint, errdefs.ErrNotFound)
	}
	same, err := sameFileSystem(dir, want.StateDir)
	if err != nil {
		return nil, fmt.Errorf("vm cache: %w", err)
	}
	if !same {
		return nil, fmt.Errorf("the cache's vms (%s) and the sandbox's state (%s) are on different file systems, so a cached vm's sockets and shared directory cannot be moved: %w",
			dir, want.StateDir, errdefs.ErrNotImplemented)
	}
	c, err := dialCache(ctx, f.cfg.CacheEndpoint)
	if err != nil {
		return nil, err
	}
	defer c.close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := c.svc.GetVM(rctx, &factoryv1.GetVMRequest{
		SandboxId: want.ID, ConfigHash: key.Hash(), Key: keyToProto(key),
		Vcpus: want.VCPUs, MemoryMib: want.MemoryMiB,
	})
	if err != nil {
		return nil, fromGRPC(err)
	}
	vmm := procid.ID{Pid: int(resp.GetPid()), StartTime: resp.GetStartTime()}
	defer func() {
		if retErr != nil {
			if err := killProcess(vmm); err != nil {
				log.G(ctx).WithError(err).Warn("kill a cached vm that could not be taken over")
			}
			_ = os.RemoveAll(resp.GetStateDir())
		}
	}()
	if filepath.Dir(resp.GetStateDir()) != dir {
		return nil, fmt.Errorf("cache answered with state dir %s, outside %s", resp.GetStateDir(), dir)
	}
	if err := moveEntries(resp.GetStateDir(), want.StateDir); err != nil {
		return nil, err
	}
	cfg := want
	shapeFromProto(resp.GetShape()).apply(&cfg)
	cfg.Adopt = &hypervisor.Adoption{Pid: vmm.Pid, StartTime: vmm.StartTime}
	vm, err := hypervisor.New(f.cfg.Driver, cfg)
	if err != nil {
		return nil, err
	}
	if err := vm.Start(ctx); err != nil {
		return nil, err
	}
	log.G(ctx).WithField("vm", resp.GetVmId()).WithField("pid", vmm.Pid).WithField("from_template", resp.GetFromTemplate()).
		Debug("vm taken over from the cache")
	return vm, nil
}
