package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/idrange"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want version
		ok   bool
	}{
		{"QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright", version{7, 2}, true},
		{"QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1~bpo12+1)\n", version{10, 0}, true},
		{"qemu: unknown option\n", version{}, false},
	} {
		got, err := parseVersion([]byte(tc.out))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseVersion(%q) = %v, %v; want %v (ok %v)", tc.out, got, err, tc.want, tc.ok)
		}
	}
	if !(version{8, 2}).atLeast(readOnlyRAMVersion) || !(version{10, 0}).atLeast(readOnlyRAMVersion) || (version{7, 2}).atLeast(readOnlyRAMVersion) || (version{8, 1}).atLeast(readOnlyRAMVersion) {
		t.Error("atLeast")
	}
}

// fakeQEMUVersion links this test binary (the fake QEMU) under a name that makes its
// -version print release v.
func fakeQEMUVersion(t *testing.T, v string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "qemu-"+v)
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	return link
}

// TestRestoreReadOnly asks the fake QEMU its release: from 8.2 a restored VM opens the
// template's memory file read-only (readonly=on,rom=off on its command line), also with
// an unprivileged VMM; before 8.2 the file is opened read-write, and an unprivileged VMM
// is refused with an error naming both settings and the release.
func TestRestoreReadOnly(t *testing.T) {
	ids := &idrange.Range{Start: 2000000000, Size: idrange.Size}
	for _, tc := range []struct {
		version  string
		userNS   *idrange.Range
		readOnly bool
		refused  bool
	}{
		{"7.2", nil, false, false},
		{"7.2", ids, false, true},
		{"8.2", nil, true, false},
		{"8.2", ids, true, false},
		{"10.0", ids, true, false},
	} {
		binary := fakeQEMUVersion(t, tc.version)
		cfg := baseConfig()
		cfg.SharedFS, cfg.SharedDir, cfg.ShareTag = hypervisor.SharedFS9P, "/run/vessel/sb1/shared", "vessel-shared"
		cfg.Template = &hypervisor.Template{Mode: hypervisor.TemplateRestore, MemoryPath: "/tpl/mem", StatePath: "/tpl/state"}
		cfg.UserNS = tc.userNS
		got, err := restoreReadOnly(&cfg, binary)
		if tc.refused {
			if err == nil || !strings.Contains(err.Error(), "factory.enable_template") || !strings.Contains(err.Error(), "hypervisor.vmm_id_range") || !strings.Contains(err.Error(), "QEMU "+tc.version) {
				t.Errorf("QEMU %s, unprivileged: %v, want an error naming factory.enable_template, hypervisor.vmm_id_range and QEMU %s", tc.version, err, tc.version)
			}
			continue
		}
		if err != nil || got != tc.readOnly {
			t.Errorf("QEMU %s (user namespace %v): read-only %v, %v; want %v", tc.version, tc.userNS != nil, got, err, tc.readOnly)
			continue
		}
		l := tcgLaunch
		l.readOnlyRAM = got
		ram := ""
		for _, o := range options(commandLine(&cfg, l))["-object"] {
			if strings.HasPrefix(o, "memory-backend-file,") {
				ram = o
			}
		}
		if strings.Contains(ram, ",readonly=on,rom=off") != tc.readOnly {
			t.Errorf("QEMU %s: guest RAM %q, want readonly=on,rom=off: %v", tc.version, ram, tc.readOnly)
		}
	}
	// A template being saved writes its file: no version question, never read-only.
	cfg := baseConfig()
	cfg.Template = &hypervisor.Template{Mode: hypervisor.TemplateSave, MemoryPath: "/tpl/mem", StatePath: "/tpl/state"}
	if ro, err := restoreReadOnly(&cfg, "/nonexistent/qemu"); ro || err != nil {
		t.Errorf("save: read-only %v, %v", ro, err)
	}
	if err := checkUnprivilegedTemplates(fakeQEMUVersion(t, "7.2")); err == nil {
		t.Error("checkUnprivilegedTemplates accepted QEMU 7.2")
	}
	if err := checkUnprivilegedTemplates(fakeQEMUVersion(t, "8.2")); err != nil {
		t.Errorf("checkUnprivilegedTemplates refused QEMU 8.2: %v", err)
	}
}
