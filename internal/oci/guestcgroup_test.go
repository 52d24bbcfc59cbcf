package oci

import (
	"context"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/config"
)

func TestGuestCgroupPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      string // substring of the error; "" for none
	}{
		{in: "", want: ""},
		{in: "/runc-cgroups-integration-test/test-cgroup-1", want: "/runc-cgroups-integration-test/test-cgroup-1"},
		{in: "/kubepods/besteffort/pod1/c1/", want: "/kubepods/besteffort/pod1/c1"},
		{in: "kubepods/pod1/c1", want: "/kubepods/pod1/c1"},
		{in: "/a/../../../b", want: "/b"},
		{in: "../../etc", want: "/etc"},
		{in: "/a//./b", want: "/a/b"},
		{in: "/", err: "names the root cgroup"},
		{in: "/a/..", err: "names the root cgroup"},
		{in: "..", err: "names the root cgroup"},
		// systemd's slice:prefix:name.
		{in: "system.slice:docker:abc", want: "/system.slice/docker-abc.scope"},
		{in: ":runc:abc", want: "/system.slice/runc-abc.scope"},
		{in: "machine.slice:runc-cgroups:integration-test-1", want: "/machine.slice/runc-cgroups-integration-test-1.scope"},
		{in: "kubepods-besteffort-pod1.slice:cri-containerd:c1", want: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-c1.scope"},
		{in: "-.slice:p:c1", want: "/p-c1.scope"},
		{in: "system.slice::c1", want: "/system.slice/-c1.scope"},
		{in: "machine.slice:x:pod-a.slice", want: "/machine.slice/pod-a.slice"},
		{in: "machine.slice:x:..", want: "/machine.slice/x-...scope"},
		{in: "system.slice:docker:", err: "empty name"},
		{in: "system:docker:abc", err: "not a systemd slice name"},
		{in: ".slice:docker:abc", err: "not a systemd slice name"},
		{in: "a--b.slice:docker:abc", err: "empty component"},
		{in: "-a.slice:docker:abc", err: "empty component"},
		// Colons in a path with a slash, or not three fields: a cgroupfs path.
		{in: "/a:b:c", want: "/a:b:c"},
		{in: "a:b", want: "/a:b"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := GuestCgroupPath(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.in) {
					t.Fatalf("GuestCgroupPath(%q) = %q, %v; want an error naming it with %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("GuestCgroupPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// GuestSpec carries the mapped path into the guest spec and fails on one it cannot map.
func TestGuestSpecCgroupsPath(t *testing.T) {
	for _, tc := range []struct{ path, want, err string }{
		{path: "machine.slice:libpod:c1", want: "/machine.slice/libpod-c1.scope"},
		{path: "", want: ""},
		{path: "/..", err: `guest spec of container c1: linux.cgroupsPath "/.." names the root cgroup`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			spec := hostSpec()
			spec.Linux.CgroupsPath = tc.path
			o := opts
			o.SandboxNamespaces = SandboxNamespacePaths(42, nil)
			c, err := ContainerConfig(context.Background(), "c1", bundle, spec, o)
			if err != nil {
				t.Fatal(err)
			}
			g, err := GuestSpec(c, config.Default())
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("GuestSpec: %v; want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g.Linux.CgroupsPath != tc.want {
				t.Errorf("guest cgroupsPath = %q, want %q", g.Linux.CgroupsPath, tc.want)
			}
		})
	}
}
