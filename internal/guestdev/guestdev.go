// Package guestdev lists the character devices every Linux kernel provides with the same
// numbers, which the host and the guest agent both use to judge a spec's linux.devices.
package guestdev

import (
	"fmt"
	"strings"
)

// Char is a character device by its numbers.
type Char struct {
	Major, Minor int64
	Name         string
}

// Kernel are the character devices every Linux kernel provides with the same numbers
// (Documentation/admin-guide/devices.txt): a node for one of them made in the guest is the
// same device as on the host, of the guest's kernel (kmsg is the guest kernel's log).
var Kernel = []Char{
	{1, 3, "null"}, {1, 5, "zero"}, {1, 7, "full"}, {1, 8, "random"}, {1, 9, "urandom"}, {1, 11, "kmsg"},
	{5, 0, "tty"}, {5, 1, "console"}, {5, 2, "ptmx"}, {10, 200, "net/tun"}, {10, 229, "fuse"},
}

// IsKernel reports whether major:minor is one of Kernel.
func IsKernel(major, minor int64) bool {
	for _, c := range Kernel {
		if c.Major == major && c.Minor == minor {
			return true
		}
	}
	return false
}

// Names lists Kernel as "null 1:3, zero 1:5, ...", for error messages.
func Names() string {
	names := make([]string, len(Kernel))
	for i, c := range Kernel {
		names[i] = fmt.Sprintf("%s %d:%d", c.Name, c.Major, c.Minor)
	}
	return strings.Join(names, ", ")
}
