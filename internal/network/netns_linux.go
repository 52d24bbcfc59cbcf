package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetNSName is the file in the sandbox directory where CreateNetNS pins the network
// namespace it makes.
const NetNSName = "netns"

// CreateNetNS makes a new network namespace for a spec that asks for one without a path
// (runc would make it for the container), pins it at NetNSName in dir and returns that
// path. The namespace has only loopback until the manager puts interfaces there, from a
// hook (nerdctl) or later. RemoveNetNS (and Teardown) unpins it.
func CreateNetNS(dir string) (string, error) {
	path := filepath.Join(dir, NetNSName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o400)
	if err != nil {
		return "", fmt.Errorf("create network namespace: pin file: %w", err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() { // owner: CreateNetNS, which waits for the result
		// As InNetNS: the thread goes back when it can, and otherwise ends locked with
		// this goroutine.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("pin at %s: %w", path, err)
		} else {
			errc <- nil
		}
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return "", fmt.Errorf("create network namespace: %w", err)
	}
	return path, nil
}

// RemoveNetNS unpins the namespace CreateNetNS made in dir and removes the pin file; the
// namespace goes with its last user. No pin file is not an error.
func RemoveNetNS(dir string) error {
	path := filepath.Join(dir, NetNSName)
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpin network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove network namespace pin %s: %w", path, err)
	}
	return nil
}

// InNetNSPath is InNetNS with the namespace pinned at path; a namespace that does not
// exist is ErrNotFound. A process that fn starts is in the namespace: a child inherits the
// network namespace of the thread that forks it.
func InNetNSPath(path string, fn func() error) error {
	ns, err := openNetNS(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	return InNetNS(ns, fn)
}

// InNetNS runs fn on an OS thread of its own in the network namespace ns and waits for
// it. The thread then goes back to the namespace it came from; when it cannot (a shim in a
// user namespace, rootless, may not enter the host's namespace again) it stays locked, so
// the runtime ends it with its goroutine instead of running other code in ns.
func InNetNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() { // owner: InNetNS, which waits for the result
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		errc <- fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return <-errc
}
