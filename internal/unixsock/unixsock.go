// Package unixsock creates listening unix sockets with their final permissions and
// checks who is at the other end of a connection.
//
// A socket's file mode comes from its inode when bind(2) creates it (masked by the
// umask). Listen sets that mode on the socket before binding, so the file never exists
// with a wider mode: no window between bind and a chmod in which another user can
// connect, and no process-wide umask change that would race other goroutines.
package unixsock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// maxPathLen is the longest path a socket address holds (sun_path minus its NUL).
const maxPathLen = 107

// shortPath returns a name for path that fits in a socket address, and a release function
// to call once bind or connect is done. A longer path (a deep state directory, such as
// one under a rootless user's $XDG_RUNTIME_DIR) is reached through an O_PATH descriptor
// of its directory: /proc/self/fd/N/name.
func shortPath(path string) (string, func(), error) {
	if len(path) <= maxPathLen {
		return path, func() {}, nil
	}
	dir, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("socket path %s is longer than %d bytes: open its directory: %w", path, maxPathLen, err)
	}
	short := fmt.Sprintf("/proc/self/fd/%d/%s", dir, filepath.Base(path))
	if len(short) > maxPathLen {
		_ = unix.Close(dir)
		return "", nil, fmt.Errorf("socket name %s is longer than %d bytes: %w", filepath.Base(path), maxPathLen-len("/proc/self/fd/NNNN/"), errdefs.ErrInvalidArgument)
	}
	return short, func() { _ = unix.Close(dir) }, nil
}

// Dial connects to the stream socket at path with d, whatever the path's length.
func Dial(ctx context.Context, d *net.Dialer, path string) (net.Conn, error) {
	short, release, err := shortPath(path)
	if err != nil {
		return nil, err
	}
	defer release()
	conn, err := d.DialContext(ctx, "unix", short)
	if err != nil && short != path {
		return nil, fmt.Errorf("dial %s: %w", path, err)
	}
	return conn, err //nolint:wrapcheck // net's error names the path
}

// listenFile creates a listening stream socket at path with file mode perm and returns it.
func listenFile(path string, perm os.FileMode) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("listen %s: socket: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path) // owns fd from here
	if err := unix.Fchmod(fd, uint32(perm.Perm())); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("listen %s: set mode %v before bind: %w", path, perm.Perm(), err)
	}
	short, release, err := shortPath(path)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	err = unix.Bind(fd, &unix.SockaddrUnix{Name: short})
	release()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("listen %s: bind: %w", path, err)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return f, nil
}

// Listener is a listening unix socket that removes its file when closed, unless told not
// to (SetUnlinkOnClose).
type Listener struct {
	*net.UnixListener
	path string
	keep bool
}

// SetUnlinkOnClose sets whether Close removes the socket file (it does unless told not to).
func (l *Listener) SetUnlinkOnClose(unlink bool) { l.keep = !unlink }

// Close stops listening and removes the socket file unless SetUnlinkOnClose(false).
func (l *Listener) Close() error {
	err := l.UnixListener.Close()
	if l.keep {
		return err //nolint:wrapcheck // net's error names the socket
	}
	if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
		err = fmt.Errorf("remove socket: %w", rerr)
	}
	return err //nolint:wrapcheck // net's error names the socket
}

// Listen creates a listening stream socket at path with file mode perm (only the
// permission bits; the umask may clear more). The file must not exist. A path longer than
// a socket address holds is bound through its directory's descriptor.
func Listen(path string, perm os.FileMode) (*Listener, error) {
	f, err := listenFile(path, perm)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	l, err := net.FileListener(f) // dups the descriptor
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	// The Listener removes the file by its real path: the address the kernel reports may
	// be the /proc/self/fd name it was bound with.
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	return &Listener{UnixListener: ul, path: path}, nil
}

// ListenFile creates a listening socket at path with file mode perm, as Listen, for a child
// process to serve (QEMU, virtiofsd): it returns the socket's descriptor, and the file
// stays when the caller closes it; removing the file is the caller's once the child is
// done. A stale socket at path (left by a crashed run) is replaced; any other file there
// is an error.
func ListenFile(path string, perm os.FileMode) (*os.File, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket: %w", path, errdefs.ErrAlreadyExists)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	return listenFile(path, perm)
}

// PeerCred returns the credentials of the process at the other end of conn, as they
// were when it connected (SO_PEERCRED).
func PeerCred(conn *net.UnixConn) (*unix.Ucred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	var (
		cred    *unix.Ucred
		credErr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return nil, fmt.Errorf("peer credentials: %w", credErr)
	}
	return cred, nil
}

// RequireUID returns an error wrapping os.ErrPermission unless the peer of conn runs
// with effective uid uid.
func RequireUID(conn net.Conn, uid int) error {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("peer of a %T: want a unix socket: %w", conn, os.ErrPermission)
	}
	cred, err := PeerCred(uc)
	if err != nil {
		return err
	}
	if int64(cred.Uid) != int64(uid) {
		return fmt.Errorf("peer pid %d runs as uid %d, want uid %d: %w", cred.Pid, cred.Uid, uid, os.ErrPermission)
	}
	return nil
}
