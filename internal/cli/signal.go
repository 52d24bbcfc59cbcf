package cli

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// sigRTMin and sigRTMax are the real-time signals as glibc (and so runc) exposes them:
// the kernel's 32 and 33 are reserved by the C library.
const (
	sigRTMin = 34
	sigRTMax = 64
)

// parseSignal accepts what `runc kill` accepts: a number (0-64; 0 only checks that the
// process exists), a name with or without the SIG prefix in any case (TERM, sigkill), and
// RTMIN+n / RTMAX-n.
func parseSignal(raw string) (syscall.Signal, error) {
	if raw == "" {
		return 0, fmt.Errorf("signal: empty")
	}
	if n, err := strconv.Atoi(raw); err == nil {
		if n < 0 || n > sigRTMax {
			return 0, fmt.Errorf("signal %d: want 0-%d", n, sigRTMax)
		}
		return syscall.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(raw), "SIG")
	if s, ok := rtSignal(name); ok {
		return s, nil
	}
	if s := unix.SignalNum("SIG" + name); s != 0 {
		return s, nil
	}
	return 0, fmt.Errorf("unknown signal %q", raw)
}

// rtSignal parses RTMIN, RTMIN+n, RTMAX and RTMAX-n.
func rtSignal(name string) (syscall.Signal, bool) {
	base, off, sign := 0, "", 1
	switch {
	case strings.HasPrefix(name, "RTMIN"):
		base, off = sigRTMin, strings.TrimPrefix(name, "RTMIN")
	case strings.HasPrefix(name, "RTMAX"):
		base, off, sign = sigRTMax, strings.TrimPrefix(name, "RTMAX"), -1
	default:
		return 0, false
	}
	n := 0
	if off != "" {
		want := "+"
		if sign < 0 {
			want = "-"
		}
		if !strings.HasPrefix(off, want) {
			return 0, false
		}
		v, err := strconv.Atoi(off[1:])
		if err != nil || v < 0 {
			return 0, false
		}
		n = v
	}
	s := base + sign*n
	if s < sigRTMin || s > sigRTMax {
		return 0, false
	}
	return syscall.Signal(s), true
}
