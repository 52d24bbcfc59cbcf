package qemu

import (
	"fmt"
	"os"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/jail"
)

// A VMM with a user namespace (hypervisor.Config.UserNS) is root of a namespace whose
// uids and gids 0 to Size-1 are the sandbox's unprivileged host ids: the clone that
// starts the jail entry creates the namespace, this process writes its maps, and the
// entry drops every supplementary group before it runs. The capabilities it keeps
// (qemuUserNSCaps) are capabilities in that namespace: over files owned by the
// sandbox's ids, never over the host's. What the guest creates through the 9p server is
// owned by the sandbox's host ids; a container's image files are presented through
// idmapped mounts (the caller's), so that they appear with their image owners.

// kvmDevice is the KVM device QEMU opens by path.
const kvmDevice = "/dev/kvm"

// jailRoot is the file system of a VMM with a user namespace: its own mount namespace
// whose read-only root holds /usr (QEMU, its libraries and firmware), the top-level
// links into it, /proc, the few devices it opens, the kernel and initrd, and the shared
// directory (9p: writable, following the containers' mounts the host adds later) or
// virtiofsd's socket, each at its host path. The driver clones each path (jail.PassRoot)
// as host root, so the directories above them need not be open to the VMM's ids.
func jailRoot(cfg *hypervisor.Config, binary string, accel hypervisor.Accelerator) *jail.Root {
	r := jail.ProgramRoot(binary)
	r.ReadOnly = append(r.ReadOnly, cfg.Kernel)
	if cfg.Initrd != "" {
		r.ReadOnly = append(r.ReadOnly, cfg.Initrd)
	}
	if templateMode(cfg) == hypervisor.TemplateRestore { // the state comes as a descriptor
		r.ReadOnly = append(r.ReadOnly, cfg.Template.MemoryPath)
	}
	if e := cfg.EntropySource; e != "" && e != "/dev/urandom" {
		r.ReadOnly = append(r.ReadOnly, e)
	}
	if accel == hypervisor.AccelKVM {
		r.ReadOnly = append(r.ReadOnly, kvmDevice)
	}
	switch cfg.SharedFS {
	case hypervisor.SharedFS9P:
		r.Writable = append(r.Writable, cfg.SharedDir)
	case hypervisor.SharedFSVirtioFS:
		r.ReadOnly = append(r.ReadOnly, cfg.VirtioFSSocket) // connecting is not writing the mount
	}
	return r
}

// qemuUserNSCaps are qemuCaps without mknod and setfcap. A user namespace cannot create
// device nodes at all, so mknod would only be an unused capability. setfcap would let the
// 9p server write security.capability: through a mount idmapped into the namespace
// (hypervisor.vmm_file_ids = "container", where the namespace's root is host uid 0 on
// disk) the kernel stores a file capability whose root is the host's, valid for any host
// process that runs the file; without setfcap the guest's setcap fails with EPERM.
var qemuUserNSCaps = []jail.Cap{
	jail.CapChown, jail.CapDACOverride, jail.CapFowner, jail.CapFsetid,
}

// userNSAttr makes attr start the VMM in a user namespace mapped onto r, and in a mount
// namespace owned by it (for jailRoot). Under KVM the
// group of /dev/kvm is mapped in as well (namespace gid r.Size) and kept as the VMM's
// only supplementary group, when the device is not open to everyone.
func userNSAttr(attr *syscall.SysProcAttr, r idrange.Range, accel hypervisor.Accelerator) error {
	attr.Cloneflags |= syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS
	attr.UidMappings = r.Mappings()
	attr.GidMappings = r.Mappings()
	attr.GidMappingsEnableSetgroups = true
	cred := &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}}
	if accel == hypervisor.AccelKVM {
		var st unix.Stat_t
		if err := unix.Stat(kvmDevice, &st); err != nil {
			return fmt.Errorf("stat %s: %w", kvmDevice, err)
		}
		if st.Mode&0o006 != 0o006 {
			if st.Gid == 0 || st.Mode&0o060 != 0o060 {
				return fmt.Errorf("%s (gid %d, mode %#o) is open to neither everyone nor a group other than root: an unprivileged VMM cannot use it (hypervisor.vmm_id_range): %w",
					kvmDevice, st.Gid, st.Mode&0o777, errdefs.ErrFailedPrecondition)
			}
			attr.GidMappings = append(attr.GidMappings, syscall.SysProcIDMap{ContainerID: int(r.Size), HostID: int(st.Gid), Size: 1})
			cred.Groups = []uint32{r.Size}
		}
	}
	attr.Credential = cred
	return nil
}

// checkReadable reports a file that host uid and gid cannot read as an unprivileged user
// with no supplementary groups: the VMM's capabilities count only over files owned by
// its own ids. The directories above it do not matter: the VMM reaches it through the
// clone in its root (jailRoot).
func checkReadable(what, path string, uid, gid uint32) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	var have uint32
	switch {
	case st.Uid == uid:
		have = (st.Mode >> 6) & 7
	case st.Gid == gid:
		have = (st.Mode >> 3) & 7
	default:
		have = st.Mode & 7
	}
	if have&4 == 0 {
		return fmt.Errorf("%s %s (uid %d gid %d mode %#o) is not readable by the VMM's host uid %d (hypervisor.vmm_id_range): %w",
			what, path, st.Uid, st.Gid, st.Mode&0o7777, uid, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// checkUserNS checks that a VMM with cfg.UserNS can open what it opens by path in its
// root: the kernel and the initrd. (The export is the VMM's own, given to its ids by the
// sandbox.)
func checkUserNS(cfg *hypervisor.Config) error {
	r := cfg.UserNS
	if r == nil {
		return nil
	}
	uid := r.HostID(0)
	if err := checkReadable("kernel", cfg.Kernel, uid, uid); err != nil {
		return err
	}
	if cfg.Initrd != "" {
		if err := checkReadable("initrd", cfg.Initrd, uid, uid); err != nil {
			return err
		}
	}
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		return fmt.Errorf("user namespaces (hypervisor.vmm_id_range): %w", err)
	}
	return nil
}
