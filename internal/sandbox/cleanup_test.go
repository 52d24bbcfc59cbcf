package sandbox

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hostcgroup"
	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/procid"
)

// sleeper starts a process that stands in for a VMM and returns its identity. It is killed
// and reaped at the end of the test; exited reports whether it exited within wait.
func sleeper(t *testing.T) (vmm procid.ID, exited func(wait time.Duration) bool) {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-waited })
	vmm, err := procid.Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return vmm, func(wait time.Duration) bool {
		select {
		case <-waited:
			return true
		case <-time.After(wait):
			return false
		}
	}
}

// goneProcess is the identity of a process that has exited and been reaped.
func goneProcess(t *testing.T) procid.ID {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return procid.ID{Pid: cmd.Process.Pid, StartTime: 1}
}

// sandboxDir makes <root>/<id> holding a state file with content raw, or none if raw is
// empty.
func sandboxDir(t *testing.T, id string, raw []byte) (root, dir string) {
	t.Helper()
	root = t.TempDir()
	dir = filepath.Join(root, id)
	if err := os.MkdirAll(filepath.Join(dir, "shared"), 0o700); err != nil {
		t.Fatal(err)
	}
	if len(raw) > 0 {
		if err := os.WriteFile(filepath.Join(dir, "state.json"), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root, dir
}

func stateJSON(t *testing.T, fields map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCleanup(t *testing.T) {
	self, err := procid.Self()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		// state returns the state file's content, given a live stand-in VMM.
		state    func(vmm procid.ID) []byte
		wantKill bool
		// wantErr is empty when Cleanup must succeed and remove the directory; otherwise
		// the error must contain it and the directory must stay.
		wantErr string
		errIs   func(error) bool
	}{
		{
			name: "recorded vm is killed",
			state: func(vmm procid.ID) []byte {
				return stateJSON(t, map[string]any{"version": 2, "id": "sb", "vm_pid": vmm.Pid, "vm_start_time": vmm.StartTime})
			},
			wantKill: true,
		},
		{
			name: "format 1 with a start time: vm is killed",
			state: func(vmm procid.ID) []byte {
				return stateJSON(t, map[string]any{"version": 1, "id": "sb", "vm_pid": vmm.Pid, "vm_start_time": vmm.StartTime})
			},
			wantKill: true,
		},
		{
			name: "reused pid is left alone",
			state: func(procid.ID) []byte {
				return stateJSON(t, map[string]any{"version": 2, "id": "sb", "vm_pid": self.Pid, "vm_start_time": self.StartTime + 1})
			},
		},
		{
			name: "vm already gone",
			state: func(procid.ID) []byte {
				gone := goneProcess(t)
				return stateJSON(t, map[string]any{"version": 2, "id": "sb", "vm_pid": gone.Pid, "vm_start_time": gone.StartTime})
			},
		},
		{
			name: "format 1 without a start time, pid gone",
			state: func(procid.ID) []byte {
				return stateJSON(t, map[string]any{"version": 1, "id": "sb", "vm_pid": goneProcess(t).Pid})
			},
		},
		{
			name: "format 1 without a start time, pid runs",
			state: func(vmm procid.ID) []byte {
				return stateJSON(t, map[string]any{"version": 1, "id": "sb", "vm_pid": vmm.Pid})
			},
			wantErr: "without a start time",
			errIs:   errdefs.IsFailedPrecondition,
		},
		{
			name:    "newer format",
			state:   func(procid.ID) []byte { return []byte(`{"version": 3, "id": "sb", "vm_pid": 1, "vm_start_time": 1}`) },
			wantErr: "format version 3",
		},
		{
			name:    "corrupt",
			state:   func(procid.ID) []byte { return []byte(`{"version": 2, "id": "sb", "vm_pid": 1`) },
			wantErr: "corrupt",
		},
		{
			name:  "no state",
			state: func(procid.ID) []byte { return nil },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vmm, exited := sleeper(t)
			root, dir := sandboxDir(t, "sb", tc.state(vmm))
			err := Cleanup(context.Background(), root, "sb")
			_, statErr := os.Stat(dir)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("cleanup: %v", err)
				}
				if !os.IsNotExist(statErr) {
					t.Errorf("sandbox dir after cleanup: %v, want it removed", statErr)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), dir) {
					t.Fatalf("cleanup: got %v, want an error containing %q and naming %s", err, tc.wantErr, dir)
				}
				if tc.errIs != nil && !tc.errIs(err) {
					t.Errorf("cleanup error %v is not of the expected kind", err)
				}
				if statErr != nil {
					t.Errorf("sandbox dir after a failed cleanup: %v, want it kept", statErr)
				}
			}
			// Cleanup waits for the VMM it kills: only the reaping here may lag.
			wait := 200 * time.Millisecond
			if tc.wantKill {
				wait = 5 * time.Second
			}
			if exited(wait) != tc.wantKill {
				t.Errorf("stand-in vmm killed: got %v, want %v", !tc.wantKill, tc.wantKill)
			}
		})
	}
	if err := Cleanup(context.Background(), t.TempDir(), "nosuch"); err != nil {
		t.Errorf("cleanup of a sandbox that does not exist: %v", err)
	}
}

// TestCleanupKeepsCgroupRecord checks that a host cgroup that cannot be removed keeps the
// sandbox directory with its record for the next cleanup, while the share goes.
func TestCleanupKeepsCgroupRecord(t *testing.T) {
	root, dir := sandboxDir(t, "sb", nil)
	if err := os.WriteFile(filepath.Join(dir, hostcgroup.StateName), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Cleanup(context.Background(), root, "sb")
	if err == nil || !strings.Contains(err.Error(), "host cgroup record") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("cleanup: got %v, want the cgroup record's error naming %s", err, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, hostcgroup.StateName)); err != nil {
		t.Errorf("cgroup record after a failed cleanup: %v, want it kept", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "shared")); !os.IsNotExist(err) {
		t.Errorf("share after the cleanup: %v, want it removed", err)
	}
}

// TestCleanupReleasesVMMIDLease checks that cleanup gives back the id slot leased for the
// dead owner's VMM, and only that one.
func TestCleanupReleasesVMMIDLease(t *testing.T) {
	leases := t.TempDir()
	pool := idrange.Pool{Start: 1 << 20, End: 1<<20 + 2*idrange.Size - 1}
	root, dir := sandboxDir(t, "sb", nil)
	other := t.TempDir()
	mine, err := idrange.Allocate(leases, pool, dir)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := idrange.Allocate(leases, pool, other)
	if err != nil {
		t.Fatal(err)
	}
	raw := stateJSON(t, map[string]any{"version": 2, "id": "sb", "vmm_id_lease_dir": leases})
	if err := os.WriteFile(filepath.Join(dir, "state.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(context.Background(), root, "sb"); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	ents, err := os.ReadDir(leases)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := strconv.FormatUint(uint64(theirs.Range.Start), 10); len(names) != 1 || names[0] != want {
		t.Errorf("leases after cleanup: %v, want only the other sandbox's %s (the cleaned one held %d)", names, want, mine.Range.Start)
	}
}
