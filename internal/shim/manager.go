// Package shim is Vessel's containerd shim v2 (runtime type io.containerd.vessel.v2): the
// shim manager that starts one shim process per sandbox, and the task service that maps the
// task API onto internal/sandbox. It is the only place that converts errors to gRPC status
// codes and the only place that publishes task events.
package shim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"

	"github.com/vessel-containers/vessel/internal/atomicfile"
	"github.com/vessel-containers/vessel/internal/directvolume"
	"github.com/vessel-containers/vessel/internal/hostcgroup"
	"github.com/vessel-containers/vessel/internal/oci"
	"github.com/vessel-containers/vessel/internal/persist"
	"github.com/vessel-containers/vessel/internal/sandbox"
	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/unixsock"
	"github.com/vessel-containers/vessel/internal/version"
)

// RuntimeName is the runtime type containerd knows Vessel by.
const RuntimeName = shimproto.RuntimeName

// Options configures shim.Run. No reaper: the shim waits for its own children (QEMU) with
// exec.Cmd, and a catch-all reaper would steal their exit statuses. No logger set up by
// shim.Run: it decides before it parses flags, so it cannot honour -log-file; the task
// plugin sets the log up instead (setupLog).
func Options(c *shim.Config) {
	c.NoReaper = true
	c.NoSubreaper = true
	c.NoSetupLogger = true
}

// Manager starts and cleans up shim processes.
type Manager struct {
	// flags is the flag set shim.Run parses: containerd's flags and the shim's own.
	flags *flag.FlagSet
}

// NewManager returns the shim manager of the shim binary, which reads its flags from the
// standard flag set (Register defines the shim's own there).
func NewManager() Manager { return Manager{flags: flag.CommandLine} }

// options are the shim's own flags.
func (m Manager) options() shimproto.Options { return shimproto.Lookup(m.flags) }

// address is the -address the shim binary was run with: containerd's socket, or empty for
// a shim the CLI runs. shim.Run parses it into the flag set and keeps it to itself.
func (m Manager) address() string {
	if f := m.flags.Lookup(shimproto.FlagAddress); f != nil {
		return f.Value.String()
	}
	return ""
}

// Name is the runtime name.
func (Manager) Name() string { return RuntimeName }

// bundleSpec is the part of config.json the manager needs.
type bundleSpec struct {
	Annotations map[string]string `json:"annotations,omitempty"`
}

// sandboxIDOf returns the id of the sandbox a container belongs to: the CRI sandbox id for
// a pod's containers, the container's own id otherwise. The bundle is -bundle when given,
// else the working directory (containerd runs the shim in the bundle dir).
func sandboxIDOf(ctx context.Context, id string) (string, error) {
	dir := "."
	if o, ok := ctx.Value(shim.OptsKey{}).(shim.Opts); ok && o.BundlePath != "" {
		dir = o.BundlePath
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return "", fmt.Errorf("read bundle config.json: %w", err)
	}
	var s bundleSpec
	if err := json.Unmarshal(data, &s); err != nil {
		return "", fmt.Errorf("parse bundle config.json: %w", err)
	}
	_, sandboxID, err := oci.Identify(id, s.Annotations)
	if err != nil {
		return "", fmt.Errorf("bundle config.json: %w", err)
	}
	return sandboxID, nil
}

