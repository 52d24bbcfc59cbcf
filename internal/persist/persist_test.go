package persist

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	in := &Sandbox{ID: "s1", Created: time.Unix(1700000000, 0).UTC(), Hypervisor: "qemu", VMPid: 42, VMStartTime: 7, State: "running",
		FSDaemonPid: 43, FSDaemonStartTime: 8,
		Containers: map[string]Container{"c1": {ID: "c1", Rootfs: "/x/rootfs", State: "created"}}}
	if err := Save(dir, in); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.FSDaemonPid != 43 || got.FSDaemonStartTime != 8 {
		t.Fatalf("file system daemon: got %d/%d, want 43/8", got.FSDaemonPid, got.FSDaemonStartTime)
	}
	if got.ID != "s1" || got.VMPid != 42 || got.VMStartTime != 7 || got.Version != Version || got.Containers["c1"].Rootfs != "/x/rootfs" || !got.Created.Equal(in.Created) {
		t.Fatalf("got %+v, want %+v", got, in)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("got %d files in state dir, want only state.json", len(entries))
	}
}

func TestSaveRefusesVMWithoutStartTime(t *testing.T) {
	dir := t.TempDir()
	err := Save(dir, &Sandbox{ID: "s1", VMPid: 42})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "start time") {
		t.Fatalf("got %v, want an invalid-argument error about the start time", err)
	}
	if _, err := os.Stat(filepath.Join(dir, stateFile)); !os.IsNotExist(err) {
		t.Errorf("state file written despite the error: %v", err)
	}
	err = Save(dir, &Sandbox{ID: "s1", VMPid: 42, VMStartTime: 7, FSDaemonPid: 43})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "file system daemon pid 43 has no start time") {
		t.Fatalf("daemon without start time: got %v", err)
	}
	// A sandbox without a VM yet needs no start time.
	if err := Save(dir, &Sandbox{ID: "s1"}); err != nil {
		t.Errorf("state without a vm: %v", err)
	}
}

// copyTestdata puts testdata/name into a fresh directory as the state file.
func copyTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, stateFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestLoadVersion1 reads state files as the releases writing format 1 left them, and
// saves them again in the current format.
func TestLoadVersion1(t *testing.T) {
	for _, tc := range []struct {
		file      string
		id        string
		pid       int
		start     uint64
		resavable bool
	}{
		{"v1-start-time.json", "pod-b", 5151, 98765, true},
		// Written before the start time was recorded: read, but the VMM cannot be
		// identified, so it cannot be saved again as it is.
		{"v1-no-start-time.json", "pod-a", 4242, 0, false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			dir := copyTestdata(t, tc.file)
			st, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if st.Version != 1 || st.ID != tc.id || st.VMPid != tc.pid || st.VMStartTime != tc.start ||
				st.Hypervisor != "qemu" || st.AgentKind != "serial" || st.Containers[tc.id].State != "running" {
				t.Fatalf("got %+v", st)
			}
			err = Save(dir, st)
			if !tc.resavable {
				if err == nil {
					t.Fatal("saving a state without the vm's start time: got nil error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			again, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if again.Version != Version || again.VMPid != tc.pid || again.VMStartTime != tc.start || len(again.Containers) != len(st.Containers) {
				t.Errorf("after migration: got %+v", again)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); !errdefs.IsNotFound(err) {
		t.Fatalf("missing state: got %v, want not found", err)
	}
	for _, tc := range []struct {
		name, content, want string
	}{
		{"corrupt", "{", "corrupt"},
		{"no version", `{"id": "s1"}`, "no format version"},
		{"future version", `{"version": 99, "id": "s1"}`, "format version 99"},
		{"version 0", `{"version": 0, "id": "s1"}`, "format version 0"},
		{"no id", `{"version": 2}`, "no sandbox id"},
		{"format 2 without start time", `{"version": 2, "id": "s1", "vm_pid": 3}`, "without vm_start_time"},
		{"wrong type", `{"version": 2, "id": "s1", "vm_pid": "3"}`, "corrupt (format version 2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir)
			if err == nil || errdefs.IsNotFound(err) {
				t.Fatalf("got %v, want an error other than not found", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), filepath.Join(dir, stateFile)) {
				t.Errorf("got %q, want it to contain %q and name the file", err, tc.want)
			}
		})
	}
}
