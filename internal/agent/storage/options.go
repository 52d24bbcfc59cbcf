//go:build linux

package storage

import (
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
)

// flagOptions are the mount(8) flag words every mounting driver accepts (mountFlags).
// "bind" and "rbind" are not among them: no driver bind-mounts, and a bind option would
// turn a storage's source into a guest path to expose.
var flagOptions = []string{
	"ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "sync", "async",
	"dirsync", "noatime", "atime", "nodiratime", "diratime", "relatime", "norelatime",
	"strictatime", "defaults",
}

// driverOptions lists, per driver, the filesystem options (the word before "=") it passes
// to the kernel besides flagOptions; anything else is refused. "local" mounts nothing and
// takes only its directory's mode and owner.
var driverOptions = map[string][]string{
	// fs/9p/v9fs.c; trans must be virtio (checked in checkOptions): fd and tcp
	// transports would reach other endpoints than the host's export.
	"9p": {"trans", "version", "msize", "cache", "access", "posixacl", "uname", "aname",
		"dfltuid", "dfltgid", "locktimeout", "noextend"},
	// fs/fuse/virtio_fs.c and the fuse options it shares.
	"virtiofs": {"dax", "default_permissions", "allow_other"},
	// Disk file systems (diskOptions).
	"blk":  diskOptions,
	"scsi": diskOptions,
	// fs/overlayfs/super.c; the directories are checked and opened by overlayDirs.
	"overlay": {"lowerdir", "upperdir", "workdir", "index", "redirect_dir", "metacopy", "xino",
		"volatile", "userxattr", "uuid", "nfs_export"},
	// mm/shmem.c (tmpfs).
	"ephemeral": {"size", "nr_blocks", "nr_inodes", "mode", "uid", "gid", "huge", "mpol",
		"inode32", "inode64", "noswap"},
	// fs/hugetlbfs/inode.c; pagesize and size are required (hugePagesOf). min_size is not
	// taken: the driver reserves the pages itself.
	"hugetlbfs": {"pagesize", "size", "nr_inodes", "mode", "uid", "gid"},
}

// diskOptions are the options of disk file systems that the blk and scsi drivers accept:
// those of ext4 (fs/ext4/super.c) and xfs that concern integrity, journaling and quotas.
var diskOptions = []string{"errors", "discard", "nodiscard", "data", "barrier", "nobarrier", "commit",
	"noload", "norecovery", "nouuid", "user_xattr", "acl", "noacl", "journal_checksum",
	"init_itable", "noinit_itable", "usrquota", "grpquota", "prjquota", "quota", "noquota",
	"lazytime", "nolazytime", "delalloc", "nodelalloc", "logbufs", "logbsize"}

// checkOptions refuses an option that driver does not take, naming both.
func checkOptions(driver string, opts []string) error {
	for _, o := range opts {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		key, val, _ := strings.Cut(o, "=")
		if driver == "local" {
			if key != "mode" && key != "uid" && key != "gid" {
				return fmt.Errorf("%w: %s storage: option %q is not accepted (it takes only mode=<octal>, uid=<n> and gid=<n>)", errdefs.ErrInvalidArgument, driver, o)
			}
			continue
		}
		allowed, known := driverOptions[driver]
		if !known {
			return nil // planFor refuses the driver itself
		}
		if !strings.Contains(o, "=") && slices.Contains(flagOptions, o) {
			continue
		}
		if !slices.Contains(allowed, key) {
			return fmt.Errorf("%w: %s storage: option %q is not one of its options (%s, or one of %s)",
				errdefs.ErrInvalidArgument, driver, o, strings.Join(allowed, ", "), strings.Join(flagOptions, ", "))
		}
		if driver == "9p" && key == "trans" && val != "virtio" {
			return fmt.Errorf("%w: 9p storage: option %q: the only transport is trans=virtio", errdefs.ErrInvalidArgument, o)
		}
	}
	return nil
}
