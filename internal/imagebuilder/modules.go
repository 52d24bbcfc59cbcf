package imagebuilder

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/log"
	"github.com/ulikunitz/xz"
)

// ModulesOrderPath is the initramfs file listing the modules the agent loads at boot: one
// path per line, relative to / (e.g. "lib/modules/6.1.0-28-cloud-amd64/kernel/fs/overlayfs/overlay.ko"),
// dependencies before the modules that need them.
const ModulesOrderPath = "lib/vessel/modules.order"

// Module is a kernel module resolved for the initramfs.
type Module struct {
	// Name is the module name with underscores (virtio_pci).
	Name string
	// Path is the module's path under the modules directory with any compression suffix
	// dropped (kernel/drivers/virtio/virtio_pci.ko): modules are stored uncompressed.
	Path string
	// Depends are the module names from .modinfo's depends=.
	Depends []string
	// Data is the uncompressed ELF object.
	Data []byte
}

// ModuleSet is a resolved module closure in load order.
type ModuleSet struct {
	// KernelVersion is the kernel release the modules belong to (lib/modules/<release>).
	KernelVersion string
	// Modules in load order: each module after all of its dependencies.
	Modules []Module
	// Builtin lists requested or needed modules that are built into the kernel.
	Builtin []string
	// Missing lists optional modules that are neither built in nor installed.
	Missing []string
}

// OrderLines returns the lines of ModulesOrderPath, in load order.
func (s *ModuleSet) OrderLines() []string {
	lines := make([]string, 0, len(s.Modules))
	for _, m := range s.Modules {
		lines = append(lines, s.initramfsPath(m))
	}
	return lines
}

func (s *ModuleSet) initramfsPath(m Module) string {
	return path.Join("lib/modules", s.KernelVersion, m.Path)
}

// ResolveModules finds the required and optional modules in dir (a /lib/modules/<release>
// directory), follows each module's .modinfo depends= to its dependencies, and returns them
// in load order, dependencies first, requested modules in the order given. Modules listed in
// dir/modules.builtin are skipped. A required module or any dependency that is neither
// installed nor built in is an error, as is a dependency cycle; a missing optional module is
// logged and recorded in Missing. Bus drivers must be requested explicitly: nothing depends
// on virtio_pci. Modules may be .ko or .ko.xz (or .ko.gz).
func ResolveModules(ctx context.Context, dir string, required, optional []string) (*ModuleSet, error) {
	idx, err := indexModules(dir)
	if err != nil {
		return nil, err
	}
	r := &resolver{idx: idx, state: map[string]int{}, set: &ModuleSet{KernelVersion: filepath.Base(dir)}}
	for _, want := range []struct {
		names    []string
		optional bool
	}{{required, false}, {optional, true}} {
		for _, name := range want.names {
			name = moduleName(name)
			_, installed := idx.files[name]
			if want.optional && !installed && !idx.builtin[name] {
				log.G(ctx).WithField("module", name).Warn("optional guest module is neither installed nor built in; skipping it")
				r.set.Missing = append(r.set.Missing, name)
				continue
			}
			if err := r.visit(name, ""); err != nil {
				return nil, err
			}
		}
	}
	return r.set, nil
}

// Visit states of resolver.state.
const (
	unvisited = iota
	visiting
	visited
)

type resolver struct {
	idx   *moduleIndex
	state map[string]int
	stack []string // modules being visited, outermost first
	set   *ModuleSet
}