// Start starts a shim process for the container's sandbox, or returns the address of the
// one already running for it (containers of one pod share one shim and one VM).
//
// containerd 1.6 reads the address as plain text from stdout, containerd 2.x accepts plain
// text as a version 2 ttrpc address too, but the shim package writes JSON. So Start writes
// the plain address itself and points os.Stdout at /dev/null for the JSON that follows.
func (m Manager) Start(ctx context.Context, id string, opts shim.StartOpts) (_ shim.BootstrapParams, retErr error) {
	params := shim.BootstrapParams{Version: 2, Protocol: "ttrpc"}
	group, err := sandboxIDOf(ctx, id)
	if err != nil {
		return params, err
	}
	// Read before anything else: containerd writes the options and waits.
	shimCgroup, err := readShimCgroup(os.Stdin) // shimcgroup.go
	if err != nil {
		return params, err
	}
	o := m.options()
	address, err := socketAddress(ctx, opts.Address, o.SocketDir, group)
	if err != nil {
		return params, fmt.Errorf("shim socket address: %w", err)
	}
	listener, err := shim.NewSocket(address)
	if err != nil {
		if !shim.SocketEaddrinuse(err) {
			return params, fmt.Errorf("create shim socket: %w", err)
		}
		if shim.CanConnect(address) {
			// The sandbox's shim is running: this container joins it.
			params.Address = address
			return params, writeAddress(address)
		}
		if err := shim.RemoveSocket(address); err != nil {
			return params, fmt.Errorf("remove stale shim socket: %w", err)
		}
		if listener, err = shim.NewSocket(address); err != nil {
			return params, fmt.Errorf("create shim socket: %w", err)
		}
	}
	defer func() {
		if retErr != nil {
			listener.Close()
			_ = shim.RemoveSocket(address)
		}
	}()
	f, err := listener.File()
	if err != nil {
		return params, fmt.Errorf("shim socket file: %w", err)
	}
	defer f.Close()

	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return params, fmt.Errorf("shim start: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return params, fmt.Errorf("shim start: %w", err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		return params, fmt.Errorf("shim start: %w", err)
	}
	// The shim process gets the flags this start action got: it serves the same
	// sandbox root, log and socket directory.
	inv := shimproto.Invocation{Namespace: ns, ID: id, Address: opts.Address, Debug: opts.Debug, Options: o}
	cmd := exec.Command(self, inv.Args("")...)
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	cmd.ExtraFiles = []*os.File{f}
	// Its own process group: signals to containerd's group do not reach the shim.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if o.LogFile != "" {
		logf, err := os.OpenFile(o.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return params, fmt.Errorf("open shim log: %w", err)
		}
		defer logf.Close()
		cmd.Stderr = logf
	}
	if err := cmd.Start(); err != nil {
		return params, fmt.Errorf("start shim process: %w", err)
	}
	pid := cmd.Process.Pid
	// As containerd's runc shim: the new shim runs in the cgroup the task's options name.
	// It serves no task before Start returns, so the VM it boots later is charged as
	// docs/host-cgroups.md says, and it returns here from the pod's cgroup.
	if shimCgroup != "" {
		if err := hostcgroup.Move(pid, shimCgroup); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return params, fmt.Errorf("shim cgroup: %w", err)
		}
	}
	// The shim outlives this process; release it so it is not left a zombie of ours.
	if err := cmd.Process.Release(); err != nil {
		return params, fmt.Errorf("release shim process: %w", err)
	}
	// containerd 1.6 reads stdout and stderr together as the address, so nothing may be
	// logged here. A failed adjustment leaves the shim at the default score, which is fine.
	_ = shim.AdjustOOMScore(pid)
	params.Address = address
	return params, writeAddress(address)
}

// socketAddress is where the sandbox's shim serves: <socketDir>/<hash> when -socket-dir is
// given (the CLI's shims), else containerd's socket directory, derived from containerd's
// address. The hash keeps the path short: a unix socket path has at most 108 bytes.
func socketAddress(ctx context.Context, address, socketDir, group string) (string, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return "", err
	}
	if socketDir == "" {
		return shim.SocketAddress(ctx, address, group, false)
	}
	if !filepath.IsAbs(socketDir) {
		return "", fmt.Errorf("-%s %q: want an absolute directory", shimproto.FlagSocketDir, socketDir)
	}
	sum := sha256.Sum256([]byte(ns + "/" + group))
	return "unix://" + filepath.Join(socketDir, hex.EncodeToString(sum[:16])), nil
}

