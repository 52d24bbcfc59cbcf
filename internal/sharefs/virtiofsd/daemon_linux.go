package virtiofsd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/jail"
	"github.com/vessel-containers/vessel/internal/procid"
	"github.com/vessel-containers/vessel/internal/unixsock"
)

// daemonCaps are the capabilities the daemon may hold when it execs: the file server's
// own set, which it keeps after its sandbox is set up (chown, dac_override, fowner,
// fsetid, setgid and setuid to act with the guest caller's credentials, setfcap; not
// mknod, which Args removes from its set too),
// plus sys_admin (unshare, mount and pivot_root for -o sandbox=namespace) and setpcap
// (dropping the rest from its bounding set), both of which it drops itself before it
// serves the guest.
var daemonCaps = []jail.Cap{
	jail.CapChown, jail.CapDACOverride, jail.CapFowner, jail.CapFsetid, jail.CapSetgid,
	jail.CapSetuid, jail.CapSetfcap, jail.CapSysAdmin, jail.CapSetpcap,
}

// daemonNofile bounds the daemon's descriptors: it holds one for every inode the guest
// has looked up and not forgotten, so a container walking a large tree needs many.
const daemonNofile = 1 << 20

// userNSCaps are daemonCaps for a daemon in a user namespace (Config.UserNS), without
// setfcap: through a mount idmapped into the namespace (hypervisor.vmm_file_ids =
// "container") the kernel would store a security.capability whose root is the host's,
// a file capability valid on the host; without it the guest's setcap fails with EPERM.
var userNSCaps = slices.DeleteFunc(slices.Clone(daemonCaps), func(c jail.Cap) bool { return c == jail.CapSetfcap })

// daemonRlimits: no core dumps (a core holds guest memory the daemon maps), a bound on
// descriptors, no POSIX message queues.
var daemonRlimits = []jail.Rlimit{
	{Resource: jail.RlimitCore, Value: 0},
	{Resource: jail.RlimitNofile, Value: daemonNofile},
	{Resource: jail.RlimitMsgqueue, Value: 0},
}

// maxSocketPath is the longest path a unix socket address holds (sun_path minus NUL).
const maxSocketPath = 107

// MaxLog bounds the daemon's log file: output beyond it is read and dropped (the file is
// usually on tmpfs, host memory, and the guest can make the daemon log).
const MaxLog = 1 << 20

const (
	// readyTimeout bounds Start's wait for the daemon's readiness message, in case the
	// caller's context has no deadline.
	readyTimeout = 30 * time.Second
	// reapTimeout bounds the wait for the daemon to be reaped after SIGKILL.
	reapTimeout = 10 * time.Second
	// drainTimeout bounds the wait for the last output once the daemon was reaped.
	drainTimeout = 5 * time.Second
	// tailBytes is how much of the log an error quotes.
	tailBytes = 2048
)

// ErrHungUp is in Err when the daemon exited with status 0: it does that when its VMM
// closes the connection, so the VMM's exit is the news, not the daemon's.
var ErrHungUp = errors.New("exit status 0: the VMM closed its connection")

// Daemon is one running virtiofsd. Its methods are safe for concurrent use.
type Daemon struct {
	cfg Config
	cmd *exec.Cmd
	id  procid.ID
	// exited is closed as soon as the daemon has been reaped.
	exited chan struct{}
	// done is closed once the daemon has been reaped and its output drained.
	done chan struct{}

	// mu guards stopRequested, unexpected and err.
	mu            sync.Mutex
	stopRequested bool
	// unexpected is set when the daemon exited before any stop request.
	unexpected bool
	err        error
}

