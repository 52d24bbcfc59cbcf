package imagebuilder

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

// testELF describes a tiny ELF64 little-endian file for tests.
type testELF struct {
	typ      elf.Type
	machine  elf.Machine // default: the host's
	entry    uint64
	interp   string            // adds a PT_INTERP segment
	sections map[string][]byte // PROGBITS sections by name
}

// bytes lays the file out as: header, program headers, segment/section data, .shstrtab,
// section headers.
func (e testELF) bytes(t testing.TB) []byte {
	t.Helper()
	machine := e.machine
	if machine == 0 {
		machine = hostMachine()
	}
	var progs []elf.Prog64
	var data bytes.Buffer
	ehdrSize, phdrSize, shdrSize := 64, 56, 64
	nprog := 0
	if e.interp != "" {
		nprog = 1
	}
	dataOff := uint64(ehdrSize + nprog*phdrSize)
	if e.interp != "" {
		progs = append(progs, elf.Prog64{
			Type: uint32(elf.PT_INTERP), Flags: uint32(elf.PF_R), Off: dataOff,
			Filesz: uint64(len(e.interp) + 1), Memsz: uint64(len(e.interp) + 1), Align: 1,
		})
		data.WriteString(e.interp + "\x00")
	}
	names := make([]string, 0, len(e.sections))
	for n := range e.sections {
		names = append(names, n)
	}
	sort.Strings(names)
	shstrtab := bytes.NewBufferString("\x00")
	shdrs := []elf.Section64{{}} // the null section
	for _, n := range names {
		shdrs = append(shdrs, elf.Section64{
			Name: uint32(shstrtab.Len()), Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC),
			Off: dataOff + uint64(data.Len()), Size: uint64(len(e.sections[n])), Addralign: 1,
		})
		shstrtab.WriteString(n + "\x00")
		data.Write(e.sections[n])
	}
	shdrs = append(shdrs, elf.Section64{
		Name: uint32(shstrtab.Len()), Type: uint32(elf.SHT_STRTAB),
		Off: dataOff + uint64(data.Len()), Addralign: 1,
	})
	shstrtab.WriteString(".shstrtab\x00")
	shdrs[len(shdrs)-1].Size = uint64(shstrtab.Len())
	data.Write(shstrtab.Bytes())
	for data.Len()%8 != 0 {
		data.WriteByte(0)
	}

	hdr := elf.Header64{
		Type: uint16(e.typ), Machine: uint16(machine), Version: uint32(elf.EV_CURRENT),
		Entry: e.entry, Shoff: dataOff + uint64(data.Len()),
		Ehsize: uint16(ehdrSize), Phentsize: uint16(phdrSize), Phnum: uint16(len(progs)),
		Shentsize: uint16(shdrSize), Shnum: uint16(len(shdrs)), Shstrndx: uint16(len(shdrs) - 1),
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	if len(progs) > 0 {
		hdr.Phoff = uint64(ehdrSize)
	}

	var out bytes.Buffer
	for _, v := range []any{hdr, progs, data.Bytes(), shdrs} {
		if err := binary.Write(&out, binary.LittleEndian, v); err != nil {
			t.Fatalf("encode ELF: %v", err)
		}
	}
	return out.Bytes()
}

// writeFile writes data to path (creating parents) and returns path.
func writeFile(t testing.TB, path string, data []byte, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// staticBinary writes a static executable ELF to dir/name.
func staticBinary(t testing.TB, dir, name string) string {
	t.Helper()
	return writeFile(t, filepath.Join(dir, name), testELF{typ: elf.ET_EXEC, entry: 0x401000}.bytes(t), 0o755)
}

// moduleObject returns a relocatable ELF with a .modinfo section naming its dependencies.
func moduleObject(t testing.TB, name string, depends ...string) []byte {
	t.Helper()
	modinfo := "license=GPL\x00depends=" + strings.Join(depends, ",") + "\x00retpoline=Y\x00name=" + name + "\x00vermagic=6.1.0-test SMP mod_unload\x00"
	return testELF{typ: elf.ET_REL, sections: map[string][]byte{
		".text":    {0xc3},
		".modinfo": []byte(modinfo),
	}}.bytes(t)
}

// writeModule writes a module to modulesDir/rel, xz-compressed when rel ends in .xz, and
// returns the uncompressed object.
func writeModule(t testing.TB, modulesDir, rel string, depends ...string) []byte {
	t.Helper()
	obj := moduleObject(t, moduleName(rel), depends...)
	data := obj
	if strings.HasSuffix(rel, ".xz") {
		var buf bytes.Buffer
		w, err := xz.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(obj); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		data = buf.Bytes()
	}
	writeFile(t, filepath.Join(modulesDir, rel), data, 0o644)
	return obj
}

func TestTestELFParses(t *testing.T) {
	f, err := elf.NewFile(bytes.NewReader(moduleObject(t, "x", "a", "b")))
	if err != nil {
		t.Fatalf("parse generated module: %v", err)
	}
	if f.Section(".modinfo") == nil {
		t.Fatal("generated module has no .modinfo")
	}
	exe, err := elf.NewFile(bytes.NewReader(testELF{typ: elf.ET_EXEC, interp: "/lib/ld.so", entry: 1}.bytes(t)))
	if err != nil {
		t.Fatalf("parse generated executable: %v", err)
	}
	if len(exe.Progs) != 1 || exe.Progs[0].Type != elf.PT_INTERP {
		t.Fatalf("progs = %v, want one PT_INTERP", exe.Progs)
	}
}
