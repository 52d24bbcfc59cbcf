// Package unixsock creates listening unix sockets with their final permissions and
// checks who is at the other end of a connection.
//
// A socket's file mode comes from its inode when bind(2) creates it (masked by the
// umask). Listen sets that mode on the socket before binding, so the file never exists
// with a wider mode: no window between bind and a chmod in which another user can
// connect, and no process-wide umask change that would race other goroutines.
package unixsock

import (
	"fmt"
	"io/fs"
	"net"
	"os"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Listen creates a listening stream socket at path with file mode perm (only the
// permission bits; the umask may clear more). The file must not exist.
func Listen(path string, perm os.FileMode) (*net.UnixListener, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("listen %s: socket: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path) // owns fd from here
	defer f.Close()
	if err := unix.Fchmod(fd, uint32(perm.Perm())); err != nil {
		return nil, fmt.Errorf("listen %s: set mode %v before bind: %w", path, perm.Perm(), err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return nil, fmt.Errorf("listen %s: bind: %w", path, err)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	l, err := net.FileListener(f) // dups the descriptor
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	ul := l.(*net.UnixListener)
	// net.FileListener does not know that this listener created the file.
	ul.SetUnlinkOnClose(true)
	return ul, nil
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
	l, err := Listen(path, perm)
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false)
	f, err := l.File()
	_ = l.Close()
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("listener %s: %w", path, err)
	}
	return f, nil
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
