// Package directvolume keeps the records of direct-assigned volumes: a volume path (the
// directory a container mounts, as a Kubernetes CSI driver publishes it) whose backing
// host block device or image file goes to the pod's VM as a disk instead of being shared
// as files. `vessel direct-volume add` writes a record and `remove` deletes it; the shim
// looks a container's bind mount sources up and attaches the recorded device, and notes
// which sandbox holds it, so that `vessel direct-volume stats` can ask that sandbox.
//
// A record is a directory under the root named by the volume path in unpadded URL-safe
// base64, holding mountInfo.json (Kata Containers' direct-volume format, so drivers
// written for kata-runtime direct-volume can write it too) and, once a sandbox uses the
// volume, a file "sandbox" with the sandbox's id.
package directvolume

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/atomicfile"
)

// DefaultRoot is where the records live unless a shim or the CLI is told otherwise.
const DefaultRoot = "/run/vessel/direct-volumes"

const (
	infoFile    = "mountInfo.json"
	sandboxFile = "sandbox"
)

// MountInfo is what is attached for a volume and how the guest mounts it.
type MountInfo struct {
	// VolumeType is "block" (the only type) or empty.
	VolumeType string `json:"volume-type,omitempty"`
	// Device is the host block device or regular file attached to the VM.
	Device string `json:"device"`
	// FSType is the file system on Device the guest mounts (ext4, xfs, ...).
	FSType string `json:"fstype"`
	// Metadata is kept for the driver that wrote the record; Vessel does not read it.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Options are the guest's mount options of the file system.
	Options []string `json:"options,omitempty"`
}

// Validate checks what Add and Lookup accept: a volume type of "block" or none, an
// absolute clean device path, and a file system type.
func (m *MountInfo) Validate() error {
	if m.VolumeType != "" && m.VolumeType != "block" {
		return fmt.Errorf("volume-type %q: only \"block\" is supported: %w", m.VolumeType, errdefs.ErrNotImplemented)
	}
	if !filepath.IsAbs(m.Device) || filepath.Clean(m.Device) != m.Device {
		return fmt.Errorf("device %q: want an absolute, clean path of a host block device or image file: %w", m.Device, errdefs.ErrInvalidArgument)
	}
	if m.FSType == "" {
		return fmt.Errorf("fstype is empty (the device's file system, e.g. ext4): %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// dir is the record directory of volumePath under root.
func dir(root, volumePath string) (string, error) {
	if !filepath.IsAbs(volumePath) {
		return "", fmt.Errorf("volume path %q is not absolute: %w", volumePath, errdefs.ErrInvalidArgument)
	}
	return filepath.Join(root, base64.RawURLEncoding.EncodeToString([]byte(filepath.Clean(volumePath)))), nil
}

// Add records info for volumePath; a volume recorded already is refused.
func Add(root, volumePath string, info MountInfo) error {
	if err := info.Validate(); err != nil {
		return fmt.Errorf("direct volume %s: %w", volumePath, err)
	}
	d, err := dir(root, volumePath)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("direct volume root: %w", err)
	}
	if err := os.Mkdir(d, 0o700); errors.Is(err, os.ErrExist) {
		return fmt.Errorf("direct volume %s is recorded already: %w", volumePath, errdefs.ErrAlreadyExists)
	} else if err != nil {
		return fmt.Errorf("direct volume %s: %w", volumePath, err)
	}
	data, err := json.Marshal(info)
	if err != nil {
		os.Remove(d)
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(d, infoFile), data, 0o600); err != nil {
		os.RemoveAll(d)
		return fmt.Errorf("direct volume %s: %w", volumePath, err)
	}
	return nil
}

// Remove deletes the record of volumePath.
func Remove(root, volumePath string) error {
	d, err := dir(root, volumePath)
	if err != nil {
		return err
	}
	if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("direct volume %s is not recorded: %w", volumePath, errdefs.ErrNotFound)
	}
	return os.RemoveAll(d)
}

// Lookup returns the record of volumePath, or an error satisfying errdefs.IsNotFound.
func Lookup(root, volumePath string) (*MountInfo, error) {
	d, err := dir(root, volumePath)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(d, infoFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("direct volume %s is not recorded: %w", volumePath, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("direct volume %s: %w", volumePath, err)
	}
	var info MountInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("direct volume %s: %s: %w", volumePath, infoFile, err)
	}
	if err := info.Validate(); err != nil {
		return nil, fmt.Errorf("direct volume %s: %w", volumePath, err)
	}
	return &info, nil
}

// SetSandbox records that sandbox id uses volumePath.
func SetSandbox(root, volumePath, id string) error {
	d, err := dir(root, volumePath)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(d, sandboxFile), []byte(id), 0o600)
}

// SandboxOf returns the id of the sandbox using volumePath, or an error satisfying
// errdefs.IsNotFound when the volume is not recorded or no sandbox uses it yet.
func SandboxOf(root, volumePath string) (string, error) {
	d, err := dir(root, volumePath)
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(filepath.Join(d, sandboxFile))
	if errors.Is(err, os.ErrNotExist) {
		if _, err := Lookup(root, volumePath); err != nil {
			return "", err
		}
		return "", fmt.Errorf("direct volume %s is not used by a sandbox yet: %w", volumePath, errdefs.ErrNotFound)
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

// Stats is the usage of a volume's file system in the guest, as the shim answers it
// (shimproto.DirectVolumeStatsPath) and `vessel direct-volume stats` prints it.
type Stats struct {
	BytesTotal     uint64 `json:"bytes_total"`
	BytesFree      uint64 `json:"bytes_free"`
	BytesAvailable uint64 `json:"bytes_available"`
	InodesTotal    uint64 `json:"inodes_total"`
	InodesFree     uint64 `json:"inodes_free"`
}

// ClearSandbox forgets that sandbox id uses volumePath (after the sandbox ended); a
// record that names another sandbox, or none, is left as it is.
func ClearSandbox(root, volumePath, id string) error {
	d, err := dir(root, volumePath)
	if err != nil {
		return err
	}
	p := filepath.Join(d, sandboxFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(data)) != id {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
