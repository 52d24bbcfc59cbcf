package hypervisor

import (
	"errors"
	"strings"
	"testing"
)

const agentCrashConsole = `[    1.000000] Run /init as init process
time="2026-12-06T23:00:00Z" level=info msg="vessel-agent ready"
SIGABRT: abort
PC=0x47a0e1 m=0 sigcode=0

goroutine 0 gp=0x1 m=0 mp=0x2 [idle]:
runtime.futex(...)
Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000200
CPU: 0 PID: 1 Comm: init Not tainted 6.1.0 #1
Call Trace:
 <TASK>
 dump_stack_lvl+0x44/0x5c
Kernel Offset: disabled
---[ end Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000200 ]---
`

const oomConsole = `time="x" level=info msg="sandbox created"
Out of memory: Killed process 77 (cat)
Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled
CPU: 0 PID: 77 Comm: cat
`

func TestParseGuestCrash(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		console                string
		ok, agent              bool
		summaryHas, notInLines []string
	}{
		{name: "agent crash", console: agentCrashConsole, ok: true, agent: true,
			summaryHas: []string{"the agent (PID 1) crashed (SIGABRT: abort)", "Attempted to kill init! exitcode=0x00000200"},
			notInLines: []string{"vessel-agent ready"}},
		{name: "kernel panic", console: oomConsole, ok: true,
			summaryHas: []string{"guest kernel panic: Out of memory: system-wide panic_on_oom is enabled"}},
		{name: "oops then panic", console: "BUG: kernel NULL pointer dereference, address: 0\nKernel panic - not syncing: Fatal exception\n", ok: true,
			summaryHas: []string{"guest kernel panic: Fatal exception", "(after BUG: kernel NULL pointer dereference"}},
		{name: "escaped", console: "Kernel panic - not syncing: \x1b[2Jevil\u202e\n", ok: true,
			summaryHas: []string{`\x1b[2Jevil\u202e`}},
		{name: "no panic", console: "time=\"x\" level=info msg=\"bye\"\nreboot: Power down\n"},
		{name: "empty", console: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := ParseGuestCrash([]byte(tc.console))
			if ok != tc.ok {
				t.Fatalf("ok: got %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if c.AgentExited != tc.agent {
				t.Errorf("AgentExited: got %v, want %v", c.AgentExited, tc.agent)
			}
			s := c.Summary()
			for _, want := range tc.summaryHas {
				if !strings.Contains(s, want) {
					t.Errorf("summary %q lacks %q", s, want)
				}
			}
			if strings.ContainsAny(s, "\x1b\u202e\n") {
				t.Errorf("summary %q holds unescaped text", s)
			}
			err := c.Error()
			if !errors.Is(err, ErrGuestCrashed) {
				t.Errorf("Error() %v does not wrap ErrGuestCrashed", err)
			}
			lines := strings.Join(c.KernelLines, "\n")
			if !strings.Contains(lines, "Kernel panic - not syncing") {
				t.Errorf("kernel lines lack the panic:\n%s", lines)
			}
			for _, not := range tc.notInLines {
				if strings.Contains(lines, not) {
					t.Errorf("kernel lines hold the agent's log line %q:\n%s", not, lines)
				}
			}
		})
	}
}

// TestParseGuestCrashBounded checks that the kernel lines are bounded however long the
// console is.
func TestParseGuestCrashBounded(t *testing.T) {
	console := strings.Repeat("[ 1.0] noise line\n", 1000) + "Kernel panic - not syncing: x\n"
	c, ok := ParseGuestCrash([]byte(console))
	if !ok {
		t.Fatal("no panic found")
	}
	if got := len(c.KernelLines); got != kernelLineCount {
		t.Errorf("kernel lines: got %d, want %d", got, kernelLineCount)
	}
	if last := c.KernelLines[len(c.KernelLines)-1]; last != "Kernel panic - not syncing: x" {
		t.Errorf("last kernel line: %q", last)
	}
}
