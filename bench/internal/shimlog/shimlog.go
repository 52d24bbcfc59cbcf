// Package shimlog reads the debug lines Vessel's shim writes into containerd's log (logrus
// text format: time="..." level=debug msg="..." key=value ...) and turns the lines of one
// cold start into a breakdown of where its time went.
//
// The lines it relies on, all at debug level, come from:
//   - internal/shim: "task api" method=<Create|Start|Wait|Delete> id=<id> took=<duration>,
//     written when a task API call returns;
//   - internal/sandbox: "vm started", "agent ready", "sandbox created" (elapsed since the
//     sandbox create began), and "guest boot" kernel=<d> agent_ready=<d>, the guest's own
//     clock since the kernel started, read from the agent before the sandbox is deleted.
//
// The guest's clock starts with its kernel, so the time between QEMU answering on QMP and
// the kernel's first instruction (the firmware loading kernel and initramfs through
// fw_cfg) cannot be told apart from the agent handshake: they share one phase.
package shimlog

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"
)

// Line is one parsed log line.
type Line struct {
	Time   time.Time
	Level  string
	Msg    string
	Fields map[string]string
}

// Parse reads logrus text lines; lines that do not parse (containerd's own output in other
// formats, partial lines) are skipped.
func Parse(r io.Reader) ([]Line, error) {
	var out []Line
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		kv := parseLogfmt(sc.Text())
		ts, ok := kv["time"]
		if !ok {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		l := Line{Time: t, Level: kv["level"], Msg: kv["msg"], Fields: kv}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read log: %w", err)
	}
	return out, nil
}

// parseLogfmt splits `k=v k="quoted \" value"` pairs.
func parseLogfmt(s string) map[string]string {
	kv := map[string]string{}
	i := 0
	for i < len(s) {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq <= 0 {
			break
		}
		key := s[i : i+eq]
		if strings.ContainsAny(key, " \"") {
			break
		}
		i += eq + 1
		if i < len(s) && s[i] == '"' {
			var b strings.Builder
			i++
			for i < len(s) && s[i] != '"' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
					switch s[i] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					default:
						b.WriteByte(s[i])
					}
				} else {
					b.WriteByte(s[i])
				}
				i++
			}
			i++ // closing quote
			kv[key] = b.String()
			continue
		}
		end := strings.IndexByte(s[i:], ' ')
		if end < 0 {
			end = len(s) - i
		}
		kv[key] = s[i : i+end]
		i += end
	}
	return kv
}

// Phase names, in the order they happen.
const (
	PhaseShimStart      = "ctr, containerd and shim start"
	PhaseHostPrep       = "host prep (config, rootfs mount)"
	PhaseQEMUStart      = "QEMU start"
	PhaseKernelBoot     = "kernel boot"
	PhaseAgentInit      = "agent init"
	PhaseAgentHandshake = "firmware + agent handshake"
	PhaseBootAndAgent   = "kernel boot + agent ready"
	PhaseSandboxSetup   = "sandbox setup (9p mount)"
	PhaseContainer      = "container create"
	PhaseProcessStart   = "process start"
	PhaseRunExit        = "process run and exit"
	PhaseTeardown       = "teardown"
)

// Phases lists every phase name in order (the boot phases appear either split or as
// PhaseBootAndAgent, depending on whether the guest reported its timeline).
var Phases = []string{
	PhaseShimStart, PhaseHostPrep, PhaseQEMUStart, PhaseKernelBoot, PhaseAgentInit,
	PhaseAgentHandshake, PhaseBootAndAgent, PhaseSandboxSetup, PhaseContainer,
	PhaseProcessStart, PhaseRunExit, PhaseTeardown,
}

// Phase is one part of a cold start.
type Phase struct {
	Name     string
	Duration time.Duration
}

// marks are the instants a breakdown is built from.
type marks struct {
	createStart, createEnd  time.Time
	sandboxStart            time.Time
	vmStarted, agentReady   time.Time
	sandboxCreated          time.Time
	startEnd, waitEnd       time.Time
	guestKernel, guestReady time.Duration
	haveGuest               bool
}

// Breakdown splits the cold start of container id, which the harness ran from t0 to t1,
// into contiguous phases using the shim's lines. The phases add up to t1-t0.
func Breakdown(lines []Line, id string, t0, t1 time.Time) ([]Phase, error) {
	m, err := collect(lines, id)
	if err != nil {
		return nil, err
	}
	ph := []Phase{
		{PhaseShimStart, m.createStart.Sub(t0)},
		{PhaseHostPrep, m.sandboxStart.Sub(m.createStart)},
		{PhaseQEMUStart, m.vmStarted.Sub(m.sandboxStart)},
	}
	boot := m.agentReady.Sub(m.vmStarted)
	if m.haveGuest {
		ph = append(ph,
			Phase{PhaseKernelBoot, m.guestKernel},
			Phase{PhaseAgentInit, m.guestReady - m.guestKernel},
			Phase{PhaseAgentHandshake, boot - m.guestReady},
		)
	} else {
		ph = append(ph, Phase{PhaseBootAndAgent, boot})
	}
	ph = append(ph,
		Phase{PhaseSandboxSetup, m.sandboxCreated.Sub(m.agentReady)},
		Phase{PhaseContainer, m.createEnd.Sub(m.sandboxCreated)},
		Phase{PhaseProcessStart, m.startEnd.Sub(m.createEnd)},
		Phase{PhaseRunExit, m.waitEnd.Sub(m.startEnd)},
		Phase{PhaseTeardown, t1.Sub(m.waitEnd)},
	)
	return ph, nil
}

func collect(lines []Line, id string) (marks, error) {
	var m marks
	for _, l := range lines {
		f := l.Fields
		switch l.Msg {
		case "task api":
			if f["id"] != id || f["exec_id"] != "" {
				continue
			}
			took, err := time.ParseDuration(f["took"])
			if err != nil {
				continue
			}
			switch f["method"] {
			case "Create":
				m.createStart, m.createEnd = l.Time.Add(-took), l.Time
			case "Start":
				m.startEnd = l.Time
			case "Wait":
				m.waitEnd = l.Time
			}
		case "vm started", "agent ready", "sandbox created":
			if f["sandbox"] != id {
				continue
			}
			switch l.Msg {
			case "vm started":
				m.vmStarted = l.Time
				if el, err := time.ParseDuration(f["elapsed"]); err == nil {
					m.sandboxStart = l.Time.Add(-el)
				}
			case "agent ready":
				m.agentReady = l.Time
			case "sandbox created":
				m.sandboxCreated = l.Time
			}
		case "guest boot":
			if f["sandbox"] != id {
				continue
			}
			k, err1 := time.ParseDuration(f["kernel"])
			a, err2 := time.ParseDuration(f["agent_ready"])
			if err1 == nil && err2 == nil {
				m.guestKernel, m.guestReady, m.haveGuest = k, a, true
			}
		}
	}
	var missing []string
	for _, mark := range []struct {
		name string
		t    time.Time
	}{
		{"task api Create", m.createStart}, {"vm started", m.vmStarted}, {"vm started elapsed", m.sandboxStart},
		{"agent ready", m.agentReady}, {"sandbox created", m.sandboxCreated},
		{"task api Start", m.startEnd}, {"task api Wait", m.waitEnd},
	} {
		if mark.t.IsZero() {
			missing = append(missing, mark.name)
		}
	}
	if len(missing) > 0 {
		return m, fmt.Errorf("shim log of %s lacks %v (is containerd at debug level, and the shim new enough?)", id, missing)
	}
	return m, nil
}
