//go:build linux

package boot

import (
	"bufio"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// ModulesOrderFile lists the modules to load at boot, one path relative to / per line, in
// dependency order. The image builder writes it; a kernel with everything built in has none.
const ModulesOrderFile = "/lib/vessel/modules.order"

// moduleInitCompressedFile is finit_module's MODULE_INIT_COMPRESSED_FILE flag (Linux 5.17).
const moduleInitCompressedFile = 4

// Module is a kernel module file and what it depends on.
type Module struct {
	// Path is the module file.
	Path string
	// Name is the module name (file name without .ko*, '-' as '_').
	Name string
	// Depends are module names from .modinfo's depends=.
	Depends []string
}

// ModuleName derives the kernel's module name from a file path.
func ModuleName(path string) string {
	base := filepath.Base(path)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// ReadModinfo reads depends= from the module's .modinfo section. Compressed modules cannot
// be read: they report no dependencies.
func ReadModinfo(path string) ([]string, error) {
	if !strings.HasSuffix(path, ".ko") {
		return nil, nil
	}
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, nil
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo of %s: %w", path, err)
	}
	return ParseDepends(data), nil
}

// ParseDepends extracts the depends= list from .modinfo contents (NUL-separated key=value).
func ParseDepends(modinfo []byte) []string {
	var deps []string
	for _, kv := range strings.Split(string(modinfo), "\x00") {
		v, ok := strings.CutPrefix(kv, "depends=")
		if !ok {
			continue
		}
		for _, d := range strings.Split(v, ",") {
			if d = strings.TrimSpace(d); d != "" {
				deps = append(deps, strings.ReplaceAll(d, "-", "_"))
			}
		}
	}
	return deps
}

// OrderModules sorts modules so each comes after the modules it depends on, keeping the given
// order where dependencies allow it (a file already in order stays as it is). Dependencies on
// modules not in the list are ignored (built in, or missing: loading will tell). A cycle is
// broken in list order.
func OrderModules(mods []Module) []Module {
	index := make(map[string]int, len(mods))
	for i, m := range mods {
		index[m.Name] = i
	}
	state := make([]uint8, len(mods)) // 0 new, 1 visiting, 2 done
	out := make([]Module, 0, len(mods))
	var visit func(i int)
	visit = func(i int) {
		if state[i] != 0 {
			return
		}
		state[i] = 1
		for _, d := range mods[i].Depends {
			if j, ok := index[d]; ok {
				visit(j)
			}
		}
		state[i] = 2
		out = append(out, mods[i])
	}
	for i := range mods {
		visit(i)
	}
	return out
}

// ReadOrder reads orderFile (paths relative to root) and returns its modules ordered by
// their .modinfo dependencies. A missing file gives no modules and no error.
func ReadOrder(ctx context.Context, root, orderFile string) ([]Module, error) {
	f, err := os.Open(orderFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", orderFile, err)
	}
	defer f.Close()
	var mods []Module
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := filepath.Join(root, line)
		deps, err := ReadModinfo(p)
		if err != nil {
			log.G(ctx).WithError(err).Warn("module dependencies unknown, keeping file order")
		}
		mods = append(mods, Module{Path: p, Name: ModuleName(p), Depends: deps})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", orderFile, err)
	}
	return OrderModules(mods), nil
}

// LoadModulesFromOrder loads the modules listed in orderFile (see ReadOrder). A missing file
// is fine: the kernel has what it needs built in. Modules already loaded or built in are
// skipped; failures of single modules are logged and loading goes on. It returns the number
// of modules loaded.
func LoadModulesFromOrder(ctx context.Context, root, orderFile string) (int, error) {
	mods, err := ReadOrder(ctx, root, orderFile)
	if err != nil {
		return 0, err
	}
	if mods == nil {
		log.G(ctx).Debugf("no %s: kernel modules are built in", orderFile)
	}
	loaded := 0
	for _, m := range mods {
		err := loadFile(m.Path, "")
		switch {
		case err == nil:
			loaded++
		case errors.Is(err, unix.EEXIST):
		case errors.Is(err, unix.ENOSYS):
			log.G(ctx).Warn("kernel has no module support: skipping the module list")
			return loaded, nil
		default:
			log.G(ctx).WithError(err).Warnf("load module %s", m.Name)
		}
	}
	return loaded, nil
}

// LoadModule loads a module by name with parameters, looking for it under
// /lib/modules/<release>. A module that is built in or already loaded is not an error.
func LoadModule(ctx context.Context, name string, params []string) error {
	if name == "" {
		return fmt.Errorf("%w: kernel module name is empty", errdefs.ErrInvalidArgument)
	}
	name = strings.ReplaceAll(name, "-", "_")
	if _, err := os.Stat("/sys/module/" + name); err == nil {
		log.G(ctx).Debugf("kernel module %s is built in or loaded", name)
		return nil
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	dir := "/lib/modules/" + unix.ByteSliceToString(uts.Release[:])
	var found string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || found != "" {
			return nil
		}
		if strings.Contains(d.Name(), ".ko") && ModuleName(p) == name {
			found = p
			return fs.SkipAll
		}
		return nil
	})
	if found == "" {
		return fmt.Errorf("kernel module %s: %w: not built in and no file under %s", name, errdefs.ErrNotFound, dir)
	}
	if err := loadFile(found, strings.Join(params, " ")); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load kernel module %s: %w", name, err)
	}
	return nil
}

func loadFile(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	flags := 0
	if !strings.HasSuffix(path, ".ko") {
		flags |= moduleInitCompressedFile
	}
	if err := unix.FinitModule(int(f.Fd()), params, flags); err != nil {
		return fmt.Errorf("finit_module %s: %w", path, err)
	}
	return nil
}
