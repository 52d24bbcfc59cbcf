// Package virtiofsd runs the virtio-fs file server of one VM: the C virtiofsd that QEMU
// ships (Debian 12: /usr/lib/qemu/virtiofsd from QEMU 7.2), serving one directory over a
// vhost-user socket that the VMM connects to.
//
// The driver creates the listening socket (mode 0600) and hands it to the daemon as a
// descriptor (--fd), so no other process can bind the path first. The daemon runs
// confined:
//
//   - started through the jail entry (package jail): no_new_privs, resource limits, only
//     its own descriptors, and only the capabilities it uses (daemonCaps);
//   - as pid 1 of a new pid namespace, so that killing it ends everything it started
//     (the kernel kills and reaps the rest of the namespace before the daemon's exit is
//     reported), and a parent-death signal kills it with its owner;
//   - on unprivileged ids (Config.UserNS): in a user and mount namespace of its own whose
//     root is a minimal read-only one holding the source at its host path (daemonRoot),
//     passed as clones made by the caller (jail.PassRoot), so no directory above the
//     source needs to be open to those ids;
//   - in its own sandbox (-o sandbox=namespace): after the VMM connects it unshares mount,
//     pid and network namespaces, pivots into the shared directory, unmounts the rest of
//     the host's tree, drops its capabilities to the file server's set and installs its
//     seccomp filter.
//
// Start returns once the daemon waits for the VMM's connection (it says so on stderr:
// the one real event it reports); its output goes to a log file next to the socket,
// bounded. The daemon is never restarted: Done closes when it exits, and Err tells why
// when nobody asked it to stop.
package virtiofsd

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/vessel-containers/vessel/internal/idrange"
)

// Cache modes as the configuration names them (hypervisor.virtio_fs_cache).
const (
	CacheNever  = "never"
	CacheAuto   = "auto"
	CacheAlways = "always"
)

// cacheOption maps the configuration's cache modes to the daemon's -o cache= values.
// The C daemon has no "metadata" mode; the configuration refuses it.
var cacheOption = map[string]string{
	CacheNever:  "none",
	CacheAuto:   "auto",
	CacheAlways: "always",
}

// Config is one daemon.
type Config struct {
	// Binary is the virtiofsd executable (hypervisor.virtio_fs_daemon).
	Binary string
	// Source is the directory served to the guest.
	Source string
	// Socket is where Start creates the vhost-user socket the VMM connects to.
	Socket string
	// Log is the file that receives the daemon's output.
	Log string
	// Cache is CacheNever, CacheAuto or CacheAlways (empty: CacheAuto).
	Cache string
	// ExtraArgs are passed after the options the driver sets (hypervisor.virtio_fs_extra_args).
	ExtraArgs []string
	// Debug raises the daemon's log level.
	Debug bool
	// UserNS, when set, runs the daemon as root of a user namespace of its own mapped onto
	// these unprivileged host ids (the VMM's): what the guest creates is owned by them, and
	// its socket is given to their root, for the VMM to connect.
	UserNS *idrange.Range
}

// fdSocket is the daemon's descriptor of the listening socket (the first of
// exec.Cmd.ExtraFiles).
const fdSocket = 3

// Args are the daemon's arguments (without argv[0]) for cfg: the socket on fdSocket,
// the source, the cache mode, its namespace sandbox, no cap_mknod (guest root could
// otherwise create device nodes, such as one for a host disk, in host directories) and
// in a user namespace no cap_setfcap (modcaps),
// extended attributes (the 9p server passes them too: file capabilities and ACLs in
// images keep working), submounts announced to the guest (each host mount is its own
// file system there, so inode numbers stay unique, as 9p's multidevs=remap keeps them),
// the descriptor limit left as the jail set it, and cfg.ExtraArgs last.
func Args(cfg Config) ([]string, error) {
	cache := cfg.Cache
	if cache == "" {
		cache = CacheAuto
	}
	opt, ok := cacheOption[cache]
	if !ok {
		return nil, fmt.Errorf("virtiofsd: cache mode %q: want %s, %s or %s: %w", cache, CacheNever, CacheAuto, CacheAlways, errdefs.ErrInvalidArgument)
	}
	// The daemon splits -o values at commas and reads backslashes as escapes.
	if !strings.HasPrefix(cfg.Source, "/") || strings.ContainsAny(cfg.Source, ",\\") {
		return nil, fmt.Errorf("virtiofsd: source %q: want an absolute path without ',' or '\\': %w", cfg.Source, errdefs.ErrInvalidArgument)
	}
	level := "info" // the readiness message is logged at info
	if cfg.Debug {
		level = "debug"
	}
	args := []string{
		"-f",
		fmt.Sprintf("--fd=%d", fdSocket),
		"-o", "source=" + cfg.Source,
		"-o", "cache=" + opt,
		"-o", "sandbox=namespace",
		"-o", "modcaps=" + modcaps(cfg),
		"-o", "xattr",
		"-o", "announce_submounts",
		"-o", "log_level=" + level,
		"--rlimit-nofile=0",
	}
	for _, a := range cfg.ExtraArgs {
		if !strings.HasPrefix(a, "--") {
			return nil, fmt.Errorf("virtiofsd: extra argument %q: want --option[=value]: %w", a, errdefs.ErrInvalidArgument)
		}
	}
	return append(args, cfg.ExtraArgs...), nil
}

// modcaps is the daemon's change to its own capability set: no mknod, and in a user
// namespace no setfcap either (userNSCaps says why).
func modcaps(cfg Config) string {
	if cfg.UserNS != nil {
		return "-mknod:-setfcap"
	}
	return "-mknod"
}

// readyMessage is what the daemon writes to stderr once it waits for the VMM on its
// socket (virtio_session_mount in the C daemon; the Rust daemon says the same).
const readyMessage = "Waiting for vhost-user socket connection"