// Start checks the binary, creates the socket and the log, starts the daemon and waits
// until it is ready for the VMM. On error nothing is left running and the socket is
// removed; an error after exec quotes the daemon's log.
func Start(ctx context.Context, cfg Config) (*Daemon, error) {
	args, err := Args(cfg)
	if err != nil {
		return nil, err
	}
	if err := checkBinary(cfg.Binary); err != nil {
		return nil, err
	}
	if len(cfg.Socket) > maxSocketPath {
		return nil, fmt.Errorf("virtiofsd socket path %s is longer than %d bytes; use a shorter state dir: %w", cfg.Socket, maxSocketPath, errdefs.ErrInvalidArgument)
	}
	sock, err := unixsock.ListenFile(cfg.Socket, 0o600) // the daemon owns it; wait removes the file
	if err != nil {
		return nil, err
	}
	defer sock.Close()
	if cfg.UserNS != nil {
		uid := int(cfg.UserNS.HostID(0))
		if err := os.Lchown(cfg.Socket, uid, uid); err != nil {
			_ = os.Remove(cfg.Socket)
			return nil, fmt.Errorf("give the virtiofsd socket to the vmm's ids: %w", err)
		}
	}
	logFile, err := os.OpenFile(cfg.Log, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		_ = os.Remove(cfg.Socket)
		return nil, fmt.Errorf("create virtiofsd log: %w", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		_ = logFile.Close()
		_ = os.Remove(cfg.Socket)
		return nil, fmt.Errorf("virtiofsd output pipe: %w", err)
	}

	var release func()
	caps := daemonCaps
	if cfg.UserNS != nil {
		caps = userNSCaps
	}
	spec := jail.Spec{
		Path: cfg.Binary, Args: args, KeepCaps: caps, ExtraFiles: 1, Rlimits: daemonRlimits,
	}
	if cfg.UserNS != nil {
		spec.Root = daemonRoot(cfg)
	}
	cmd, err := jail.Command(spec)
	var closeRoot func()
	if err == nil {
		cmd.ExtraFiles = []*os.File{sock}
		// The root's paths go as clones made here (jail.PassRoot): the daemon's ids
		// need not reach them. Closed once the entry holds its own copies, or on
		// failure.
		closeRoot, err = jail.PassRoot(cmd, spec)
	}
	if err == nil {
		cmd.Stdout, cmd.Stderr = pw, pw
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Cloneflags: syscall.CLONE_NEWPID}
		if r := cfg.UserNS; r != nil {
			// The pid and mount namespaces are created together with the user
			// namespace, and so owned by it: the entry builds the daemon's root
			// (daemonRoot) in the mount namespace, and the daemon's own sandbox setup
			// mounts /proc for the pid namespace.
			cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS
			cmd.SysProcAttr.UidMappings, cmd.SysProcAttr.GidMappings = r.Mappings(), r.Mappings()
			cmd.SysProcAttr.GidMappingsEnableSetgroups = true
			cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}}
		}
		// Pdeathsig ties the daemon to the thread that forks it: that thread stays
		// reserved until the daemon exited (wait releases it).
		release, err = jail.StartPinned(cmd)
		closeRoot()
		if err != nil {
			err = fmt.Errorf("exec %s in the jail entry: %w", cfg.Binary, err)
		}
	}
	_ = pw.Close() // the daemon has its copy; EOF comes when it and its children are gone
	if err != nil {
		_ = pr.Close()
		_ = logFile.Close()
		_ = os.Remove(cfg.Socket)
		return nil, err
	}

	d := &Daemon{cfg: cfg, cmd: cmd, exited: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan struct{})
	drained := make(chan struct{})
	go copyLog(pr, logFile, ready, drained) // owner: wait, which waits for drained
	go func() {                             // owner: d; returns once the daemon is reaped
		defer release()
		d.wait(drained)
	}()

	id, idErr := procid.Of(cmd.Process.Pid)
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	select {
	case <-ready:
		if idErr == nil {
			d.id = id
			log.G(ctx).WithField("pid", cmd.Process.Pid).WithField("socket", cfg.Socket).Debug("virtiofsd ready")
			return d, nil
		}
		err = fmt.Errorf("identify the virtiofsd process: %w", idErr)
	case <-d.exited:
		<-d.done
		return nil, fmt.Errorf("start virtiofsd: %w", d.Err())
	case <-rctx.Done():
		err = fmt.Errorf("wait for virtiofsd to be ready: %w", context.Cause(rctx))
	}
	_ = d.Stop(context.WithoutCancel(ctx))
	return nil, fmt.Errorf("start virtiofsd: %w%s", err, d.logTail())
}

// daemonRoot is the file system of a daemon in a user namespace (Config.UserNS): a
// minimal read-only root (jail.ProgramRoot: /usr, the top-level links into it, the
// loader cache, /proc, /dev/null, /dev/urandom, and the binary) holding the source,
// writable with its submounts and following the mounts the host adds there later, at
// its host path. Start clones each path as host root (jail.PassRoot), so the directories
// above the source need not be open to the daemon's ids. The daemon's own sandbox
// (-o sandbox=namespace) then mounts a /proc of its pid namespace over the root's,
// binds the source onto itself and pivots into it, as it would from the host's tree;
// its file server's mount table holds the view at the same place (sharefs.AttachIn).
// The socket needs no place in it: the daemon gets it as a descriptor.
func daemonRoot(cfg Config) *jail.Root {
	r := jail.ProgramRoot(cfg.Binary)
	r.Writable = append(r.Writable, cfg.Source)
	return r
}

// checkBinary reports a missing or unusable daemon binary by path.
func checkBinary(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("virtio_fs_daemon %s does not exist (Debian 12: apt install qemu-system-common): %w", path, errdefs.ErrNotFound)
		}
		return fmt.Errorf("virtio_fs_daemon %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("virtio_fs_daemon %s is not a regular file: %w", path, errdefs.ErrInvalidArgument)
	}
	if st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("virtio_fs_daemon %s is not executable: %w", path, errdefs.ErrInvalidArgument)
	}
	return nil
}

