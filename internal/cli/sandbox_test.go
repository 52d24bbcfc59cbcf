package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/persist"
	"github.com/vessel-containers/vessel/internal/procid"
)

// sandboxApp runs `vessel sandbox ...` with a --root.
func sandboxApp(out *bytes.Buffer) *cli.App {
	app := testApp(sandboxCommand(), out)
	app.Flags = append(app.Flags, &cli.StringFlag{Name: "root"})
	return app
}

func TestSandboxListAndInspect(t *testing.T) {
	root := t.TempDir()
	sbRoot := filepath.Join(root, "sandboxes")
	self, err := procid.Of(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	save := func(s *persist.Sandbox) {
		t.Helper()
		dir := filepath.Join(sbRoot, s.ID)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := persist.Save(dir, s); err != nil {
			t.Fatal(err)
		}
	}
	// A running one: this test process stands in for its VMM.
	save(&persist.Sandbox{
		ID: "sb-run", Created: time.Now(), Hypervisor: "qemu", State: "running", VMPid: self.Pid, VMStartTime: self.StartTime,
		VCPUs: 2, MemoryMiB: 512, SharedFS: "virtio-9p", DebugConsole: true,
		Containers: map[string]persist.Container{"c1": {
			ID: "c1", Rootfs: "/b/rootfs", State: "running",
			Mounts:  []persist.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
			Devices: []persist.Device{{ID: "disk0", Type: "blk", Address: "02/00", ContainerPath: "/dev/vdb"}},
		}},
	})
	// A failed one whose VMM is gone.
	save(&persist.Sandbox{
		ID: "sb-dead", Created: time.Now(), Hypervisor: "qemu", State: "stopped", VMPid: self.Pid, VMStartTime: self.StartTime + 1,
		Error: "qemu sb-dead exited: guest crashed: guest kernel panic: x\n--- guest kernel ---\nKernel panic",
	})
	// Being created: no state yet.
	if err := os.MkdirAll(filepath.Join(sbRoot, "sb-new"), 0o700); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := sandboxApp(&out).Run([]string{"vessel", "--root", root, "sandbox", "ls"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("ls: got %d lines, want a header and 2 sandboxes:\n%s", len(lines), out.String())
	}
	for i, want := range [][]string{
		{"ID", "STATE", "VM PID"},
		{"sb-dead", "stopped", " (gone)", "guest kernel panic: x"},
		{"sb-run", "running", "512MiB"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("ls line %d %q lacks %q", i, lines[i], w)
			}
		}
	}
	if strings.Contains(lines[2], "gone") {
		t.Errorf("ls: the running sandbox's VMM is reported gone: %q", lines[2])
	}

	out.Reset()
	if err := sandboxApp(&out).Run([]string{"vessel", "--root", root, "sandbox", "inspect", "sb-run"}); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("inspect: %v\n%s", err, out.String())
	}
	for k, want := range map[string]any{
		"id": "sb-run", "state": "running", "vm_running": true, "vcpus": float64(2), "memory_mib": float64(512),
		"debug_socket": filepath.Join(sbRoot, "sb-run", "debug.sock"), "state_dir": filepath.Join(sbRoot, "sb-run"),
	} {
		if got[k] != want {
			t.Errorf("inspect %s: got %v, want %v", k, got[k], want)
		}
	}
	if rss, _ := got["vm_rss_bytes"].(float64); rss <= 0 {
		t.Errorf("inspect vm_rss_bytes: got %v, want the stand-in's RSS", got["vm_rss_bytes"])
	}
	if !strings.Contains(out.String(), `"container_path": "/dev/vdb"`) || !strings.Contains(out.String(), `"destination": "/proc"`) {
		t.Errorf("inspect lacks the container's devices and mounts:\n%s", out.String())
	}

	out.Reset()
	err = sandboxApp(&out).Run([]string{"vessel", "--root", root, "sandbox", "inspect", "sb-none"})
	if err == nil || !strings.Contains(err.Error(), "sandbox sb-none: no state") {
		t.Errorf("inspect of a missing sandbox: %v", err)
	}

	// A corrupt state is reported, after the readable ones.
	if err := os.MkdirAll(filepath.Join(sbRoot, "sb-bad"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sbRoot, "sb-bad", "state.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = sandboxApp(&out).Run([]string{"vessel", "--root", root, "sandbox", "ls", "--format", "json"})
	if err == nil || !strings.Contains(err.Error(), "sb-bad") {
		t.Errorf("ls with a corrupt state: %v, want an error naming it", err)
	}
	var all []map[string]any
	if jerr := json.Unmarshal(out.Bytes(), &all); jerr != nil || len(all) != 2 {
		t.Errorf("ls json: %v, %d sandboxes, want 2:\n%s", jerr, len(all), out.String())
	}
}
