package factory

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/status"

	factoryv1 "github.com/vessel-containers/vessel/api/factory/v1"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/procid"
	"github.com/vessel-containers/vessel/internal/sharefs"
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
	// server is the pid of the process that listens on the endpoint (SO_PEERCRED): the
	// parent of every VMM it hands out.
	server int
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
	cred, err := unixsock.PeerCred(conn.(*net.UnixConn)) // RequireUID accepts only a unix socket
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("vm cache %s: %w", endpoint, err)
	}
	tc := ttrpc.NewClient(conn)
	return &cacheClient{tc: tc, svc: factoryv1.NewCacheClient(tc), server: int(cred.Pid)}, nil
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
	// Nothing in the answer is acted on (no process signalled or adopted, no directory
	// moved or removed) before it names a VM of this cache: the server is trusted only as
	// far as checkHandover verifies.
	vmm, stateDir, err := checkHandover(resp, dir, c.server)
	if err != nil {
		return nil, fmt.Errorf("vm cache answered with a vm that cannot be taken over: %w", err)
	}
	defer func() {
		if retErr != nil {
			if err := killProcess(vmm); err != nil {
				log.G(ctx).WithError(err).Warn("kill a cached vm that could not be taken over")
			}
			_ = os.RemoveAll(stateDir)
		}
	}()
	shape := shapeFromProto(resp.GetShape())
	if err := shape.Fits(want.VCPUs, want.MemoryMiB); err != nil {
		return nil, fmt.Errorf("vm cache answered with a vm of the wrong size: %w", err)
	}
	if want.UserNS != nil {
		// The VM's id lease goes to the sandbox before the cache's directory does: a
		// lease whose holder is gone is free for anyone.
		lease, err := f.takeVMMIDs(vmm.Pid, stateDir, want.StateDir)
		if err != nil {
			return nil, err
		}
		want.UserNS = &lease.Range
		// The sandbox published its view for a VMM of its own; it takes the cached
		// VM's export instead, whose view that VMM follows.
		if err := sharefs.Open(want.StateDir).Unpublish(ctx); err != nil {
			return nil, fmt.Errorf("vm cache: %w", err)
		}
		defer func() {
			if retErr != nil {
				_ = lease.Release()
			}
		}()
	}
	if err := moveEntries(stateDir, want.StateDir); err != nil {
		return nil, err
	}
	cfg := want
	shape.apply(&cfg)
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

// checkHandover checks that a GetVM answer names a VM of the cache whose VMs live in dir
// and whose server runs as pid server, and returns the VMM's process and the VM's
// directory. The VM's id is one entry of dir and its state_dir is that entry, a directory;
// its process runs with the start time given and is a child of the server (the cache
// starts every VMM it hands out, and reaps it). A process that is not the server's child,
// or a directory outside dir, is refused: whoever answers on the endpoint must not be able
// to make the caller adopt, kill or move something else.
func checkHandover(resp *factoryv1.GetVMResponse, dir string, server int) (procid.ID, string, error) {
	id := resp.GetVmId()
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return procid.ID{}, "", fmt.Errorf("vm id %q: want one file name", id)
	}
	stateDir := filepath.Join(dir, id)
	if resp.GetStateDir() != stateDir {
		return procid.ID{}, "", fmt.Errorf("vm %s: state dir %q, want %s", id, resp.GetStateDir(), stateDir)
	}
	if st, err := os.Lstat(stateDir); err != nil {
		return procid.ID{}, "", fmt.Errorf("vm %s: %w", id, err)
	} else if !st.IsDir() {
		return procid.ID{}, "", fmt.Errorf("vm %s: %s is a %v, want a directory", id, stateDir, st.Mode().Type())
	}
	vmm := procid.ID{Pid: int(resp.GetPid()), StartTime: resp.GetStartTime()}
	if vmm.Pid <= 0 {
		return procid.ID{}, "", fmt.Errorf("vm %s: pid %d: want a process id", id, vmm.Pid)
	}
	st, err := procid.ReadStat(vmm.Pid)
	if err != nil {
		return procid.ID{}, "", fmt.Errorf("vm %s: vmm: %w", id, err)
	}
	switch {
	case st.StartTime != vmm.StartTime:
		return procid.ID{}, "", fmt.Errorf("vm %s: vmm %s: the process with that pid started at %d", id, vmm, st.StartTime)
	case st.PPid != server:
		return procid.ID{}, "", fmt.Errorf("vm %s: vmm %s is a child of pid %d, want a child of the cache server (pid %d)", id, vmm, st.PPid, server)
	case st.State == 'Z':
		return procid.ID{}, "", fmt.Errorf("vm %s: vmm %s has exited", id, vmm)
	}
	return vmm, stateDir, nil
}

// takeVMMIDs transfers the id lease of the cached VM whose VMM is pid, held by its
// directory from, to the sandbox directory to. The slot is the one the kernel reports
// for the VMM (its uid map), not one the server names.
func (f *Factory) takeVMMIDs(pid int, from, to string) (idrange.Lease, error) {
	r, ok, err := idrange.OfProcess(pid)
	if err != nil {
		return idrange.Lease{}, fmt.Errorf("vm cache: ids of the cached vm's vmm: %w", err)
	}
	if !ok {
		return idrange.Lease{}, fmt.Errorf("vm cache: the cached vm's vmm runs in the host's user namespace; the sandbox needs an unprivileged one (hypervisor.vmm_id_range): %w", errdefs.ErrFailedPrecondition)
	}
	var pool idrange.Pool
	if f.cfg.VMMIDs != nil {
		pool = *f.cfg.VMMIDs
	}
	lease, err := idrange.Transfer(f.leaseDir(), pool, r, from, to)
	if err != nil {
		return idrange.Lease{}, fmt.Errorf("vm cache: take the cached vm's ids: %w", err)
	}
	return lease, nil
}
