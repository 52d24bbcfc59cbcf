//go:build linux

// Binary vesselstdiofloor measures the floors under Vessel's stdio path (docs/benchmarks.md,
// "Where the time of a stdio transfer goes"). Booted as a guest's /init (the only file of an
// initramfs, with the sandbox's kernel and QEMU command line) it times, with no agent: a
// pipe and a pty read by a Go reader as the agent's copier reads them, memmove, and a
// transfer of -mib MiB to the virtio-serial port named -port; then it powers the VM off.
// With -host SOCKET it is the host's end: it reads the port's chardev socket and prints the
// rate from the first byte to the last.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	host := flag.String("host", "", "read the port's chardev socket at this path (host side)")
	mib := flag.Int("mib", 64, "MiB to move through the port")
	port := flag.String("port", "floor", "name of the virtio-serial port (guest side)")
	flag.Parse()
	if *host != "" {
		if err := readHost(*host, *mib); err != nil {
			fmt.Fprintln(os.Stderr, "vesselstdiofloor:", err)
			os.Exit(1)
		}
		return
	}
	if err := guest(*port, *mib); err != nil {
		fmt.Println("vesselstdiofloor:", err)
	}
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// readHost connects to the chardev socket (QEMU may not listen yet) and reads mib MiB.
func readHost(path string, mib int) error {
	var c net.Conn
	var err error
	for range 600 {
		if c, err = net.Dial("unix", path); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 1<<20)
	var n int
	var first, last time.Time
	for n < mib<<20 {
		m, err := c.Read(buf)
		if m > 0 && n == 0 {
			first = time.Now()
		}
		n += m
		last = time.Now()
		if err != nil {
			break
		}
	}
	if n < mib<<20 {
		return fmt.Errorf("read %d bytes, want %d", n, mib<<20)
	}
	fmt.Printf("virtio-serial to host: %.1f MB/s\n", float64(n)/last.Sub(first).Seconds()/1e6)
	return nil
}

func guest(port string, mib int) error {
	for _, m := range []struct{ src, dst, typ, data string }{
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", ""},
		{"devpts", "/dev/pts", "devpts", "ptmxmode=0666,newinstance"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.typ, 0, m.data); err != nil {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	const size = 16 << 20
	pipeR, pipeW, err := os.Pipe()
	if err != nil {
		return err
	}
	report("pipe", pipeR, pipeW, size)
	for _, raw := range []bool{false, true} {
		master, slave, err := openPty(raw)
		if err != nil {
			return err
		}
		name := "pty, default termios"
		if raw {
			name = "pty, slave raw"
		}
		report(name, master, slave, size)
	}
	src, dst := make([]byte, 1<<20), make([]byte, 1<<20)
	begin := time.Now()
	for range 64 {
		copy(dst, src)
	}
	fmt.Printf("memmove: %.0f MB/s\n", 64*(1<<20)/time.Since(begin).Seconds()/1e6)

	dev, err := findPort(port)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	begin = time.Now()
	for range mib {
		if _, err := f.Write(src); err != nil {
			return fmt.Errorf("write %s: %w", dev, err)
		}
	}
	fmt.Printf("virtio-serial written by the guest: %.1f MB/s\n", float64(mib<<20)/time.Since(begin).Seconds()/1e6)
	return nil
}

// report writes size bytes into w in 1 MiB writes while a reader takes them from r in
// reads of up to 256 KiB (what the agent's copier does), and prints the rate.
func report(name string, r, w *os.File, size int) {
	done := make(chan string)
	begin := time.Now()
	go func() { // owner: report; ends after size bytes or an error
		buf := make([]byte, 256<<10)
		n, reads := 0, 0
		for n < size {
			m, err := r.Read(buf)
			n += m
			reads++
			if err != nil {
				break
			}
		}
		done <- fmt.Sprintf("%s: %.1f MB/s, %d reads of %d bytes on average", name, float64(n)/time.Since(begin).Seconds()/1e6, reads, n/max(reads, 1))
	}()
	buf := make([]byte, 1<<20)
	for written := 0; written < size; written += len(buf) {
		if _, err := w.Write(buf); err != nil {
			fmt.Println(name, "write:", err)
			break
		}
	}
	fmt.Println(<-done)
	r.Close()
	w.Close()
}

// openPty opens a new pty; raw turns output processing, echo and canonical mode off on
// the slave.
func openPty(raw bool) (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/pts/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	if raw {
		t, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		if err == nil {
			t.Oflag &^= unix.OPOST
			t.Lflag &^= unix.ECHO | unix.ICANON | unix.ISIG | unix.IEXTEN
			err = unix.IoctlSetTermios(int(slave.Fd()), unix.TCSETS, t)
		}
		if err != nil {
			master.Close()
			slave.Close()
			return nil, nil, fmt.Errorf("raw pty: %w", err)
		}
	}
	return master, slave, nil
}

// findPort returns the device of the virtio-serial port called name.
func findPort(name string) (string, error) {
	for range 200 {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, p := range names {
			b, err := os.ReadFile(p)
			if err == nil && strings.TrimSpace(string(b)) == name {
				return "/dev/" + filepath.Base(filepath.Dir(p)), nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "", fmt.Errorf("no virtio-serial port %q in /sys/class/virtio-ports", name)
}
