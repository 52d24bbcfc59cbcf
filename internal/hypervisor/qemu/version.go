package qemu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/errdefs"
)

// version is a QEMU release, major.minor.
type version struct{ major, minor int }

func (v version) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

// atLeast tells whether v is o or newer.
func (v version) atLeast(o version) bool {
	return v.major > o.major || v.major == o.major && v.minor >= o.minor
}

// readOnlyRAMVersion is the first QEMU whose memory-backend-file opens its file read-only
// (readonly=on) while the guest still writes its own private copy (rom=off).
var readOnlyRAMVersion = version{8, 2}

var versionRE = regexp.MustCompile(`QEMU emulator version (\d+)\.(\d+)`)

// parseVersion reads the release from `qemu -version` output.
func parseVersion(out []byte) (version, error) {
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return version{}, fmt.Errorf("no \"QEMU emulator version\" in %q", bytes.TrimSpace(out))
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	return version{major, minor}, nil
}

// versions caches binaryVersion by the binary's path, size and modification time: one
// `-version` run (about 50 ms) per binary and process.
var versions sync.Map // string -> version

// binaryVersion is the release of the QEMU at binary.
func binaryVersion(binary string) (version, error) {
	st, err := os.Stat(binary)
	if err != nil {
		return version{}, fmt.Errorf("qemu version: %w", err)
	}
	key := fmt.Sprintf("%s\x00%d\x00%d", binary, st.Size(), st.ModTime().UnixNano())
	if v, ok := versions.Load(key); ok {
		return v.(version), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "-version").Output()
	if err != nil {
		return version{}, fmt.Errorf("%s -version: %w", binary, err)
	}
	v, err := parseVersion(out)
	if err != nil {
		return version{}, fmt.Errorf("%s -version: %w", binary, err)
	}
	versions.Store(key, v)
	return v, nil
}

// checkUnprivilegedTemplates tells whether the QEMU at binary can restore VM templates
// with an unprivileged VMM: only if it opens the template's memory file read-only.
func checkUnprivilegedTemplates(binary string) error {
	v, err := binaryVersion(binary)
	if err != nil {
		return err
	}
	return unprivilegedTemplates(binary, v)
}

func unprivilegedTemplates(binary string, v version) error {
	if v.atLeast(readOnlyRAMVersion) {
		return nil
	}
	return fmt.Errorf("QEMU %s (%s) opens a VM template's memory file read-write (readonly= came in QEMU %s), which an unprivileged VMM must not: "+
		"factory.enable_template cannot be used with hypervisor.vmm_id_range on it; turn one of them off or install QEMU %s or newer: %w",
		v, binary, readOnlyRAMVersion, readOnlyRAMVersion, errdefs.ErrNotImplemented)
}
