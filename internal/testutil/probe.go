package testutil

import (
	"fmt"
	"io"
	"strconv"
	"testing"
	"time"
)

// ProbeScript is the shell command line of a probe container: it prints "ready", waits for
// a line on stdin, then prints its clock (a tmpfs file's modification time has
// nanoseconds; busybox date has no %N), its hostname, 16 random bytes, the kernel's boot
// id, its CPU count and MemTotal. Tests of VMs from a template or a cache run it to see
// that each VM has its own identity, random state and a clock in step with the host's.
const ProbeScript = `echo ready; read x; touch /dev/clk; stat -c %y /dev/clk; hostname; ` +
	`head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; echo; cat /proc/sys/kernel/random/boot_id; ` +
	`nproc; grep MemTotal /proc/meminfo`

// Probe is what a probe container saw.
type Probe struct {
	Hostname, Random, BootID string
	CPUs                     int
	MemKiB                   int
	// The guest read GuestClock between HostBefore and HostAfter on the host's clock.
	GuestClock, HostBefore, HostAfter time.Time
}

// ReadProbe drives a probe container that has printed "ready": it writes the go line to
// stdin and reads the rest of the output through next, which returns the next line.
func ReadProbe(t testing.TB, stdin io.Writer, next func() string) Probe {
	t.Helper()
	var p Probe
	p.HostBefore = time.Now()
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	clock := next()
	p.HostAfter = time.Now()
	var err error
	if p.GuestClock, err = time.Parse("2006-01-02 15:04:05.999999999 -0700", clock); err != nil {
		t.Fatalf("guest clock %q: %v", clock, err)
	}
	p.Hostname, p.Random, p.BootID = next(), next(), next()
	p.CPUs, _ = strconv.Atoi(next())
	if _, err := fmt.Sscanf(next(), "MemTotal: %d kB", &p.MemKiB); err != nil {
		t.Errorf("MemTotal: %v", err)
	}
	return p
}

// CheckClock asserts the guest clock of the probe named name was within 100 ms of the
// host's while it was read.
func (p Probe) CheckClock(t testing.TB, name string) {
	t.Helper()
	const tolerance = 100 * time.Millisecond
	if p.GuestClock.Before(p.HostBefore.Add(-tolerance)) || p.GuestClock.After(p.HostAfter.Add(tolerance)) {
		t.Errorf("%s: guest clock %s is not within %s of the host's [%s, %s]", name,
			p.GuestClock.Format(time.StampMicro), tolerance, p.HostBefore.Format(time.StampMicro), p.HostAfter.Format(time.StampMicro))
	}
	t.Logf("%s: guest clock read %s after the host's request (round trip %s)", name,
		p.GuestClock.Sub(p.HostBefore).Round(time.Millisecond), p.HostAfter.Sub(p.HostBefore).Round(time.Millisecond))
}
