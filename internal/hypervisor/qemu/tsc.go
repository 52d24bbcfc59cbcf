package qemu

import (
	"bytes"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// tscWindow is how long hostTSCKHz counts TSC ticks against CLOCK_MONOTONIC_RAW. Each end is
// read within a few microseconds (the narrowest of several brackets), so the frequency is
// good to some tens of ppm.
const tscWindow = 20 * time.Millisecond

var hostTSC struct {
	once sync.Once
	khz  uint64
}

// hostTSCKHz returns the host's TSC frequency in kHz, measured once per process, or 0
// when the host's TSC is not constant and non-stop (/proc/cpuinfo flags) or cannot be
// read here.
//
// A TCG guest's TSC is the host's (QEMU reads the host counter for the guest's RDTSC). A
// microvm machine has neither the PC speaker port the kernel gates the PIT through to
// calibrate the TSC, nor an HPET or ACPI PM timer: without the frequency on its command
// line (tsc_early_khz) the guest kernel finds no usable clock and hangs in boot.
func hostTSCKHz() uint64 {
	hostTSC.once.Do(func() { hostTSC.khz = measureTSCKHz() })
	return hostTSC.khz
}

func measureTSCKHz() uint64 {
	if runtime.GOARCH != "amd64" || !stableTSC() {
		return 0
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0, t0, ok := tscSample()
	if !ok {
		return 0
	}
	time.Sleep(tscWindow)
	c1, t1, ok := tscSample()
	if !ok || t1 <= t0 || c1 <= c0 {
		return 0
	}
	return (c1 - c0) * 1e6 / uint64(t1-t0)
}

// tscSample reads the TSC between two readings of CLOCK_MONOTONIC_RAW, five times, and
// returns the reading whose bracket was narrowest, with the bracket's midpoint in ns.
func tscSample() (tsc uint64, ns int64, ok bool) {
	best := int64(-1)
	for range 5 {
		var a, b unix.Timespec
		if unix.ClockGettime(unix.CLOCK_MONOTONIC_RAW, &a) != nil {
			return 0, 0, false
		}
		c := rdtsc()
		if unix.ClockGettime(unix.CLOCK_MONOTONIC_RAW, &b) != nil {
			return 0, 0, false
		}
		if w := b.Nano() - a.Nano(); best < 0 || w < best {
			best, tsc, ns = w, c, a.Nano()+w/2
		}
	}
	return tsc, ns, true
}

// stableTSC tells whether the host's first CPU in /proc/cpuinfo has a constant,
// non-stop TSC.
func stableTSC() bool {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	for line := range bytes.Lines(data) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || string(bytes.TrimSpace(k)) != "flags" {
			continue
		}
		flags := bytes.Fields(v)
		return slices.ContainsFunc(flags, func(f []byte) bool { return string(f) == "constant_tsc" }) &&
			slices.ContainsFunc(flags, func(f []byte) bool { return string(f) == "nonstop_tsc" })
	}
	return false
}
