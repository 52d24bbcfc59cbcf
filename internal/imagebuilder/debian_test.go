package imagebuilder

import (
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindDebianKernel(t *testing.T) {
	root := t.TempDir()
	for _, rel := range []string{"6.1.0-9-cloud-amd64", "6.1.0-10-cloud-amd64", "6.1.0-11-amd64"} {
		writeFile(t, filepath.Join(root, "boot", "vmlinuz-"+rel), []byte(rel), 0o644)
		if rel != "6.1.0-11-amd64" { // an image without modules is not usable
			if err := os.MkdirAll(filepath.Join(root, "lib", "modules", rel), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	dk, err := FindDebianKernel(root)
	if err != nil {
		t.Fatal(err)
	}
	want := DebianKernel{
		Release:    "6.1.0-10-cloud-amd64",
		Vmlinuz:    filepath.Join(root, "boot", "vmlinuz-6.1.0-10-cloud-amd64"),
		ModulesDir: filepath.Join(root, "lib", "modules", "6.1.0-10-cloud-amd64"),
	}
	if dk != want {
		t.Errorf("FindDebianKernel = %+v, want %+v", dk, want)
	}

	_, err = FindDebianKernel(t.TempDir())
	for _, w := range []string{"no Debian kernel installed", "apt-get install linux-image-cloud-amd64", "linux-image-amd64"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("empty root: error %v, want it to contain %q", err, w)
		}
	}
}

func TestReleaseLess(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"6.1.0-9-amd64", "6.1.0-10-amd64", true},
		{"6.1.0-10-amd64", "6.1.0-9-amd64", false},
		{"6.1.0-10-amd64", "6.1.0-10-cloud-amd64", true},
		{"5.10.0-30-amd64", "6.1.0-1-amd64", true},
		{"6.1.0-1", "6.1.0-1", false},
		{"6.1", "6.1.0", true},
	} {
		if got := releaseLess(tt.a, tt.b); got != tt.want {
			t.Errorf("releaseLess(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestGuestModules(t *testing.T) {
	required, optional := GuestModules()
	if len(required) == 0 || required[0] != "virtio_pci" {
		t.Errorf("required = %v: the bus driver virtio_pci must come first", required)
	}
	for _, m := range []string{"virtio_console", "virtio_rng", "overlay"} {
		if !strings.Contains(strings.Join(required, " "), m) {
			t.Errorf("required modules lack %s", m)
		}
	}
	for _, m := range []string{"9p", "9pnet_virtio", "virtiofs", "vmw_vsock_virtio_transport", "virtio_scsi"} {
		if !strings.Contains(" "+strings.Join(append(required, optional...), " ")+" ", " "+m+" ") {
			t.Errorf("guest modules lack %s", m)
		}
	}
}

func TestCheckStatic(t *testing.T) {
	dir := t.TempDir()
	other := elf.EM_AARCH64
	if hostMachine() == elf.EM_AARCH64 {
		other = elf.EM_X86_64
	}
	tests := []struct {
		name string
		elf  *testELF
		raw  string
		want string // error substring; "" means static
	}{
		{name: "static executable", elf: &testELF{typ: elf.ET_EXEC, entry: 0x401000}},
		{name: "static pie", elf: &testELF{typ: elf.ET_DYN, entry: 0x1000}},
		{name: "dynamic", elf: &testELF{typ: elf.ET_EXEC, entry: 1, interp: "/lib64/ld-linux-x86-64.so.2"}, want: "dynamically linked (interpreter /lib64/ld-linux-x86-64.so.2)"},
		{name: "shared library", elf: &testELF{typ: elf.ET_DYN}, want: "shared library"},
		{name: "object", elf: &testELF{typ: elf.ET_REL}, want: "not an executable"},
		{name: "other architecture", elf: &testELF{typ: elf.ET_EXEC, entry: 1, machine: other}, want: "the guest needs"},
		{name: "shell script", raw: "#!/bin/sh\n", want: "not an ELF executable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(tt.raw)
			if tt.elf != nil {
				data = tt.elf.bytes(t)
			}
			err := CheckStatic(writeFile(t, filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")), data, 0o755))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("CheckStatic: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("CheckStatic error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	// Real binaries, when present: /bin/sh is dynamic on Debian, busybox-static is not.
	if _, err := os.Stat("/bin/sh"); err == nil {
		if err := CheckStatic("/bin/sh"); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
			t.Errorf("/bin/sh: %v, want dynamically linked", err)
		}
	}
}
