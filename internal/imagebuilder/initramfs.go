package imagebuilder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/containerd/log"
	"github.com/pierrec/lz4/v4"
)

// Compression is how the initramfs is compressed: LZ4 in the legacy frame format the
// kernel's initramfs unpacker reads (CONFIG_RD_LZ4, set in the project kernel and in
// Debian's). Under software emulation (TCG) the guest kernel inflated the old gzip archive
// in about 200 ms of boot time; LZ4 unpacks in a fraction of that for a slightly larger
// file (see docs/benchmarks.md).
const Compression = "lz4"

// InitramfsOptions configures BuildInitramfs.
type InitramfsOptions struct {
	// Output is the image file, written atomically.
	Output string
	// Agent is the static vessel-agent binary; it becomes /init.
	Agent string
	// Busybox, when set, is a static busybox installed as /bin/busybox with /bin/sh linked
	// to it, for the debug console.
	Busybox string
	// Modules, when set, are installed under lib/modules/<release>/ with ModulesOrderPath.
	Modules *ModuleSet
	// Progress, when set, receives the stage "initramfs" and the bytes of the archive
	// written so far (before compression).
	Progress ProgressFunc
}

// BuildInitramfs writes an LZ4-compressed (legacy frames) newc initramfs holding /init (the agent, 0755),
// the directories /dev /proc /sys /run /tmp /etc /lib/vessel, the device nodes
// /dev/console (c 5:1) and /dev/null (c 1:3), and, when asked, the debug-console busybox
// and the kernel modules with their load order. Entries are sorted and carry fixed owners
// and times, so the same inputs give the same bytes.
func BuildInitramfs(ctx context.Context, opts InitramfsOptions) error {
	if opts.Output == "" || opts.Agent == "" {
		return errors.New("initramfs: output and agent paths are required")
	}
	if err := CheckStatic(opts.Agent); err != nil {
		return fmt.Errorf("agent: %w (build it with `make agent`: CGO_ENABLED=1, -tags netgo,osusergo, -extldflags -static)", err)
	}
	a := newCpioArchive()
	entries := []cpioEntry{
		{name: "init", mode: cpioTypeReg | 0o755, src: opts.Agent},
		{name: "dev", mode: cpioTypeDir | 0o755},
		{name: "dev/console", mode: cpioTypeChar | 0o600, rdev: [2]uint32{5, 1}},
		{name: "dev/null", mode: cpioTypeChar | 0o666, rdev: [2]uint32{1, 3}},
		{name: "proc", mode: cpioTypeDir | 0o555},
		{name: "sys", mode: cpioTypeDir | 0o555},
		{name: "run", mode: cpioTypeDir | 0o755},
		{name: "tmp", mode: cpioTypeDir | 0o1777},
		{name: "etc", mode: cpioTypeDir | 0o755},
		{name: "lib", mode: cpioTypeDir | 0o755},
		{name: "lib/vessel", mode: cpioTypeDir | 0o755},
	}
	if opts.Busybox != "" {
		if err := CheckStatic(opts.Busybox); err != nil {
			return fmt.Errorf("debug console busybox: %w (apt-get install busybox-static)", err)
		}
		entries = append(entries,
			cpioEntry{name: "bin/busybox", mode: cpioTypeReg | 0o755, src: opts.Busybox},
			cpioEntry{name: "bin/sh", mode: cpioTypeSymlink | 0o777, linkname: "busybox"},
		)
	}
	if m := opts.Modules; m != nil && len(m.Modules) > 0 {
		for _, mod := range m.Modules {
			entries = append(entries, cpioEntry{name: m.initramfsPath(mod), mode: cpioTypeReg | 0o644, data: mod.Data})
		}
		order := strings.Join(m.OrderLines(), "\n") + "\n"
		entries = append(entries, cpioEntry{name: ModulesOrderPath, mode: cpioTypeReg | 0o644, data: []byte(order)})
	}
	for _, e := range entries {
		if err := a.add(e); err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
	}
	const stage = "initramfs"
	total, err := a.size()
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	opts.Progress.report(Event{Stage: stage, Total: total, Unit: "bytes"})
	err = writeAtomic(opts.Output, 0o644, func(w io.Writer) error {
		zw := lz4.NewWriter(w)
		if err := zw.Apply(lz4.LegacyOption(true), lz4.CompressionLevelOption(lz4.Level9)); err != nil {
			return err
		}
		// Plain writes only: the LZ4 writer's ReadFrom (which io.Copy would use) fails in
		// legacy mode; countingWriter has none.
		cw := &countingWriter{w: zw, each: func(n int64) {
			opts.Progress.report(Event{Stage: stage, Done: n, Total: total, Unit: "bytes"})
		}}
		if err := a.writeTo(cw); err != nil {
			return err
		}
		return zw.Close()
	})
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	log.G(ctx).WithField("path", opts.Output).WithField("entries", len(a.entries)).Debug("initramfs written")
	return nil
}
