package floor

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	_ "github.com/vessel-containers/vessel/internal/hypervisor/qemu"
	"github.com/vessel-containers/vessel/internal/testutil"
)

func TestPoweroffInitIsAStaticExecutable(t *testing.T) {
	f, err := elf.NewFile(bytes.NewReader(PoweroffInit()))
	if err != nil {
		t.Fatal(err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		t.Fatalf("got class %v machine %v type %v, want a 64-bit x86-64 executable", f.Class, f.Machine, f.Type)
	}
	if len(f.Progs) != 1 || f.Progs[0].Type != elf.PT_LOAD {
		t.Fatalf("got %d program headers, want one PT_LOAD", len(f.Progs))
	}
	p := f.Progs[0]
	if f.Entry < p.Vaddr || f.Entry >= p.Vaddr+p.Filesz {
		t.Errorf("entry %#x outside the loaded segment %#x+%d", f.Entry, p.Vaddr, p.Filesz)
	}
	code := make([]byte, len(poweroffCode))
	if _, err := p.ReadAt(code, int64(f.Entry-p.Vaddr)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(code, poweroffCode) {
		t.Error("entry point does not hold the power-off code")
	}
}

// TestBootPowersOff boots the floor VM with the built guest kernel.
func TestBootPowersOff(t *testing.T) {
	g := testutil.RequiresVM(t)
	dir, err := os.MkdirTemp("", "vfl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	initrd := filepath.Join(dir, "floor.img")
	if err := WriteInitramfs(initrd); err != nil {
		t.Fatal(err)
	}
	share := filepath.Join(dir, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := hypervisor.Config{
		ID: "floor-test", StateDir: dir, Kernel: g.Kernel, Initrd: initrd,
		VCPUs: 1, MemoryMiB: 256, SharedFS: hypervisor.SharedFS9P, SharedDir: share, ShareTag: "floor",
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := Boot(ctx, "qemu", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got <= 0 || got > 30*time.Second {
		t.Errorf("got boot time %v, want between 0 and 30s", got)
	}
	t.Logf("floor boot: %v", got)
}
