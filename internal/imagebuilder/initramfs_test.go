package imagebuilder

import (
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/pierrec/lz4/v4"
)

// newcEntry is one parsed newc member, every header field kept.
type newcEntry struct {
	name                          string
	ino, mode, uid, gid, nlink    uint64
	mtime, size                   uint64
	devMajor, devMinor, rdevMajor uint64
	rdevMinor, check              uint64
	body                          []byte
}

// parseNewc parses a whole uncompressed newc archive, trailer excluded, checking the
// magic and the 4-byte alignment of every header and body.
func parseNewc(t *testing.T, data []byte) []newcEntry {
	t.Helper()
	var out []newcEntry
	off := 0
	for {
		if off%4 != 0 {
			t.Fatalf("header at offset %d is not 4-byte aligned", off)
		}
		if off+110 > len(data) || string(data[off:off+6]) != "070701" {
			t.Fatalf("no newc header at offset %d", off)
		}
		var f [13]uint64
		for i := range f {
			v, err := strconv.ParseUint(string(data[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("header field %d at offset %d: %v", i, off, err)
			}
			f[i] = v
		}
		nameSize := int(f[11])
		name := string(data[off+110 : off+110+nameSize-1])
		if data[off+110+nameSize-1] != 0 {
			t.Fatalf("name %q is not NUL-terminated", name)
		}
		off = (off + 110 + nameSize + 3) &^ 3
		body := data[off : off+int(f[6])]
		off = (off + int(f[6]) + 3) &^ 3
		if name == "TRAILER!!!" {
			if off != len(data) {
				t.Errorf("%d bytes after the trailer", len(data)-off)
			}
			return out
		}
		out = append(out, newcEntry{
			name: name, ino: f[0], mode: f[1], uid: f[2], gid: f[3], nlink: f[4], mtime: f[5], size: f[6],
			devMajor: f[7], devMinor: f[8], rdevMajor: f[9], rdevMinor: f[10], check: f[12], body: body,
		})
	}
}

// unlz4 decompresses an initramfs and checks that it is in the LZ4 legacy frame format
// (magic 0x184C2102), the one the kernel's unpacker reads.
func unlz4(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte{0x02, 0x21, 0x4c, 0x18}) {
		t.Fatalf("%s does not start with the LZ4 legacy magic: % x", path, raw[:min(len(raw), 4)])
	}
	data, err := io.ReadAll(lz4.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatalf("%s is not LZ4: %v", path, err)
	}
	return data
}

func TestBuildInitramfsDefault(t *testing.T) {
	dir := t.TempDir()
	agent := staticBinary(t, dir, "vessel-agent")
	out := filepath.Join(dir, "out", "initramfs.img")
	if err := BuildInitramfs(testContext(t), InitramfsOptions{Output: out, Agent: agent}); err != nil {
		t.Fatalf("BuildInitramfs: %v", err)
	}
	entries := parseNewc(t, unlz4(t, out))

	type want struct {
		mode uint64
		rdev [2]uint64
	}
	wants := map[string]want{
		"dev":         {mode: 0o040755},
		"dev/console": {mode: 0o020600, rdev: [2]uint64{5, 1}},
		"dev/null":    {mode: 0o020666, rdev: [2]uint64{1, 3}},
		"etc":         {mode: 0o040755},
		"init":        {mode: 0o100755},
		"lib":         {mode: 0o040755},
		"lib/vessel":  {mode: 0o040755},
		"proc":        {mode: 0o040555},
		"run":         {mode: 0o040755},
		"sys":         {mode: 0o040555},
		"tmp":         {mode: 0o041777},
	}
	var names []string
	agentBytes, _ := os.ReadFile(agent)
	for i, e := range entries {
		names = append(names, e.name)
		w, ok := wants[e.name]
		if !ok {
			t.Errorf("unexpected entry %s", e.name)
			continue
		}
		if e.mode != w.mode || e.rdevMajor != w.rdev[0] || e.rdevMinor != w.rdev[1] {
			t.Errorf("%s: mode %o rdev %d:%d, want mode %o rdev %d:%d", e.name, e.mode, e.rdevMajor, e.rdevMinor, w.mode, w.rdev[0], w.rdev[1])
		}
		if e.uid != 0 || e.gid != 0 || e.mtime != 0 || e.ino != uint64(i+1) {
			t.Errorf("%s: uid %d gid %d mtime %d ino %d, want 0 0 0 %d", e.name, e.uid, e.gid, e.mtime, e.ino, i+1)
		}
		if e.name == "init" && !bytes.Equal(e.body, agentBytes) {
			t.Error("init is not the agent binary")
		}
	}
	if len(names) != len(wants) {
		t.Errorf("entries = %v, want exactly %d", names, len(wants))
	}
	if !slices.IsSorted(names) {
		t.Errorf("entries are not sorted: %v", names)
	}
	assertNoTempFiles(t, filepath.Dir(out), "initramfs.img")
}

func TestBuildInitramfsFull(t *testing.T) {
	dir := t.TempDir()
	agent := staticBinary(t, dir, "vessel-agent")
	busybox := staticBinary(t, dir, "busybox")
	mods := &ModuleSet{KernelVersion: "6.1.0-28-cloud-amd64", Modules: []Module{
		{Name: "virtio_pci_modern_dev", Path: "kernel/drivers/virtio/virtio_pci_modern_dev.ko", Data: []byte("modern")},
		{Name: "virtio_pci", Path: "kernel/drivers/virtio/virtio_pci.ko", Data: []byte("pci")},
	}}
	opts := InitramfsOptions{Output: filepath.Join(dir, "a.img"), Agent: agent, Busybox: busybox, Modules: mods}
	if err := BuildInitramfs(testContext(t), opts); err != nil {
		t.Fatalf("BuildInitramfs: %v", err)
	}
	raw := unlz4(t, opts.Output)
	byName := map[string]newcEntry{}
	seen := map[string]bool{}
	for _, e := range parseNewc(t, raw) {
		byName[e.name] = e
		if parent := filepath.Dir(e.name); parent != "." && !seen[parent] {
			t.Errorf("%s comes before its parent directory %s", e.name, parent)
		}
		seen[e.name] = true
	}
	if e := byName["bin/sh"]; e.mode != 0o120777 || string(e.body) != "busybox" {
		t.Errorf("bin/sh: mode %o target %q, want a symlink to busybox", e.mode, e.body)
	}
	if e := byName["bin/busybox"]; e.mode != 0o100755 || e.size == 0 {
		t.Errorf("bin/busybox: mode %o size %d", e.mode, e.size)
	}
	order := "lib/modules/6.1.0-28-cloud-amd64/kernel/drivers/virtio/virtio_pci_modern_dev.ko\n" +
		"lib/modules/6.1.0-28-cloud-amd64/kernel/drivers/virtio/virtio_pci.ko\n"
	if got := string(byName[ModulesOrderPath].body); got != order {
		t.Errorf("modules.order = %q, want %q", got, order)
	}
	if e := byName["lib/modules/6.1.0-28-cloud-amd64/kernel/drivers/virtio/virtio_pci.ko"]; string(e.body) != "pci" || e.mode != 0o100644 {
		t.Errorf("virtio_pci.ko: mode %o body %q", e.mode, e.body)
	}

	// An independent reader agrees on names, types, sizes and bodies.
	r := cpio.NewReader(bytes.NewReader(raw))
	n := 0
	for {
		hdr, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("cavaliergopher/cpio: %v", err)
		}
		n++
		mine := byName[hdr.Name]
		if uint64(hdr.Mode) != mine.mode {
			t.Errorf("%s: cpio.Reader mode %o, parsed %o", hdr.Name, hdr.Mode, mine.mode)
		}
		if hdr.Mode&^cpio.ModePerm == cpio.TypeSymlink {
			if hdr.Linkname != string(mine.body) {
				t.Errorf("%s: cpio.Reader link %q", hdr.Name, hdr.Linkname)
			}
			continue
		}
		body, _ := io.ReadAll(r)
		if !bytes.Equal(body, mine.body) {
			t.Errorf("%s: cpio.Reader body differs", hdr.Name)
		}
	}
	if n != len(byName) {
		t.Errorf("cpio.Reader saw %d entries, parsed %d", n, len(byName))
	}

	// Determinism: the same inputs give the same bytes, whatever the inputs' mtimes.
	if err := os.Chtimes(agent, time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	opts.Output = filepath.Join(dir, "b.img")
	if err := BuildInitramfs(testContext(t), opts); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "a.img"))
	b, _ := os.ReadFile(opts.Output)
	if !bytes.Equal(a, b) {
		t.Error("two builds from the same inputs differ")
	}
}

