package hypervisor

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vessel-containers/vessel/internal/guesttext"
)

// ErrGuestCrashed marks a VM exit that the guest's console explains as a crash: a kernel
// panic, or the agent (PID 1) dying, which panics the kernel too. Drivers wrap it into the
// error of such an exit (errors.Is(vm.Err(), ErrGuestCrashed)).
var ErrGuestCrashed = errors.New("guest crashed")

// GuestCrash is what the end of a guest console says about a crash.
type GuestCrash struct {
	// Panic is the kernel's panic reason ("Attempted to kill init! exitcode=0x00000200"),
	// escaped; empty when the kernel did not panic.
	Panic string
	// AgentExited is set when the panic is the agent's (PID 1's) exit.
	AgentExited bool
	// AgentError is the first line of the agent's own crash report (a Go panic or fatal
	// signal), escaped; empty when the console holds none.
	AgentError string
	// Oops is the first kernel oops or BUG line before the panic, escaped.
	Oops string
	// KernelLines are the last lines of the console that are not the agent's log lines,
	// escaped: the kernel's messages around the crash.
	KernelLines []string
}

// kernelLineCount is how many kernel lines a GuestCrash keeps.
const kernelLineCount = 25

const panicMarker = "Kernel panic - not syncing: "

// agentCrashMarkers start the report a Go program prints when it dies of a panic or a
// fatal signal.
var agentCrashMarkers = []string{"panic: ", "fatal error: ", "SIGABRT: ", "SIGSEGV: ", "SIGBUS: ", "SIGQUIT: ", "SIGILL: ", "SIGFPE: ", "SIGTRAP: "}

// oopsMarkers start a kernel oops or bug report.
var oopsMarkers = []string{"BUG: ", "Oops: ", "general protection fault", "kernel BUG at "}

// ParseGuestCrash reads the end of a guest console. ok is false when the console shows
// no kernel panic.
func ParseGuestCrash(console []byte) (c GuestCrash, ok bool) {
	lines := strings.Split(strings.ReplaceAll(string(console), "\r", ""), "\n")
	panicAt := -1
	for i := len(lines) - 1; i >= 0; i-- {
		if j := strings.Index(lines[i], panicMarker); j >= 0 {
			panicAt = i
			c.Panic = guesttext.Quote(strings.TrimSpace(lines[i][j+len(panicMarker):]), 256)
			break
		}
	}
	if panicAt < 0 {
		return GuestCrash{}, false
	}
	c.AgentExited = strings.Contains(c.Panic, "Attempted to kill init")
	for _, l := range lines[:panicAt] {
		if c.AgentError == "" && !isAgentLogLine(l) {
			for _, m := range agentCrashMarkers {
				if strings.HasPrefix(l, m) {
					c.AgentError = guesttext.Quote(strings.TrimSpace(l), 256)
					break
				}
			}
		}
		if c.Oops == "" {
			for _, m := range oopsMarkers {
				if k := strings.Index(l, m); k >= 0 {
					c.Oops = guesttext.Quote(strings.TrimSpace(l[k:]), 256)
					break
				}
			}
		}
	}
	for i := len(lines) - 1; i >= 0 && len(c.KernelLines) < kernelLineCount; i-- {
		l := strings.TrimRight(lines[i], " \t")
		if l == "" || isAgentLogLine(l) {
			continue
		}
		c.KernelLines = append(c.KernelLines, guesttext.Quote(l, 512))
	}
	for i, j := 0, len(c.KernelLines)-1; i < j; i, j = i+1, j-1 {
		c.KernelLines[i], c.KernelLines[j] = c.KernelLines[j], c.KernelLines[i]
	}
	return c, true
}

// isAgentLogLine reports whether l is one of the agent's log lines (logrus text format),
// which share the console with the kernel.
func isAgentLogLine(l string) bool {
	return strings.HasPrefix(l, "time=") || strings.HasPrefix(l, "level=")
}

// Summary is the crash in one line: what panicked, and why when the console tells.
func (c GuestCrash) Summary() string {
	var b strings.Builder
	switch {
	case c.AgentExited && c.AgentError != "":
		fmt.Fprintf(&b, "the agent (PID 1) crashed (%s), which panicked the guest kernel: %s", c.AgentError, c.Panic)
	case c.AgentExited:
		fmt.Fprintf(&b, "the agent (PID 1) exited, which panicked the guest kernel: %s", c.Panic)
	default:
		fmt.Fprintf(&b, "guest kernel panic: %s", c.Panic)
	}
	if c.Oops != "" {
		fmt.Fprintf(&b, " (after %s)", c.Oops)
	}
	return b.String()
}

// Error is the crash as an error wrapping ErrGuestCrashed: the summary, then the last
// kernel lines.
func (c GuestCrash) Error() error {
	return fmt.Errorf("%w: %s\n--- guest kernel (last %d lines) ---\n%s", ErrGuestCrashed, c.Summary(), len(c.KernelLines), strings.Join(c.KernelLines, "\n"))
}
