// Binary setfcap is a guest-side attacker for the integration tests: it gives the file
// named by its argument the file capability cap_net_raw+ep by writing the
// security.capability extended attribute itself (a version 2 header, which the kernel
// turns into whatever its caller's namespace allows), as setcap would. The test images
// have no setcap. It exits 0 when the write succeeded and prints the error otherwise.
package main

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Header of struct vfs_cap_data (linux/capability.h).
const (
	vfsCapRevision2      = 0x02000000
	vfsCapFlagsEffective = 0x000001
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: setfcap FILE")
		os.Exit(2)
	}
	// struct vfs_cap_data, revision 2: magic_etc, then permitted and inheritable for
	// the low and the high 32 capabilities.
	v := make([]byte, 20)
	binary.LittleEndian.PutUint32(v[0:], vfsCapRevision2|vfsCapFlagsEffective)
	binary.LittleEndian.PutUint32(v[4:], 1<<unix.CAP_NET_RAW)
	if err := unix.Setxattr(os.Args[1], "security.capability", v, 0); err != nil {
		fmt.Fprintf(os.Stderr, "setxattr security.capability on %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
