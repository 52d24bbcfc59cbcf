package hypervisor

import (
	"context"
	"fmt"
	"os"
)

// This file holds block devices: how a VM's disks are configured (BlockConfig, part of
// Config) and attached to a running VM (DiskHotplugger, reported as
// Capabilities.BlockHotplug).

// BlockDriver is the guest device a disk is attached as.
type BlockDriver string

const (
	// BlockVirtioBlk is one virtio-blk PCI device per disk.
	BlockVirtioBlk BlockDriver = "virtio-blk"
	// BlockVirtioSCSI is one SCSI disk per disk on the VM's one virtio-scsi controller.
	BlockVirtioSCSI BlockDriver = "virtio-scsi"
)

// BlockAIO is how the VMM does I/O on a disk's host file.
type BlockAIO string

const (
	// AIOThreads runs each request in a worker thread (works everywhere).
	AIOThreads BlockAIO = "threads"
	// AIONative uses Linux native AIO; it needs CacheDirect.
	AIONative BlockAIO = "native"
	// AIOIOUring uses io_uring, where the kernel and the VMM have it.
	AIOIOUring BlockAIO = "io_uring"
)

// BlockConfig is how every disk of a VM is attached. The zero value is virtio-blk with
// the VMM's default I/O and caching.
type BlockConfig struct {
	// Driver is the guest device; empty means BlockVirtioBlk.
	Driver BlockDriver
	// AIO is the host I/O mechanism; empty means the driver's default (threads).
	AIO BlockAIO
	// CacheDirect opens the host file with O_DIRECT (no host page cache).
	CacheDirect bool
	// CacheNoFlush ignores the guest's flush requests (data may be lost on a host crash).
	CacheNoFlush bool
	// MaxBytesPerSec and MaxIOPS limit each disk's I/O, reads and writes together; 0 is
	// no limit.
	MaxBytesPerSec uint64
	MaxIOPS        uint64
}

func (b BlockConfig) validate() error {
	switch b.Driver {
	case "", BlockVirtioBlk, BlockVirtioSCSI:
	default:
		return fmt.Errorf("block driver %q: want %s or %s", b.Driver, BlockVirtioBlk, BlockVirtioSCSI)
	}
	switch b.AIO {
	case "", AIOThreads, AIOIOUring:
	case AIONative:
		if !b.CacheDirect {
			return fmt.Errorf("block aio %s needs direct caching (O_DIRECT)", b.AIO)
		}
	default:
		return fmt.Errorf("block aio %q: want %s, %s or %s", b.AIO, AIOThreads, AIONative, AIOIOUring)
	}
	return nil
}

// Disk is a host block device or file to attach to a running VM.
type Disk struct {
	// ID names the disk for the VMM and for DetachDisk: letters, digits, '-' and '_', at
	// most 32 bytes.
	ID string
	// File is the device or regular file, opened by the caller: O_RDONLY for a read-only
	// disk, O_RDWR otherwise. The driver passes a copy of the descriptor to the VMM (which
	// may not be allowed to open host paths itself); the caller keeps ownership and may
	// close it once AttachDisk returned.
	File *os.File
	// ReadOnly attaches the disk read-only: the guest cannot write it.
	ReadOnly bool
}

// Validate reports what makes the disk unusable.
func (d Disk) Validate() error {
	if d.ID == "" || len(d.ID) > 32 || !validName(d.ID) {
		return fmt.Errorf("disk id %q: want 1 to 32 letters, digits, '-' and '_'", d.ID)
	}
	if d.File == nil {
		return fmt.Errorf("disk %s: no file", d.ID)
	}
	return nil
}

// DiskAddress is where an attached disk appears in the guest: exactly one field is set.
type DiskAddress struct {
	// PCIPath (virtio-blk) is the chain of PCI slots from the root bus to the disk's
	// device, as two-digit hexadecimal slot numbers joined by '/' (e.g. "1e/01": slot 0x1e
	// of the root bus is a bridge, the disk is in its slot 1). The guest finds the disk under
	// /sys/devices/pci0000:00/0000:00:1e.0/0000:XX:01.0.
	PCIPath string
	// SCSIAddress (virtio-scsi) is "<scsi-id>:<lun>" on the VM's one virtio-scsi
	// controller (channel 0). The guest finds the disk under its SCSI host as
	// target<H>:0:<scsi-id>/<H>:0:<scsi-id>:<lun>.
	SCSIAddress string
}

// DiskHotplugger is a VM that attaches disks while it runs.
type DiskHotplugger interface {
	// AttachDisk attaches d and returns where the guest finds it. An id already attached is
	// an error wrapping errdefs.ErrAlreadyExists; a setting the VMM or the host cannot do
	// (an AIO mode, for example) one wrapping errdefs.ErrNotImplemented. On error nothing
	// of d is left in the VM.
	AttachDisk(ctx context.Context, d Disk) (DiskAddress, error)
	// DetachDisk removes the disk: it asks the guest to release the device, waits until it
	// did (until ctx ends), then drops the host side. An unknown id is an error wrapping
	// errdefs.ErrNotFound.
	DetachDisk(ctx context.Context, id string) error
	// Disks lists the ids of the attached disks as the VMM reports them, sorted.
	Disks(ctx context.Context) ([]string, error)
}

// DiskResizer is a VM whose attached disks can be grown while it runs.
type DiskResizer interface {
	// ResizeDisk sets the size in bytes (a multiple of 512) of attached disk id as the
	// guest sees it; the guest is told of the change (virtio-blk's configuration change).
	// A disk backed by a regular file grows the file; a block device cannot grow beyond
	// its size. An unknown id is an error wrapping errdefs.ErrNotFound.
	ResizeDisk(ctx context.Context, id string, size uint64) error
}
