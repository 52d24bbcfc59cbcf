// Package bytesize reads byte counts as the kernel's memparse writes them in mount options
// (tmpfs size=, hugetlbfs pagesize= and size=): digits with an optional k, m, g or t suffix,
// in either case, for KiB, MiB, GiB and TiB. The host and the guest agent read the same
// options with it.
package bytesize

import (
	"fmt"
	"strconv"
)

// Parse reads a byte count. A percentage, a negative or fractional number, an unknown
// suffix or a count that overflows 64 bits is an error.
func Parse(v string) (uint64, error) {
	num, shift := v, 0
	if v != "" {
		switch v[len(v)-1] {
		case 'k', 'K':
			shift = 10
		case 'm', 'M':
			shift = 20
		case 'g', 'G':
			shift = 30
		case 't', 'T':
			shift = 40
		}
	}
	if shift > 0 {
		num = v[:len(v)-1]
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n > (^uint64(0))>>shift {
		return 0, fmt.Errorf("%q is not a byte count (digits with an optional k, m, g or t suffix)", v)
	}
	return n << shift, nil
}