func TestBuildInitramfsErrors(t *testing.T) {
	dir := t.TempDir()
	dynamic := writeFile(t, filepath.Join(dir, "dyn"),
		testELF{typ: elf.ET_DYN, entry: 0x1000, interp: "/lib64/ld-linux-x86-64.so.2"}.bytes(t), 0o755)
	static := staticBinary(t, dir, "agent")
	out := filepath.Join(dir, "out", "initramfs.img")
	tests := []struct {
		name string
		opts InitramfsOptions
		want []string
	}{
		{"dynamic agent", InitramfsOptions{Output: out, Agent: dynamic}, []string{"dynamically linked (interpreter /lib64/ld-linux-x86-64.so.2)", "make agent"}},
		{"missing agent", InitramfsOptions{Output: out, Agent: filepath.Join(dir, "nope")}, []string{"not an ELF executable", "make agent"}},
		{"dynamic busybox", InitramfsOptions{Output: out, Agent: static, Busybox: dynamic}, []string{"busybox", "busybox-static"}},
		{"no output", InitramfsOptions{Agent: static}, []string{"required"}},
		{
			"module clashes with a directory",
			InitramfsOptions{Output: out, Agent: static, Modules: &ModuleSet{KernelVersion: "v", Modules: []Module{{Name: "x", Path: "x.ko"}, {Name: "x", Path: "x.ko"}}}},
			[]string{"added twice"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := BuildInitramfs(testContext(t), tt.opts)
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error = %v, want it to contain %q", err, w)
				}
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("output written despite the error")
			}
		})
	}
	assertNoTempFiles(t, filepath.Join(dir, "out"))
}

// assertNoTempFiles fails if dir holds anything but the allowed names.
func assertNoTempFiles(t *testing.T, dir string, allowed ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !slices.Contains(allowed, e.Name()) {
			t.Errorf("%s left in %s", e.Name(), dir)
		}
	}
}

func TestCpioArchiveAdd(t *testing.T) {
	a := newCpioArchive()
	for _, e := range []cpioEntry{
		{name: "/a/b/c", mode: cpioTypeReg | 0o644},
		{name: "a", mode: cpioTypeDir | 0o755}, // same as the implied parent: fine
	} {
		if err := a.add(e); err != nil {
			t.Fatalf("add %s: %v", e.name, err)
		}
	}
	if got, want := a.names(), []string{"a", "a/b", "a/b/c"}; !slices.Equal(got, want) {
		t.Errorf("names = %v, want %v", got, want)
	}
	if err := a.add(cpioEntry{name: "a/b/c/d", mode: cpioTypeReg}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("child of a file: %v", err)
	}
	if err := a.add(cpioEntry{name: "/", mode: cpioTypeDir}); err == nil {
		t.Error("empty name accepted")
	}
}
