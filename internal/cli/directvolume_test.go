package cli

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/directvolume"
)

// TestDirectVolumeVerbs: add writes the record the shim reads, a bad document or a second
// add is refused, stats and resize name a volume no sandbox uses, resize refuses a size
// no disk takes before asking any sandbox, remove deletes the record.
func TestDirectVolumeVerbs(t *testing.T) {
	root := t.TempDir()
	run := func(args ...string) error {
		var out bytes.Buffer
		app := testApp(directVolumeCommand(), &out)
		return app.Run(append([]string{"vessel", "direct-volume", "--volume-root", root}, args...))
	}
	const vol = "/var/lib/kubelet/pv1/mount"
	if err := run("add", "--volume-path", vol, "--mount-info", `{"device": "/dev/sdb", "fstype": "ext4", "options": ["errors=remount-ro"]}`); err != nil {
		t.Fatal(err)
	}
	if info, err := directvolume.Lookup(root, vol); err != nil || info.Device != "/dev/sdb" {
		t.Fatalf("record: %+v %v", info, err)
	}
	for _, tc := range []struct {
		name string
		args []string
		is   func(error) bool
		want string
	}{
		{"second add", []string{"add", "--volume-path", vol, "--mount-info", `{"device": "/dev/sdc", "fstype": "ext4"}`}, errdefs.IsAlreadyExists, "recorded already"},
		{"unknown field", []string{"add", "--volume-path", "/v2", "--mount-info", `{"device": "/dev/sdc", "fs": "ext4"}`}, errdefs.IsInvalidArgument, "--mount-info"},
		{"stats unused", []string{"stats", "--volume-path", vol, "--sandbox-root", filepath.Join(root, "sb")}, errdefs.IsNotFound, "not used by a sandbox"},
		{"resize unused", []string{"resize", "--volume-path", vol, "--size", "1073741824", "--sandbox-root", filepath.Join(root, "sb")}, errdefs.IsNotFound, "not used by a sandbox"},
		{"resize to 0", []string{"resize", "--volume-path", vol, "--size", "0"}, errdefs.IsInvalidArgument, "--size 0 is not a positive multiple of 512"},
		{"resize odd", []string{"resize", "--volume-path", vol, "--size", "1000"}, errdefs.IsInvalidArgument, vol + ": --size 1000"},
		{"resize unknown", []string{"resize", "--volume-path", "/v3", "--size", "1048576", "--sandbox-root", filepath.Join(root, "sb")}, errdefs.IsNotFound, "/v3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(tc.args...)
			if err == nil || !tc.is(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := run("remove", "--volume-path", vol); err != nil {
		t.Fatal(err)
	}
	if _, err := directvolume.Lookup(root, vol); !errdefs.IsNotFound(err) {
		t.Errorf("after remove: %v, want not found", err)
	}
}
