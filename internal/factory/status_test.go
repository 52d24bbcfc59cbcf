package factory

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	factoryv1 "github.com/vessel-containers/vessel/api/factory/v1"
)

// writeTemplate writes a template's files and metadata into dir, as build would.
func writeTemplate(t *testing.T, dir string) *templateMeta {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "memory-1"), make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state-1"), []byte("device state"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum, size, err := fileSHA256(filepath.Join(dir, "state-1"))
	if err != nil {
		t.Fatal(err)
	}
	m := &templateMeta{
		Version: metaVersion, Created: time.Now().UTC(), Driver: "qemu", Key: Key{{"driver", "qemu"}},
		MemoryFile: "memory-1", MemorySize: 4096, StateFile: "state-1", StateSize: size, StateSHA256: sum,
	}
	m.Hash = m.Key.Hash()
	if err := writeJSON(filepath.Join(dir, metaName), m); err != nil {
		t.Fatal(err)
	}
	return m
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestTemplateVerify(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string, m *templateMeta)
		want   string // "" loads
	}{
		{"intact", nil, ""},
		{"absent", func(t *testing.T, dir string, _ *templateMeta) { os.Remove(filepath.Join(dir, metaName)) }, "no template"},
		{"garbage metadata", func(t *testing.T, dir string, _ *templateMeta) {
			must(t, os.WriteFile(filepath.Join(dir, metaName), []byte("{"), 0o600))
		}, "corrupt template metadata"},
		{"other version", func(t *testing.T, dir string, m *templateMeta) {
			m.Version = 99
			must(t, writeJSON(filepath.Join(dir, metaName), m))
		}, "version 99"},
		{"memory truncated", func(t *testing.T, dir string, _ *templateMeta) {
			must(t, os.Truncate(filepath.Join(dir, "memory-1"), 100))
		}, "memory file is 100 bytes, want 4096"},
		{"memory missing", func(t *testing.T, dir string, _ *templateMeta) { os.Remove(filepath.Join(dir, "memory-1")) }, "no such file"},
		{"state changed", func(t *testing.T, dir string, _ *templateMeta) {
			must(t, os.WriteFile(filepath.Join(dir, "state-1"), []byte("device stat3"), 0o600))
		}, "does not match its digest"},
		{"path in a name", func(t *testing.T, dir string, m *templateMeta) {
			m.StateFile = "../state-1"
			must(t, writeJSON(filepath.Join(dir, metaName), m))
		}, "bad file names"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			m := writeTemplate(t, dir)
			if tc.damage != nil {
				tc.damage(t, dir, m)
			}
			ts := &templateStore{dir: dir}
			got, err := ts.load()
			if tc.want == "" {
				if err != nil || got.Hash != m.Hash {
					t.Errorf("load: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("load: got %v, want an error mentioning %q", err, tc.want)
			}
			if tc.name == "absent" && !errors.Is(err, errNoTemplate) {
				t.Errorf("absent template: %v is not errNoTemplate", err)
			}
		})
	}
}

func TestRemoveUnreferenced(t *testing.T) {
	dir := t.TempDir()
	m := writeTemplate(t, dir)
	for _, name := range []string{"memory-0", "state-0", "template.json.tmp"} {
		must(t, os.WriteFile(filepath.Join(dir, name), nil, 0o600))
	}
	must(t, os.Mkdir(filepath.Join(dir, "vm-0"), 0o700))
	(&templateStore{dir: dir}).removeUnreferenced(t.Context(), m)
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "memory-1 state-1 template.json" {
		t.Errorf("left: %s", got)
	}
}

func TestWriteStatus(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	shape := Shape{VCPUs: 1, MaxVCPUs: 2, MemoryMiB: 256, MaxMemoryMiB: 1024, MemorySlots: 10}
	ready := TemplateInfo{
		Path: "/run/vessel/template", Present: true, Hash: "abc", Shape: shape, Created: now.Add(-time.Hour),
		BootTime: 1500 * time.Millisecond, MemorySize: 256 << 20, MemoryTouched: 41 << 20, StateSize: 462 << 10, Mounted: true,
	}
	serving := CacheInfo{Endpoint: "/run/vessel/cache.sock", Status: &factoryv1.StatusResponse{
		Pid: 99, ConfigHash: "abc", Target: 2, Booting: 1, HandedOut: 5, Discarded: 1, BootFailures: 2,
		LastError: "boot failed\nwith detail", Shape: shapeToProto(shape),
		Ready: []*factoryv1.CachedVM{{VmId: "cache-1", Pid: 100, FromTemplate: true, ReadyUnixNano: now.Add(-90 * time.Second).UnixNano()}},
	}}
	for _, tc := range []struct {
		name  string
		tpl   TemplateInfo
		cache CacheInfo
		want  []string
	}{
		{"off", TemplateInfo{}, CacheInfo{}, []string{"factory: off"}},
		{"absent template", TemplateInfo{Path: "/t"}, CacheInfo{}, []string{"template: /t\n", "state:   absent"}},
		{"ready template", ready, CacheInfo{}, []string{
			"state:   ready, matches the configuration",
			"config:  abc, 1 vCPU (max 2), 256 MiB (max 1024 MiB, 10 slots)",
			"memory:  256 MiB file, 41 MiB touched", "device state 462 KiB",
			"built:   2026-11-25T11:00:00Z (1h0m0s ago), template VM booted in 1.5s", "tmpfs:   mounted",
		}},
		{"stale template", func() TemplateInfo {
			i := ready
			i.Problem = "stale: the configuration now differs in kernel.file"
			return i
		}(), CacheInfo{},
			[]string{"unusable: stale: the configuration now differs in kernel.file (rebuilt on next use)", "config:  abc"}},
		{"corrupt template", TemplateInfo{Path: "/t", Present: true, Problem: "corrupt template in /t: x"}, CacheInfo{},
			[]string{"unusable: corrupt template in /t: x"}},
		{"cache down", TemplateInfo{}, CacheInfo{Endpoint: "/c.sock", Err: fmt.Errorf("no server: %w", errdefs.ErrNotFound)},
			[]string{"cache: /c.sock", "not running (start it with: vessel factory init --cache N)"}},
		{"cache broken", TemplateInfo{}, CacheInfo{Endpoint: "/c.sock", Err: errors.New("permission denied")},
			[]string{"unreachable: permission denied"}},
		{"cache serving", TemplateInfo{}, serving, []string{
			"state:   serving (pid 99): 1 of 2 VMs ready, 1 booting",
			"counts:  5 handed out, 1 discarded, 2 failed boots",
			"last boot error: boot failed\n",
			"vm cache-1  pid 100  from template  ready for 1m30s",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			WriteStatus(&b, tc.tpl, tc.cache, now)
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("status lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}
