// Package persist stores a sandbox's state on disk under <root>/<sandbox id>/state.json so a
// restarted shim or CLI can find the VM, its sockets and its containers again. Writes are
// atomic and durable (atomicfile).
//
// The file carries a format version. Load reads the current format and every earlier one,
// so that a newer shim or CLI manages the sandboxes an older one started; it refuses a
// newer format, a file without a version and a corrupt file with an error naming the file
// (and the version), never by pretending there is no state. Formats:
//
//	1  vm_start_time optional: absent or 0 when the VMM's start time was not known.
//	2  vm_start_time required whenever vm_pid is set: the VMM is known by its process
//	   identity (procid.ID) alone.
//
// Load reads a version-1 state into the current Sandbox type (Version says which format it
// came from) and the next Save rewrites it in the current format. A version-1 state without
// a start time keeps VMStartTime 0, which readers must treat as "this VMM cannot be
// identified" (sandbox.Cleanup then refuses to kill by guess), and which Save refuses.
package persist

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/atomicfile"
)

// Version of the on-disk format that Save writes.
const Version = 2

// DefaultRoot is where sandboxes keep their state.
const DefaultRoot = "/run/vessel/sandboxes"

const stateFile = "state.json"

// DebugSocketName is the socket in a sandbox's state directory through which `vessel debug`
// reaches the guest, when the sandbox was created with agent.debug_console_enabled
// (Sandbox.DebugConsole). The sandbox's owner (the shim) serves the agent's Debug service
// on it and relays each call to the agent over its own connection.
const DebugSocketName = "debug.sock"

// Sandbox is the persisted state of one sandbox.
type Sandbox struct {
	// Version is the format the state was read in (Load), or written in (Save).
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

	// VMStartTime is the VMM's process start time (procid.ID.StartTime); with VMPid it
	// names the process exactly. Save requires it when VMPid is set; it is 0 only in a
	// state Load read in format 1 that did not record it.
	VMStartTime uint64 `json:"vm_start_time"`

	// FSDaemonPid and FSDaemonStartTime name the sandbox's shared file system daemon
	// (virtiofsd) the same way, when it has one; both are 0 otherwise.
	FSDaemonPid       int    `json:"fs_daemon_pid,omitempty"`
	FSDaemonStartTime uint64 `json:"fs_daemon_start_time,omitempty"`

	// VMMIDLeaseDir is the directory of the lease (idrange) on the id slot the VMM runs
	// on, when it runs unprivileged; the lease names the sandbox's directory as its holder.
	VMMIDLeaseDir string `json:"vmm_id_lease_dir,omitempty"`

	// DebugConsole is set when the sandbox serves `vessel debug` (its debug.sock).
	DebugConsole bool `json:"debug_console,omitempty"`
	// VCPUs and MemoryMiB are the VM's size at boot; SharedFS is how the host's files
	// reach the guest ("virtio-9p", "virtio-fs").
	VCPUs     uint32 `json:"vcpus,omitempty"`
	MemoryMiB uint32 `json:"memory_mib,omitempty"`
	SharedFS  string `json:"shared_fs,omitempty"`

	// Error says why the VM stopped when nobody asked it to (a guest kernel panic, the
	// agent's crash, the VMM's death), with the end of the guest's console, escaped; the
	// state is then "stopped".
	Error string `json:"error,omitempty"`
}

// Container is the persisted state of one container.
type Container struct {
	ID     string `json:"id"`
	Bundle string `json:"bundle,omitempty"`
	Rootfs string `json:"rootfs"`
	State  string `json:"state"`
	// Mounts are the container's mounts as the guest makes them.
	Mounts []Mount `json:"mounts,omitempty"`
	// Devices are the host disks attached to the VM for the container.
	Devices []Device `json:"devices,omitempty"`
}

// Mount is one mount of a container, in the guest.
type Mount struct {
	Destination string `json:"destination"`
	Type        string `json:"type,omitempty"`
	Source      string `json:"source,omitempty"`
}

// Device is a host disk as the guest sees it.
type Device struct {
	ID string `json:"id"`
	// Type is the agent's device type ("blk", "scsi") and Address where the guest finds
	// it (PCI path or SCSI address).
	Type    string `json:"type"`
	Address string `json:"address"`
	// ContainerPath is the device node in the container, when the container has one.
	ContainerPath string `json:"container_path,omitempty"`
}

// Save writes s into dir atomically, in format Version. A state naming a VMM without its
// start time is refused: nothing could later tell that VMM from a process reusing its pid.
func Save(dir string, s *Sandbox) error {
	if s.VMPid > 0 && s.VMStartTime == 0 {
		return fmt.Errorf("save sandbox %s state: vm pid %d has no start time: %w", s.ID, s.VMPid, errdefs.ErrInvalidArgument)
	}
	if s.FSDaemonPid > 0 && s.FSDaemonStartTime == 0 {
		return fmt.Errorf("save sandbox %s state: file system daemon pid %d has no start time: %w", s.ID, s.FSDaemonPid, errdefs.ErrInvalidArgument)
	}
	s.Version = Version
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode sandbox %s state: %w", s.ID, err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, stateFile), data, 0o600); err != nil {
		return fmt.Errorf("save sandbox %s state: %w", s.ID, err)
	}
	return nil
}

// Load reads the state in dir, migrating an earlier format. A missing state is
// errdefs.ErrNotFound; any other error names the file.
func Load(dir string) (*Sandbox, error) {
	path := filepath.Join(dir, stateFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sandbox state %s: %w", path, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load sandbox state: %w", err)
	}
	s, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("sandbox state %s: %w", path, err)
	}
	return s, nil
}

// decode parses a state file of any format up to Version.
func decode(data []byte) (*Sandbox, error) {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("corrupt: %w", err)
	}
	switch {
	case head.Version == nil:
		return nil, errors.New("corrupt: no format version")
	case *head.Version < 1 || *head.Version > Version:
		return nil, fmt.Errorf("format version %d: this vessel reads versions 1 to %d: %w",
			*head.Version, Version, errdefs.ErrNotImplemented)
	}
	var s Sandbox
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("corrupt (format version %d): %w", *head.Version, err)
	}
	if s.ID == "" {
		return nil, fmt.Errorf("corrupt (format version %d): no sandbox id", s.Version)
	}
	if s.Version == 1 {
		// Format 1 has every field of format 2; only the start time may be missing.
		return &s, nil
	}
	if s.VMPid > 0 && s.VMStartTime == 0 {
		return nil, fmt.Errorf("corrupt (format version %d): vm pid %d without vm_start_time", s.Version, s.VMPid)
	}
	return &s, nil
}
