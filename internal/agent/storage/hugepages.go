//go:build linux

package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/bytesize"
)

// hugePagesDir is sysfs's directory of the kernel's huge page pools, one per page size.
const hugePagesDir = "/sys/kernel/mm/hugepages"

// hugePagesOf reads a hugetlbfs storage's pagesize= and size= (bytesize.Parse) and returns
// the page size in KiB and the pages size= holds.
func hugePagesOf(opts []string) (pageKB, pages uint64, _ error) {
	var pageSize, size uint64
	for _, o := range opts {
		key, val, ok := strings.Cut(strings.TrimSpace(o), "=")
		if !ok || (key != "pagesize" && key != "size") {
			continue
		}
		n, err := bytesize.Parse(val)
		if err != nil {
			return 0, 0, fmt.Errorf("%w: hugetlbfs storage: option %q: %w", errdefs.ErrInvalidArgument, o, err)
		}
		if key == "pagesize" {
			pageSize = n
		} else {
			size = n
		}
	}
	switch {
	case pageSize == 0 || pageSize%4096 != 0:
		return 0, 0, fmt.Errorf("%w: hugetlbfs storage: needs pagesize=<bytes> (a multiple of 4 KiB, e.g. 2M)", errdefs.ErrInvalidArgument)
	case size < pageSize:
		return 0, 0, fmt.Errorf("%w: hugetlbfs storage: needs size=<bytes> of at least one page (%d bytes): the pages are reserved in the guest", errdefs.ErrInvalidArgument, pageSize)
	case size%pageSize != 0:
		return 0, 0, fmt.Errorf("%w: hugetlbfs storage: size=%d is not a whole number of %d-byte pages", errdefs.ErrInvalidArgument, size, pageSize)
	}
	return pageSize >> 10, size / pageSize, nil
}

// reserveHugePagesLocked grows the guest's pool of huge pages of pageKB KiB by n and checks
// that the kernel found them; when it did not, the pool is put back and the error says how
// many it got.
//
// Preconditions: m.mu is held.
func (m *Manager) reserveHugePagesLocked(pageKB, n uint64) error {
	have, err := m.hugePages(pageKB)
	if err != nil {
		return err
	}
	if err := m.setHugePages(pageKB, have+n); err != nil {
		return err
	}
	got, err := m.hugePages(pageKB)
	if err != nil {
		return err
	}
	if got < have+n {
		if err := m.setHugePages(pageKB, have); err != nil {
			return fmt.Errorf("the guest found %d of %d more %d kB huge pages, and giving them back failed: %w", got-min(got, have), n, pageKB, err)
		}
		return fmt.Errorf("%w: the guest found only %d of the %d %d kB huge pages the volume needs (guest memory too small: the pod's hugepage limits are added to the VM's memory)",
			errdefs.ErrResourceExhausted, got-min(got, have), n, pageKB)
	}
	return nil
}

// releaseHugePagesLocked shrinks the guest's pool of huge pages of pageKB KiB by n.
//
// Preconditions: m.mu is held.
func (m *Manager) releaseHugePagesLocked(pageKB, n uint64) error {
	have, err := m.hugePages(pageKB)
	if err != nil {
		return err
	}
	return m.setHugePages(pageKB, have-min(have, n))
}

func nrHugePagesPath(pageKB uint64) string {
	return fmt.Sprintf("%s/hugepages-%dkB/nr_hugepages", hugePagesDir, pageKB)
}

// readHugePages reads the size of the pool of huge pages of pageKB KiB.
func readHugePages(pageKB uint64) (uint64, error) {
	data, err := os.ReadFile(nrHugePagesPath(pageKB))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: the guest kernel has no %d kB huge pages (%s is missing: a kernel built without CONFIG_HUGETLBFS, or a page size the CPU lacks)",
			errdefs.ErrNotImplemented, pageKB, nrHugePagesPath(pageKB))
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", nrHugePagesPath(pageKB), err)
	}
	return n, nil
}

// writeHugePages sets the size of the pool of huge pages of pageKB KiB.
func writeHugePages(pageKB, n uint64) error {
	if err := os.WriteFile(nrHugePagesPath(pageKB), []byte(strconv.FormatUint(n, 10)), 0); err != nil {
		return fmt.Errorf("set the guest's %d kB huge pages to %d: %w", pageKB, n, err)
	}
	return nil
}
