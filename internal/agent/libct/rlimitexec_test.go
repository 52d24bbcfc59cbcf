//go:build linux

package libct

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestNewProcessRlimitAS(t *testing.T) {
	args := []string{"sh", "-c", "true"}
	procMount := []specs.Mount{{Destination: "/proc/", Type: "proc", Source: "proc"}}
	as := specs.POSIXRlimit{Type: "RLIMIT_AS", Soft: 1 << 30, Hard: 2 << 30}
	nofile := specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 20}
	for _, tc := range []struct {
		name    string
		rlimits []specs.POSIXRlimit
		mounts  []specs.Mount
		step    bool
	}{
		{"no RLIMIT_AS", []specs.POSIXRlimit{nofile}, procMount, false},
		{"RLIMIT_AS with /proc", []specs.POSIXRlimit{nofile, as}, procMount, rlimitExecBuilt},
		{"RLIMIT_AS without /proc", []specs.POSIXRlimit{nofile, as}, []specs.Mount{{Destination: "/sys", Type: "sysfs"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewProcess(&specs.Process{Args: args, Rlimits: tc.rlimits}, true, tc.mounts, Stdio{})
			if err != nil {
				t.Fatal(err)
			}
			wantArgs := args
			wantRlimits := len(tc.rlimits)
			if tc.step {
				wantArgs = append([]string{"/proc/self/exe", rlimitExecMark, "1073741824", "2147483648"}, args...)
				wantRlimits--
			}
			if !slices.Equal(p.p.Args, wantArgs) {
				t.Errorf("args %q, want %q", p.p.Args, wantArgs)
			}
			if len(p.p.Rlimits) != wantRlimits {
				t.Errorf("libcontainer sets %d rlimits (%v), want %d", len(p.p.Rlimits), p.p.Rlimits, wantRlimits)
			}
		})
	}
	_, err := NewProcess(&specs.Process{Args: args, Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_AS", Soft: 2, Hard: 1}}}, false, procMount, Stdio{})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "RLIMIT_AS") {
		t.Errorf("soft above hard: %v, want an invalid-argument error naming RLIMIT_AS", err)
	}
}

// TestRlimitExecStep runs this test binary, which carries vessel_rlimit_as_exec as the
// agent does, as the RLIMIT_AS step.
func TestRlimitExecStep(t *testing.T) {
	if !rlimitExecBuilt {
		t.Skip("built without cgo: no RLIMIT_AS step")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(self)
		cmd.Args = append([]string{"/proc/self/exe"}, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("run %q: %v", args, err)
		}
		return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
	}
	step := rlimitExecArgs(1<<30, 2<<30, []string{"sh", "-c", "ulimit -S -v; ulimit -H -v; cat /proc/$$/comm"})[1:]
	if out, errOut, code := run(step...); code != 0 || out != "1048576\n2097152\nsh\n" {
		t.Errorf("step: exit %d, stdout %q, stderr %q; want the limits in KiB and comm sh", code, out, errOut)
	}
	if _, errOut, code := run(rlimitExecArgs(1<<30, 2<<30, []string{"/no/such/program"})[1:]...); code != 255 || !strings.Contains(errOut, "/no/such/program") {
		t.Errorf("missing program: exit %d, stderr %q; want 255 naming it", code, errOut)
	}
	if _, errOut, code := run(rlimitExecMark, "1x", "2", "true"); code != 255 || !strings.Contains(errOut, "not a number") {
		t.Errorf("bad limit: exit %d, stderr %q; want 255, not a number", code, errOut)
	}
	if _, errOut, code := run(rlimitExecMark, "3", "2", "true"); code != 255 || !strings.Contains(errOut, "RLIMIT_AS") {
		t.Errorf("soft above hard: exit %d, stderr %q; want 255 naming RLIMIT_AS", code, errOut)
	}
}
