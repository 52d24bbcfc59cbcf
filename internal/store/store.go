// Package store keeps the vessel CLI's per-container state under its --root directory:
// <root>/containers/<id>/state.json, written atomically. The container's directory also
// holds its stdio FIFOs, the working directory and log of the shim the CLI started for
// it, and the logs of its stand-in processes. A flock on the directory serializes the verbs
// that change a container (create, start, delete, pause, resume, update) across
// concurrent vessel processes; verbs that only read (state, list, ps, events) or only
// signal (kill, exec) do not take it, so they never wait for a VM to boot.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/atomicfile"
)

// Status is the CLI's own record of where create got to; the live status of a created
// container comes from its shim.
type Status string

const (
	// Creating: create is in progress, or the vessel that ran it died.
	Creating Status = "creating"
	// Created: create finished; the shim knows the container.
	Created Status = "created"
)

// Version is the format of state.json this vessel writes. Format 1 is the first; files
// written before the field existed have none and are format 1. A newer format is refused
// with an error naming it, never read as if it were this one.
const Version = 1

// Container is the persisted state of one container.
type Container struct {
	// Version is the file's format (Version when saved; 0 in files from before it).
	Version   int       `json:"version,omitempty"`
	ID        string    `json:"id"`
	SandboxID string    `json:"sandbox_id"`
	Bundle    string    `json:"bundle"`
	Rootfs    string    `json:"rootfs"`
	Created   time.Time `json:"created"`
	Status    Status    `json:"status"`
	// Pid is the host process that stands for the container's init process; PidStart is
	// its start time, so a recycled pid is never mistaken for it.
	Pid      int    `json:"pid,omitempty"`
	PidStart uint64 `json:"pid_start,omitempty"`
	// ShimAddress and ShimPid name the shim serving the container's sandbox.
	ShimAddress  string `json:"shim_address,omitempty"`
	ShimPid      int    `json:"shim_pid,omitempty"`
	ShimPidStart uint64 `json:"shim_pid_start,omitempty"`
	// OwnedBundle is set when vessel made the bundle (`vessel run` without one) and
	// removes it with the container.
	OwnedBundle bool `json:"owned_bundle,omitempty"`
	// Spec is config.json as it was at create: hooks, process and annotations.
	Spec *specs.Spec `json:"spec"`
}

const stateFile = "state.json"

// Store is the state directory of one --root.
type Store struct {
	dir string
}

// New returns the store under root.
func New(root string) Store { return Store{dir: filepath.Join(root, "containers")} }

// Dir is the directory of container id.
func (s Store) Dir(id string) string { return filepath.Join(s.dir, id) }

// Lock is a held lock on a container's directory.
type Lock struct {
	f *os.File
}

// Unlock releases the lock: closing the directory's only descriptor releases the flock,
// and closing a read-only descriptor cannot fail in a way that keeps the lock.
func (l *Lock) Unlock() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Close()
	l.f = nil
}

// Create makes the directory of a new container and returns it locked. A container that
// exists is errdefs.ErrAlreadyExists.
func (s Store) Create(id string) (*Lock, error) {
	if err := os.MkdirAll(s.dir, 0o711); err != nil {
		return nil, fmt.Errorf("create state root: %w", err)
	}
	if err := os.Mkdir(s.Dir(id), 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("container with id exists: %s: %w", id, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("create container state dir: %w", err)
	}
	l, err := s.lock(id, unix.LOCK_EX)
	if err != nil {
		os.Remove(s.Dir(id))
		return nil, err
	}
	return l, nil
}

// Lock waits for the exclusive lock of an existing container. A container that does not
// exist, or was removed while we waited, is errdefs.ErrNotFound.
func (s Store) Lock(id string) (*Lock, error) { return s.lock(id, unix.LOCK_EX) }

func (s Store) lock(id string, how int) (*Lock, error) {
	dir := s.Dir(id)
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, notExist(id)
	}
	if err != nil {
		return nil, fmt.Errorf("open container state dir: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("container %s is locked by another vessel: %w", id, errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("lock container %s: %w", id, err)
	}
	// The directory may have been removed while we waited: then the lock guards nothing.
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Nlink == 0 {
		f.Close()
		return nil, notExist(id)
	}
	return &Lock{f: f}, nil
}

// Busy reports whether another vessel holds the container's lock (create in progress).
func (s Store) Busy(id string) bool {
	l, err := s.lock(id, unix.LOCK_SH|unix.LOCK_NB)
	if err != nil {
		return errdefs.IsUnavailable(err)
	}
	l.Unlock()
	return false
}

func notExist(id string) error {
	return fmt.Errorf("container %s does not exist: %w", id, errdefs.ErrNotFound)
}

// Save writes the container's state atomically.
func (s Store) Save(c *Container) error {
	c.Version = Version
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state of %s: %w", c.ID, err)
	}
	if err := atomicfile.WriteFile(filepath.Join(s.Dir(c.ID), stateFile), data, 0o600); err != nil {
		return fmt.Errorf("save state of %s: %w", c.ID, err)
	}
	return nil
}

// Load reads a container's state. A container without state is errdefs.ErrNotFound.
func (s Store) Load(id string) (*Container, error) {
	data, err := os.ReadFile(filepath.Join(s.Dir(id), stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, notExist(id)
	}
	if err != nil {
		return nil, fmt.Errorf("load state of %s: %w", id, err)
	}
	var c Container
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("decode state of %s: %w", id, err)
	}
	if c.Version > Version {
		return nil, fmt.Errorf("state of %s (%s) has format %d; this vessel reads formats up to %d: use the vessel that created the container",
			id, filepath.Join(s.Dir(id), stateFile), c.Version, Version)
	}
	if c.Version == 0 {
		c.Version = 1 // written before the format was recorded: the same fields
	}
	return &c, nil
}

// Remove deletes the container's directory. Call it with the lock held.
func (s Store) Remove(id string) error {
	if err := os.RemoveAll(s.Dir(id)); err != nil {
		return fmt.Errorf("remove state of %s: %w", id, err)
	}
	return nil
}

// List returns the ids of every container, sorted.
func (s Store) List() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Owner is the user owning the container's state, as runc reports it ("#<uid>" when the
// uid has no name).
func (s Store) Owner(id string) string {
	fi, err := os.Stat(s.Dir(id))
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return userName(st.Uid)
}

func userName(uid uint32) string {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return fmt.Sprintf("#%d", uid)
	}
	return u.Username
}