// copyLog writes the daemon's output to the log file, at most MaxLog bytes (the rest is
// read and dropped), closes ready when the readiness message appears, and closes drained
// at EOF.
func copyLog(r *os.File, w *os.File, ready, drained chan struct{}) {
	defer close(drained)
	defer r.Close()
	defer w.Close()
	lw := &limitWriter{w: w, n: MaxLog}
	br := bufio.NewReaderSize(r, 4096)
	isReady := false
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			_, _ = lw.Write(line)
			if !isReady && bytes.Contains(line, []byte(readyMessage)) {
				isReady = true
				close(ready)
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// limitWriter writes up to n bytes to w and drops the rest.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		q := p
		if int64(len(q)) > l.n {
			q = q[:l.n]
		}
		k, _ := l.w.Write(q)
		l.n -= int64(k)
	}
	return len(p), nil
}

// wait owns cmd.Wait: once the daemon (and with it its pid namespace) is gone it closes
// exited, waits for the last output, removes the socket, records why the daemon exited
// and closes done.
func (d *Daemon) wait(drained chan struct{}) {
	waitErr := d.cmd.Wait()
	d.mu.Lock()
	d.unexpected = !d.stopRequested
	d.mu.Unlock()
	close(d.exited)
	select {
	case <-drained:
	case <-time.After(drainTimeout):
	}
	_ = os.Remove(d.cfg.Socket)
	d.mu.Lock()
	if d.unexpected {
		status := ErrHungUp
		if waitErr != nil {
			status = waitErr
		}
		d.err = fmt.Errorf("virtiofsd (pid %d, serving %s) exited without a stop request (%w)%s", d.cmd.Process.Pid, d.cfg.Source, status, d.logTail())
	}
	d.mu.Unlock()
	close(d.done)
}

// logTail quotes the end of the daemon's log for an error.
func (d *Daemon) logTail() string {
	b, err := readTail(d.cfg.Log, tailBytes)
	if err != nil {
		return fmt.Sprintf("\n--- %s: %v ---", d.cfg.Log, err)
	}
	return fmt.Sprintf("\n--- %s (end) ---\n%s", d.cfg.Log, bytes.ToValidUTF8(bytes.TrimSpace(b), []byte("?")))
}

func readTail(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(st.Size()-n, 0)
	return io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
}

// Pid is the daemon's process id (in the caller's pid namespace).
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// ID is the daemon's process identity (pid and start time), for the persisted state.
func (d *Daemon) ID() procid.ID { return d.id }

// Done is closed once the daemon and everything it started have exited and been reaped.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Err is nil while the daemon runs and after an exit Stop asked for; otherwise it says
// how the daemon exited, with the end of its log.
func (d *Daemon) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// ExpectExit tells the daemon's owner that the daemon is about to exit because its VMM
// stops (the C daemon exits, status 0, when the VMM hangs up): that exit is not an error.
// Call it before stopping the VMM.
func (d *Daemon) ExpectExit() {
	d.mu.Lock()
	d.stopRequested = true
	d.mu.Unlock()
}

// Stop kills the daemon and waits until it is reaped. The daemon keeps no state worth a
// graceful exit, and the VMM is stopped first: its guest can no longer ask for anything.
// Stop is idempotent; after an exit nobody asked for it keeps that exit's Err.
func (d *Daemon) Stop(ctx context.Context) error {
	d.mu.Lock()
	select {
	case <-d.exited: // already gone: keep how it exited
		d.mu.Unlock()
		<-d.done
		return nil
	default:
	}
	d.stopRequested = true
	d.mu.Unlock()
	// os.Process signals through a pidfd: a recycled pid cannot be hit.
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-d.done:
		return nil
	case <-time.After(reapTimeout):
		return fmt.Errorf("virtiofsd pid %d not reaped %s after SIGKILL", d.cmd.Process.Pid, reapTimeout)
	case <-ctx.Done():
		return fmt.Errorf("stop virtiofsd pid %d: %w", d.cmd.Process.Pid, ctx.Err())
	}
}

// ServerPid is the pid of the file server: the process the daemon forked into the
// namespaces it made once the VMM connected (-o sandbox=namespace). Its mount namespace
// holds the daemon's copies of the source's mounts.
func (d *Daemon) ServerPid() (int, error) {
	pid := d.cmd.Process.Pid
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0, fmt.Errorf("virtiofsd pid %d: find its file server: %w", pid, err)
	}
	kids := strings.Fields(string(b))
	if len(kids) != 1 {
		return 0, fmt.Errorf("virtiofsd pid %d has %d child processes, want its one file server (has the VMM connected?)", pid, len(kids))
	}
	return strconv.Atoi(kids[0])
}
