//go:build linux

package libct

import (
	"reflect"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestSysfsForUserNS(t *testing.T) {
	sysfs := specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}}
	bound := specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
	user := specs.LinuxNamespace{Type: specs.UserNamespace}
	for _, tc := range []struct {
		name string
		ns   []specs.LinuxNamespace
		want specs.Mount
	}{
		{"no user namespace", []specs.LinuxNamespace{{Type: specs.PIDNamespace}}, sysfs},
		{"user and network namespace", []specs.LinuxNamespace{user, {Type: specs.NetworkNamespace}}, sysfs},
		{"user namespace, shared network", []specs.LinuxNamespace{user}, bound},
		{"user namespace, joined network", []specs.LinuxNamespace{user, {Type: specs.NetworkNamespace, Path: "/proc/7/ns/net"}}, bound},
	} {
		in := []specs.Mount{{Destination: "/proc", Type: "proc"}, sysfs}
		got := sysfsForUserNS(in, tc.ns)
		if !reflect.DeepEqual(got[1], tc.want) || got[0].Type != "proc" {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
		if in[1].Type != "sysfs" {
			t.Errorf("%s: the input was changed", tc.name)
		}
	}
}
