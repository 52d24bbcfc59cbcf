//go:build linux

package factory

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	factoryv1 "github.com/vessel-containers/vessel/api/factory/v1"
	"github.com/vessel-containers/vessel/internal/procid"
)

// startChild starts cmd as a child of the test and returns its ID; the child is killed
// and reaped when the test ends.
func startChild(t *testing.T, name string, args ...string) (*exec.Cmd, procid.ID) {
	t.Helper()
	cmd := exec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	id, err := procid.Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, id
}

// TestCheckHandover checks what a taker accepts from the cache server before it acts on
// an answer: a VM directory of the cache and a running child of the server, named with
// its start time; nothing else.
func TestCheckHandover(t *testing.T) {
	dir := t.TempDir()
	vmDir := filepath.Join(dir, "vm")
	if err := os.Mkdir(vmDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(vmDir, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	_, child := startChild(t, "sleep", "1000")
	_, exited := startChild(t, "true")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if st, err := procid.ReadStat(exited.Pid); err == nil && st.State == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("true did not exit")
		}
	}
	self, err := procid.Self()
	if err != nil {
		t.Fatal(err)
	}
	server := os.Getpid()

	answer := func(id string, p procid.ID) *factoryv1.GetVMResponse {
		return &factoryv1.GetVMResponse{VmId: id, StateDir: filepath.Join(dir, id), Pid: int32(p.Pid), StartTime: p.StartTime}
	}
	for _, tc := range []struct {
		name string
		resp *factoryv1.GetVMResponse
		want string // "" for accepted
	}{
		{"child of the server", answer("vm", child), ""},
		{"the server itself", answer("vm", self), "want a child of the cache server"},
		{"another start time", answer("vm", procid.ID{Pid: child.Pid, StartTime: child.StartTime + 1}), "the process with that pid started at"},
		{"exited child", answer("vm", exited), "has exited"},
		{"pid 0", answer("vm", procid.ID{}), "want a process id"},
		{"negative pid", answer("vm", procid.ID{Pid: -1}), "want a process id"},
		{"empty id", answer("", child), "want one file name"},
		{"parent directory", answer("..", child), "want one file name"},
		{"path as id", answer("vm/../../x", child), "want one file name"},
		{"state dir elsewhere", &factoryv1.GetVMResponse{VmId: "vm", StateDir: "/", Pid: int32(child.Pid), StartTime: child.StartTime}, "state dir \"/\""},
		{"state dir a symlink", answer("link", child), "want a directory"},
		{"state dir a file", answer("file", child), "want a directory"},
		{"no state dir", answer("gone", child), "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, stateDir, err := checkHandover(tc.resp, dir, server)
			if tc.want == "" {
				if err != nil || got != child || stateDir != vmDir {
					t.Errorf("got %s in %s, %v; want %s in %s", got, stateDir, err, child, vmDir)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %s, error %v; want an error containing %q", got, err, tc.want)
			}
		})
	}
}
