package hvtest

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cavaliergopher/cpio"
)

// busyboxPath is Debian's busybox-static.
const busyboxPath = "/bin/busybox"

// initScript is the guest's PID 1. It prints a console marker, finds the vessel.agent
// port, writes an agent marker into it, then a tick counter every 100 ms until the VM
// stops. The marker comes from the kernel parameter hvtest.marker, so concurrent VMs are
// told apart. If anything is missing it powers off, which the host sees as an exit. With
// hvtest.flood=N it first writes N MiB of hostile text (terminal escapes, carriage
// returns) to the serial console, then "hvtest-flood-end <marker>" there, and
// "hvtest-flooded N" into the agent port.
const initScript = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
marker=$(sed -n 's/.*hvtest\.marker=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "hvtest-console $marker"
port=
i=0
while [ -z "$port" ] && [ $i -lt 100 ]; do
	for d in /sys/class/virtio-ports/*; do
		if [ "$(cat "$d/name" 2>/dev/null)" = vessel.agent ]; then
			port=/dev/${d##*/}
		fi
	done
	[ -n "$port" ] || sleep 0.1
	i=$((i+1))
done
if [ -z "$port" ] || [ ! -e "$port" ]; then
	echo "hvtest: no vessel.agent port"
	poweroff -f
fi
echo "hvtest: agent port $port"
exec 3>"$port"
echo "hvtest-agent $marker" >&3
flood=$(sed -n 's/.*hvtest\.flood=\([0-9]*\).*/\1/p' /proc/cmdline)
if [ -n "$flood" ]; then
	# Lines with terminal escapes and a carriage return, as a hostile guest writes them.
	yes "$(printf 'hvtest flood \033[2J\033]0;title\007\r 0123456789abcdefghijklmnopqrstuvwxyz')" |
		head -c $((flood * 1048576)) >/dev/ttyS0
	echo "hvtest-flood-end $marker" >/dev/ttyS0
	echo "hvtest-flooded $flood" >&3
fi
n=0
while :; do
	n=$((n+1))
	echo "tick $n" >&3
	sleep 0.1
done
`

// buildInitramfs writes a gzip-compressed newc cpio archive holding busybox and the init
// script into dir and returns its path.
func buildInitramfs(dir string) (string, error) {
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return "", fmt.Errorf("busybox (install busybox-static): %w", err)
	}
	path := filepath.Join(dir, "hvtest-initramfs.img")
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("create initramfs: %w", err)
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	w := cpio.NewWriter(gz)

	now := time.Now()
	add := func(name string, mode cpio.FileMode, data []byte) error {
		hdr := &cpio.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: now, Links: 1}
		if mode&cpio.TypeDir != 0 {
			hdr.Links = 2
		}
		if err := w.WriteHeader(hdr); err != nil {
			return fmt.Errorf("cpio %s: %w", name, err)
		}
		if len(data) > 0 {
			if _, err := w.Write(data); err != nil {
				return fmt.Errorf("cpio %s: %w", name, err)
			}
		}
		return nil
	}
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp"} {
		if err := add(d, cpio.TypeDir|0o755, nil); err != nil {
			return "", err
		}
	}
	if err := add("bin/busybox", cpio.TypeReg|0o755, bb); err != nil {
		return "", err
	}
	if err := add("init", cpio.TypeReg|0o755, []byte(initScript)); err != nil {
		return "", err
	}
	for _, c := range []io.Closer{w, gz} {
		if err := c.Close(); err != nil {
			return "", fmt.Errorf("write initramfs: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write initramfs: %w", err)
	}
	return path, nil
}