// visit appends name after its dependencies (depth first, post order).
func (r *resolver) visit(name, neededBy string) error {
	switch r.state[name] {
	case visited:
		return nil
	case visiting:
		i := 0
		for r.stack[i] != name {
			i++
		}
		return fmt.Errorf("kernel module dependency cycle: %s", strings.Join(append(r.stack[i:], name), " -> "))
	}
	if r.idx.builtin[name] {
		r.state[name] = visited
		r.set.Builtin = append(r.set.Builtin, name)
		return nil
	}
	rel, ok := r.idx.files[name]
	if !ok {
		what := "requested"
		if neededBy != "" {
			what = "needed by " + neededBy
		}
		return fmt.Errorf("kernel module %s (%s) is neither in %s nor in its modules.builtin", name, what, r.idx.dir)
	}
	r.state[name] = visiting
	r.stack = append(r.stack, name)
	data, err := readModule(filepath.Join(r.idx.dir, rel))
	if err != nil {
		return err
	}
	deps, err := moduleDepends(data)
	if err != nil {
		return fmt.Errorf("kernel module %s: %w", rel, err)
	}
	for _, d := range deps {
		if err := r.visit(d, name); err != nil {
			return err
		}
	}
	r.stack = r.stack[:len(r.stack)-1]
	r.state[name] = visited
	r.set.Modules = append(r.set.Modules, Module{Name: name, Path: uncompressedName(rel), Depends: deps, Data: data})
	return nil
}

// moduleIndex maps module names to files under dir.
type moduleIndex struct {
	dir     string
	files   map[string]string // name -> path relative to dir
	builtin map[string]bool
}

// indexModules lists the module files under dir (first in lexical order wins) and reads
// dir/modules.builtin if present.
func indexModules(dir string) (*moduleIndex, error) {
	idx := &moduleIndex{dir: dir, files: map[string]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !isModuleFile(p) {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if _, dup := idx.files[moduleName(p)]; !dup {
			idx.files[moduleName(p)] = filepath.ToSlash(rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list kernel modules in %s: %w", dir, err)
	}
	f, err := os.Open(filepath.Join(dir, "modules.builtin"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return idx, nil
	case err != nil:
		return nil, fmt.Errorf("read modules.builtin: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			idx.builtin[moduleName(line)] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return idx, nil
}

// isModuleFile reports whether p names a module file, compressed or not.
func isModuleFile(p string) bool {
	return strings.HasSuffix(uncompressedName(p), ".ko")
}

// uncompressedName drops a compression suffix: a/b.ko.xz -> a/b.ko.
func uncompressedName(p string) string {
	for _, s := range []string{".xz", ".gz", ".zst"} {
		p = strings.TrimSuffix(p, s)
	}
	return p
}

// moduleName turns a module path or name into the kernel's module name:
// kernel/fs/9p/9p.ko.xz -> 9p, vmw-vsock -> vmw_vsock.
func moduleName(p string) string {
	base := strings.TrimSuffix(uncompressedName(path.Base(filepath.ToSlash(p))), ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

// readModule returns the uncompressed contents of a .ko, .ko.xz or .ko.gz file.
func readModule(p string) ([]byte, error) {
	raw, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read kernel module: %w", err)
	}
	var r io.Reader
	switch {
	case strings.HasSuffix(p, ".ko"):
		return raw, nil
	case strings.HasSuffix(p, ".xz"):
		if r, err = xz.NewReader(bytes.NewReader(raw)); err != nil {
			return nil, fmt.Errorf("kernel module %s: xz: %w", p, err)
		}
	case strings.HasSuffix(p, ".gz"):
		if r, err = gzip.NewReader(bytes.NewReader(raw)); err != nil {
			return nil, fmt.Errorf("kernel module %s: gzip: %w", p, err)
		}
	default:
		return nil, fmt.Errorf("kernel module %s: unsupported compression (want .ko, .ko.xz or .ko.gz)", p)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("kernel module %s: decompress: %w", p, err)
	}
	return data, nil
}

// moduleDepends returns the depends= names of an ELF module's .modinfo section.
func moduleDepends(data []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("not an ELF object: %w", err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("no .modinfo section")
	}
	info, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	var deps []string
	for _, field := range bytes.Split(info, []byte{0}) {
		v, ok := bytes.CutPrefix(field, []byte("depends="))
		if !ok {
			continue
		}
		for _, d := range strings.Split(string(v), ",") {
			if d = strings.TrimSpace(d); d != "" {
				deps = append(deps, moduleName(d))
			}
		}
	}
	return deps, nil
}
