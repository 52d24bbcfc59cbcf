//go:build linux

package boot

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// writeModule writes a minimal relocatable ELF file with a .modinfo section.
func writeModule(t *testing.T, path, modinfo string) {
	t.Helper()
	shstr := "\x00.modinfo\x00.shstrtab\x00"
	var body bytes.Buffer
	const hdrLen = 64
	shstrOff := hdrLen
	infoOff := shstrOff + len(shstr)
	shOff := (infoOff + len(modinfo) + 7) &^ 7
	hdr := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: 1,
		Shoff: uint64(shOff), Ehsize: hdrLen, Shentsize: 64, Shnum: 3, Shstrndx: 2,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	must(t, binary.Write(&body, binary.LittleEndian, hdr))
	body.WriteString(shstr)
	body.WriteString(modinfo)
	body.Write(make([]byte, shOff-body.Len()))
	for _, sh := range []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Off: uint64(infoOff), Size: uint64(len(modinfo)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: uint64(shstrOff), Size: uint64(len(shstr)), Addralign: 1},
	} {
		must(t, binary.Write(&body, binary.LittleEndian, sh))
	}
	must(t, os.MkdirAll(filepath.Dir(path), 0o755))
	must(t, os.WriteFile(path, body.Bytes(), 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestReadModinfo(t *testing.T) {
	p := filepath.Join(t.TempDir(), "virtio_console.ko")
	writeModule(t, p, "license=GPL\x00depends=virtio,virtio-ring\x00vermagic=6.1\x00")
	got, err := ReadModinfo(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"virtio", "virtio_ring"}; !slices.Equal(got, want) {
		t.Fatalf("depends = %v, want %v", got, want)
	}
}

func TestReadOrder(t *testing.T) {
	root := t.TempDir()
	dir := "lib/modules/6.1.0/kernel"
	// 9pnet_virtio depends on 9pnet and virtio_ring; 9p depends on 9pnet. The order file
	// lists them in the wrong order; the compressed module cannot be read and stays put.
	writeModule(t, filepath.Join(root, dir, "9p.ko"), "depends=9pnet,netfs\x00")
	writeModule(t, filepath.Join(root, dir, "9pnet_virtio.ko"), "depends=9pnet,virtio_ring\x00")
	writeModule(t, filepath.Join(root, dir, "9pnet.ko"), "depends=\x00")
	writeModule(t, filepath.Join(root, dir, "virtio_ring.ko"), "depends=\x00")
	must(t, os.WriteFile(filepath.Join(root, dir, "virtio-pci.ko.xz"), []byte("xz"), 0o644))
	order := filepath.Join(root, "modules.order")
	lines := ""
	for _, m := range []string{"9p.ko", "virtio-pci.ko.xz", "9pnet_virtio.ko", "9pnet.ko", "virtio_ring.ko"} {
		lines += dir + "/" + m + "\n"
	}
	must(t, os.WriteFile(order, []byte(lines+"\n# comment\n"), 0o644))

	mods, err := ReadOrder(context.Background(), root, order)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range mods {
		got = append(got, m.Name)
	}
	want := []string{"9pnet", "9p", "virtio_pci", "virtio_ring", "9pnet_virtio"}
	if !slices.Equal(got, want) {
		t.Fatalf("order = %v, want %v", got, want)
	}
}

func TestReadOrderMissingFile(t *testing.T) {
	mods, err := ReadOrder(context.Background(), "/", filepath.Join(t.TempDir(), "none"))
	if err != nil || mods != nil {
		t.Fatalf("got %v, %v; want nothing", mods, err)
	}
}

func TestOrderModulesKeepsGoodOrderAndBreaksCycles(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []Module
		want []string
	}{
		{"already ordered", []Module{{Name: "a"}, {Name: "b", Depends: []string{"a"}}, {Name: "c"}}, []string{"a", "b", "c"}},
		{"unknown dependency", []Module{{Name: "a", Depends: []string{"builtin"}}}, []string{"a"}},
		{"cycle", []Module{{Name: "a", Depends: []string{"b"}}, {Name: "b", Depends: []string{"a"}}}, []string{"b", "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, m := range OrderModules(tc.in) {
				got = append(got, m.Name)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLogLevel(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"console=ttyS0 panic=-1", "info"},
		{"console=ttyS0 vessel.log=debug quiet", "debug"},
		{"vessel.log=", "info"},
	} {
		if got := LogLevel(tc.in); got != tc.want {
			t.Errorf("LogLevel(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
