package harness

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
)

func TestNetSetup(t *testing.T) {
	for _, pid := range []int{1, 249, 250, 4194304, 123456789} {
		s := newNetSetup(pid)
		if len(s.hostIf) > 15 {
			t.Errorf("pid %d: interface name %q is longer than the kernel's 15", pid, s.hostIf)
		}
		h, c := net.ParseIP(s.hostAddr), net.ParseIP(s.ctrAddr)
		_, want, _ := net.ParseCIDR("10.249.0.0/16")
		if h == nil || c == nil || !want.Contains(h) || !want.Contains(c) || h.Equal(c) {
			t.Errorf("pid %d: addresses %s and %s: want two of 10.249.0.0/16", pid, s.hostAddr, s.ctrAddr)
		}
		_, sub, err := net.ParseCIDR(s.hostAddr + "/30")
		if err != nil || !sub.Contains(c) || sub.IP.Equal(h) || sub.IP.Equal(c) {
			t.Errorf("pid %d: %s and %s are not two hosts of one /30", pid, s.hostAddr, s.ctrAddr)
		}
		if s.path() != "/run/netns/"+s.ns || !strings.Contains(s.ns, "vbnet") {
			t.Errorf("pid %d: namespace %q at %q", pid, s.ns, s.path())
		}
	}
	if a, b := newNetSetup(100), newNetSetup(101); a.ns == b.ns || a.hostIf == b.hostIf || a.hostAddr == b.hostAddr {
		t.Errorf("two pids share a setup: %+v %+v", a, b)
	}
	s := newNetSetup(42)
	cmds := s.commands()
	if !slices.Equal(cmds[0], []string{"netns", "add", s.ns}) {
		t.Errorf("first command %v: want the namespace made first", cmds[0])
	}
	for _, c := range cmds[1:] {
		if slices.Contains(c, "add") && !slices.Contains(c, s.ns) && !slices.Contains(c, s.hostIf) {
			t.Errorf("command %v touches neither the measure's namespace nor its veth", c)
		}
	}
}

func TestIPNotFound(t *testing.T) {
	for msg, want := range map[string]bool{
		`ip link del vbnh1: exit status 1: Cannot find device "vbnh1"`:                                                    true,
		`ip netns del vbnet1: exit status 1: Cannot remove namespace file "/run/netns/vbnet1": No such file or directory`: true,
		`ip link del vbnh1: exit status 2: RTNETLINK answers: Operation not permitted`:                                    false,
	} {
		if got := ipNotFound(errors.New(msg)); got != want {
			t.Errorf("ipNotFound(%q) = %v, want %v", msg, got, want)
		}
	}
}

func TestNetSkipReason(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	got := netSkipReason()
	if !strings.Contains(got, "needs ip") && !strings.Contains(got, "needs root") {
		t.Errorf("without ip on PATH: skip reason %q", got)
	}
}
