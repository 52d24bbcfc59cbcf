// Package persist stores a sandbox's state on disk under <root>/<sandbox id>/state.json so a
// restarted shim or CLI can find the VM, its sockets and its containers again. Writes are
// atomic (temp file + rename); the format carries a version and newer versions are refused.
package persist

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
)

// Version of the on-disk format.
const Version = 1

// DefaultRoot is where sandboxes keep their state.
const DefaultRoot = "/run/vessel/sandboxes"

const stateFile = "state.json"

// Sandbox is the persisted state of one sandbox.
type Sandbox struct {
	Version    int                  `json:"version"`
	ID         string               `json:"id"`
	Created    time.Time            `json:"created"`
	Hypervisor string               `json:"hypervisor"`
	VMPid      int                  `json:"vm_pid"`
	State      string               `json:"state"`
	AgentKind  string               `json:"agent_kind"`
	AgentPath  string               `json:"agent_path,omitempty"`
	ShareDir   string               `json:"share_dir,omitempty"`
	Containers map[string]Container `json:"containers,omitempty"`

	// VMStartTime is the VMM's process start time (hypervisor.ProcessStartTime); with
	// VMPid it names the process exactly, also one not named after the sandbox (a VM
	// taken from the cache). 0 when unknown.
	VMStartTime uint64 `json:"vm_start_time,omitempty"`
}

// Container is the persisted state of one container.
type Container struct {
	ID     string `json:"id"`
	Bundle string `json:"bundle,omitempty"`
	Rootfs string `json:"rootfs"`
	State  string `json:"state"`
}

// Save writes s into dir atomically.
func Save(dir string, s *Sandbox) error {
	s.Version = Version
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode sandbox %s state: %w", s.ID, err)
	}
	tmp, err := os.CreateTemp(dir, stateFile+".*")
	if err != nil {
		return fmt.Errorf("save sandbox %s state: %w", s.ID, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("save sandbox %s state: %w", s.ID, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save sandbox %s state: %w", s.ID, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, stateFile)); err != nil {
		return fmt.Errorf("save sandbox %s state: %w", s.ID, err)
	}
	return nil
}

// Load reads the state in dir. A missing state is errdefs.ErrNotFound.
func Load(dir string) (*Sandbox, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("sandbox state in %s: %w", dir, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load sandbox state: %w", err)
	}
	var s Sandbox
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode sandbox state %s: %w", filepath.Join(dir, stateFile), err)
	}
	if s.Version > Version {
		return nil, fmt.Errorf("sandbox state %s has version %d, this vessel understands up to %d", dir, s.Version, Version)
	}
	return &s, nil
}