// writeAddress records the address in the bundle's "address" file, which containerd 1.6
// reads to reconnect after a restart, prints the plain address for containerd, and silences
// the JSON the shim package writes after Start returns.
func writeAddress(address string) error {
	if err := atomicfile.WriteFile("address", []byte(address), 0o600); err != nil {
		return fmt.Errorf("write shim address file: %w", err)
	}
	if _, err := io.WriteString(os.Stdout, address); err != nil {
		return fmt.Errorf("write shim address: %w", err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	os.Stdout = devnull
	return nil
}

// Stop is `shim delete`: containerd calls it when a shim died, to clean up after it. It
// removes the container's rootfs mount, the dead shim's socket and, for the sandbox's own
// container, the VM and all sandbox state.
func (m Manager) Stop(ctx context.Context, id string) (shim.StopStatus, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return shim.StopStatus{}, fmt.Errorf("shim delete: %w", err)
	}
	bundle := filepath.Join(filepath.Dir(cwd), id)
	if err := mount.UnmountRecursive(filepath.Join(bundle, "rootfs"), 0); err != nil {
		log.G(ctx).WithError(err).Warn("unmount rootfs")
	}
	// The overlay an unprivileged VMM saw instead of the rootfs directory (idmap.go), in
	// the bundle -bundle names (the OCI CLI's) or containerd's.
	idmapBundle := bundle
	if o, ok := ctx.Value(shim.OptsKey{}).(shim.Opts); ok && o.BundlePath != "" {
		idmapBundle = o.BundlePath
	}
	if err := (&container{id: id, bundle: idmapBundle, idmapped: true}).unmountIDMapped(); err != nil {
		log.G(ctx).WithError(err).Warn("unmount idmapped rootfs")
	}
	(&container{id: id, bundle: idmapBundle}).unmountVolumes(ctx) // volume_idmap.go
	group, err := sandboxIDOf(ctx, id)
	if err != nil {
		log.G(ctx).WithError(err).Warn("no bundle spec; taking the id as the sandbox's")
		group = id
	}
	o := m.options()
	removeDeadSockets(ctx, bundle, group, m.address(), o.SocketDir)
	if group == id {
		if err := sandbox.Cleanup(ctx, sandboxRootOf(o), id); err != nil && !errdefs.IsNotFound(err) {
			return shim.StopStatus{}, err
		}
	}
	return shim.StopStatus{ExitedAt: time.Now(), ExitStatus: 128 + int(syscall.SIGKILL)}, nil
}

// removeDeadSockets removes the socket of the sandbox's shim if that shim is gone: the
// address recorded in the bundle's address file and the one derived from the sandbox id
// and -socket-dir or containerd's -address (both empty: unknown). A socket some process
// still serves stays: the pod's other containers may use it.
func removeDeadSockets(ctx context.Context, bundle, group, address, socketDir string) {
	var addrs []string
	if a, err := shim.ReadAddress(filepath.Join(bundle, "address")); err == nil {
		addrs = append(addrs, a)
	}
	if address != "" || socketDir != "" {
		if a, err := socketAddress(ctx, address, socketDir, group); err == nil && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	for _, a := range addrs {
		if err := removeDeadSocket(a); err != nil {
			log.G(ctx).WithError(err).Warn("remove shim socket")
		}
	}
}

// removeDeadSocket removes the unix socket at address when no process listens on it any
// more (connecting is refused). A missing file, an abstract socket, a file that is not a
// socket and a socket that answers, or might (any other dial error), are left alone.
func removeDeadSocket(address string) error {
	path, ok := strings.CutPrefix(address, "unix://")
	if !ok {
		return nil // abstract: it went with its process
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("shim socket %s: %w", path, err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s is not a socket (mode %s): left in place", path, fi.Mode())
	}
	conn, err := unixsock.Dial(context.Background(), &net.Dialer{Timeout: time.Second}, path)
	if err == nil {
		conn.Close()
		return nil // a live shim serves it
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("shim socket %s: cannot tell whether a shim serves it: %w", path, err)
	}
	// Remove only the socket that was checked, not one a new shim bound meanwhile.
	if now, err := os.Lstat(path); err != nil || !os.SameFile(fi, now) {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove dead shim socket: %w", err)
	}
	return nil
}

// allowMountsAnnotation is the annotation of RuntimeInfo in which a shim lists the mount
// types it takes from containerd 2.x as the snapshotter gave them, instead of having
// containerd's mount manager mount or transform them on the host first.
const allowMountsAnnotation = "containerd.io/runtime-allow-mounts"

// allowedMounts are the mount types the shim takes unmounted: erofs layer files and the
// templated overlay over them ("format/..." and "mkdir/..."), which oci.RootfsDisks hands
// to the VM as disks and an overlay the guest builds. "mkfs/..." is not among them, so
// containerd still makes the file system of the erofs snapshotter's writable layer file.
const allowedMounts = "erofs,format/*,mkdir/*"

// Info describes the runtime to containerd (`shim -info`): its name, version, features
// and the mount types it takes unmounted.
func (m Manager) Info(ctx context.Context, _ io.Reader) (*types.RuntimeInfo, error) {
	f, err := typeurl.MarshalAnyToProto(Features())
	if err != nil {
		return nil, fmt.Errorf("encode runtime features: %w", err)
	}
	return &types.RuntimeInfo{
		Name:        RuntimeName,
		Version:     &types.RuntimeVersion{Version: version.Version},
		Features:    f,
		Annotations: map[string]string{allowMountsAnnotation: allowedMounts},
	}, nil
}

// sandboxRoot is where the shim process's sandboxes keep state: -sandbox-root, else the
// default root.
func sandboxRoot() string { return sandboxRootOf(shimproto.Lookup(flag.CommandLine)) }

// directVolumeRoot is where the shim process reads direct-assigned volumes:
// -direct-volume-root, else the default root.
func directVolumeRoot() string { return directVolumeRootOf(shimproto.Lookup(flag.CommandLine)) }

// directVolumeRootOf is the direct volume root the shim flags o name.
func directVolumeRootOf(o shimproto.Options) string {
	if o.DirectVolumeRoot != "" {
		return o.DirectVolumeRoot
	}
	return directvolume.DefaultRoot
}

// sandboxRootOf is the sandbox root the shim flags o name.
func sandboxRootOf(o shimproto.Options) string {
	if o.SandboxRoot != "" {
		return o.SandboxRoot
	}
	return persist.DefaultRoot
}
