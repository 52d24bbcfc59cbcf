// Package nodeinstall installs Vessel on a node and takes it off again: the binaries and
// the guest image (files.go), Vessel's CRI runtime handler in containerd's configuration,
// and the node label the RuntimeClass selects (label.go, through kubectl). An install
// keeps what it found (the configuration's bytes, or that there was none, and each file it
// replaced) and what it wrote in a state file next to the configuration, so that an
// uninstall removes what it added and puts back exactly what was there.
//
// containerd 1.6 (config version 2) and 2.x (version 3) merge imported files
// differently: 2.x merges an import into the configuration key by key, while 1.6 replaces
// a plugin's whole section with the imported one, and 1.6 also drops its built-in runc
// handler once any handler is configured. So the handler goes into a drop-in file when
// the configuration's imports (2.x also imports /etc/containerd/conf.d/*.toml by itself)
// name the drop-in's path and, for 1.6, the configuration has no CRI section a drop-in
// would replace; otherwise it is appended to the configuration, which keeps the user's
// bytes as they were, in front of it.
package nodeinstall

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"
	securejoin "github.com/cyphar/filepath-securejoin"

	"github.com/vessel-containers/vessel/internal/config"
)

// Defaults of Options.
const (
	DefaultConfig       = "/etc/containerd/config.toml"
	DefaultHandler      = "vessel"
	DefaultVesselConfig = "/etc/vessel/configuration.toml"
	// DefaultPrefix is where the binaries go, into DefaultPrefix/bin.
	DefaultPrefix = "/usr/local"
	// RuntimeType is the shim containerd starts for the handler.
	RuntimeType = "io.containerd.vessel.v2"
	// dropInName is the drop-in's file name in the conf.d directory next to the
	// configuration.
	dropInName = "vessel.toml"
	// implicitImport is what containerd 2.x imports without being told.
	implicitImport = "/etc/containerd/conf.d/*.toml"
)

// PodAnnotations are the annotations the handler lets pods pass to the shim: Vessel's and
// Kata's configuration annotations, which the shim checks against enable_annotations.
var PodAnnotations = []string{"io.vessel.config.*", "io.katacontainers.config.*"}

// Layout is where a containerd config version keeps the CRI runtime handlers.
type Layout struct {
	// Version is the config's `version`.
	Version int64
	// Plugin is the CRI plugin holding containerd.runtimes.
	Plugin string
	// Containerd names the containerd releases that read this version.
	Containerd string
}

// Layouts are the config versions the installer writes, by version.
var Layouts = map[int64]Layout{
	2: {Version: 2, Plugin: "io.containerd.grpc.v1.cri", Containerd: "containerd 1.6 and 1.7"},
	3: {Version: 3, Plugin: "io.containerd.cri.v1.runtime", Containerd: "containerd 2.x"},
}

// Options say what to install where.
type Options struct {
	// Config is containerd's configuration file (DefaultConfig when empty). It may be
	// missing: the install creates it.
	Config string
	// Version is the config version to write (2 or 3). 0 takes the file's `version`; a
	// missing or key-less file needs it.
	Version int64
	// Handler is the runtime handler's name (DefaultHandler when empty).
	Handler string
	// VesselConfig is the Vessel configuration the handler's shim reads
	// (DefaultVesselConfig when empty).
	VesselConfig string
	// RestrictOOMScoreAdj sets the CRI plugin's restrict_oom_score_adj, which a containerd
	// without CAP_SYS_RESOURCE needs.
	RestrictOOMScoreAdj bool
	// From is the directory holding the binaries (Binaries) and the guest image
	// (GuestFiles) to install; empty installs none, and writes no Vessel configuration.
	From string
	// Prefix is where the binaries go, into Prefix/bin (DefaultPrefix when empty).
	Prefix string
	// GuestDir is where the guest image goes (DefaultGuestDir when empty); a Vessel
	// configuration the install writes names its files there.
	GuestDir string
	// Root is the host's / as this process sees it (/host in a DaemonSet's pod): Config,
	// Prefix, GuestDir and VesselConfig are host paths, read and written beneath Root.
	// Empty is "/".
	Root string
}

func (o *Options) fill() error {
	if o.Config == "" {
		o.Config = DefaultConfig
	}
	root, err := cleanRoot(o.Root)
	if err != nil {
		return err
	}
	o.Root = root
	if o.Root != "/" && !filepath.IsAbs(o.Config) {
		return fmt.Errorf("containerd config %q: want an absolute path (a host path, read beneath --root %s)", o.Config, o.Root)
	}
	abs, err := filepath.Abs(o.Config)
	if err != nil {
		return fmt.Errorf("containerd config %s: %w", o.Config, err)
	}
	if o.Config, err = hostFile(o.Root, abs); err != nil {
		return err
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.GuestDir == "" {
		o.GuestDir = DefaultGuestDir
	}
	for name, p := range map[string]string{"prefix": o.Prefix, "guest dir": o.GuestDir} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("%s %q: want an absolute path", name, p)
		}
	}
	if o.Handler == "" {
		o.Handler = DefaultHandler
	}
	if !bareKey.MatchString(o.Handler) {
		return fmt.Errorf("handler name %q: want letters, digits, '-' and '_' only", o.Handler)
	}
	if o.VesselConfig == "" {
		o.VesselConfig = DefaultVesselConfig
	}
	if !filepath.IsAbs(o.VesselConfig) {
		return fmt.Errorf("vessel config %q: want an absolute path (the shim does not run in this directory)", o.VesselConfig)
	}
	if o.Version != 0 {
		if _, ok := Layouts[o.Version]; !ok {
			return fmt.Errorf("config version %d: want 2 (containerd 1.6) or 3 (containerd 2.x)", o.Version)
		}
	}
	return nil
}

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// cleanRoot checks a --root: "" is "/"; anything else must be an absolute directory.
func cleanRoot(root string) (string, error) {
	if root == "" {
		return "/", nil
	}
	if !filepath.IsAbs(root) {
		return "", fmt.Errorf("root %q: want an absolute path", root)
	}
	root = filepath.Clean(root)
	if fi, err := os.Stat(root); err != nil {
		return "", fmt.Errorf("root: %w", err)
	} else if !fi.IsDir() {
		return "", fmt.Errorf("root %s is not a directory", root)
	}
	return root, nil
}

// hostDir is the host's directory dir as this process sees it: beneath root, with the
// symbolic links on the way resolved as the host would (an absolute link's target is
// beneath root too), so that nothing is read or written outside root.
func hostDir(root, dir string) (string, error) {
	if root == "/" {
		return dir, nil
	}
	p, err := securejoin.SecureJoin(root, dir)
	if err != nil {
		return "", fmt.Errorf("%s beneath %s: %w", dir, root, err)
	}
	return p, nil
}

// hostFile is the host's file p as this process sees it: its directory as hostDir
// resolves it, and its name as it is (a symbolic link there is not followed).
func hostFile(root, p string) (string, error) {
	dir, err := hostDir(root, filepath.Dir(p))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(p)), nil
}

// StatePath is the state file an install of config keeps: what it found and wrote.
func StatePath(config string) string { return config + ".vessel-install.json" }

// DropInPath is the drop-in an install of config may write.
func DropInPath(config string) string {
	return filepath.Join(filepath.Dir(config), "conf.d", dropInName)
}

// Change is one file an install or uninstall writes or removes.
type Change struct {
	Path string
	// Action is "create", "append", "restore" or "remove" (a containerd configuration
	// file, the drop-in, the record), "install" or "replace" (a binary, a guest image
	// file, the Vessel configuration), "mkdir" or "rmdir" (a directory the install created;
	// rmdir leaves one that is not empty).
	Action string
	// Data is what is written: the whole file for create, install, replace and restore,
	// the added bytes for append; nil for remove, mkdir and rmdir.
	Data []byte
	// From says where Data comes from for install and replace; Perm is the mode written.
	From string
	Perm fs.FileMode
}

// parsed is one containerd config file, decoded.
type parsed struct {
	path string
	data []byte
	tree map[string]any
	keys int // keys and tables the file defines
}

func parseConfig(path string, data []byte) (*parsed, error) {
	p := &parsed{path: path, data: data, tree: map[string]any{}}
	md, err := toml.Decode(string(data), &p.tree)
	if err != nil {
		return nil, fmt.Errorf("containerd config %s cannot be parsed: %w", path, err)
	}
	p.keys = len(md.Keys())
	return p, nil
}

// version is the file's `version`, 0 when it has none.
func (p *parsed) version() (int64, error) {
	v, ok := p.tree["version"]
	if !ok {
		return 0, nil
	}
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("containerd config %s: version = %v: want an integer", p.path, v)
	}
	return n, nil
}

// table is the sub-table at keys, nil when there is none.
func table(tree map[string]any, keys ...string) map[string]any {
	cur := tree
	for _, k := range keys {
		next, ok := cur[k].(map[string]any)
		if !ok {
			return nil
		}
		cur = next
	}
	return cur
}

// imports are the files the config imports, as containerd resolves its patterns
// (relative to the config's directory), with containerd 2.x's implicit one for version 3;
// absolute ones are host paths, read beneath root.
func (p *parsed) importPatterns(version int64, root string) ([]string, error) {
	var pats []string
	if v, ok := p.tree["imports"]; ok {
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("containerd config %s: imports: want a list of strings", p.path)
		}
		for _, e := range list {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("containerd config %s: imports: %v is not a string", p.path, e)
			}
			if filepath.IsAbs(s) {
				s = filepath.Join(root, s)
			} else {
				s = filepath.Join(filepath.Dir(p.path), s)
			}
			pats = append(pats, s)
		}
	}
	if version == 3 {
		pats = append(pats, filepath.Join(root, implicitImport))
	}
	return pats, nil
}

// covers reports whether one of patterns names path.
func covers(patterns []string, path string) bool {
	for _, pat := range patterns {
		if ok, err := filepath.Match(pat, path); err == nil && ok {
			return true
		}
	}
	return false
}

// readImports parses the files patterns name, except skip.
func readImports(patterns []string, skip string) ([]*parsed, error) {
	var out []*parsed
	seen := map[string]bool{}
	for _, pat := range patterns {
		files, err := filepath.Glob(pat)
		if err != nil {
			return nil, fmt.Errorf("containerd import %q: %w", pat, err)
		}
		for _, f := range files {
			if f == skip || seen[f] {
				continue
			}
			seen[f] = true
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("containerd import: %w", err)
			}
			p, err := parseConfig(f, data)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// readOptional reads path; a missing file is (nil, false, nil).
func readOptional(path string) ([]byte, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("vessel install: %w", err)
	}
	return data, true, nil
}

// block is the TOML the install adds: the handler, with runc when containerd 1.6 would
// otherwise lose its default handler, and restrict_oom_score_adj when asked.
func block(l Layout, o Options, addRunc, addRestrict bool) []byte {
	var b bytes.Buffer
	plugin := "plugins." + config.TOMLString(l.Plugin)
	fmt.Fprintf(&b, "# Added by `vessel install`: the CRI runtime handler %q. `vessel uninstall` takes it out.\n", o.Handler)
	if addRestrict {
		fmt.Fprintf(&b, "[%s]\n  restrict_oom_score_adj = true\n", plugin)
	}
	if addRunc {
		b.WriteString("# containerd 1.6 drops its built-in runc handler once any handler is configured: this is it.\n")
		fmt.Fprintf(&b, "[%s.containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n", plugin)
	}
	h := fmt.Sprintf("%s.containerd.runtimes.%s", plugin, o.Handler)
	annotations := make([]string, len(PodAnnotations))
	for i, a := range PodAnnotations {
		annotations[i] = config.TOMLString(a)
	}
	fmt.Fprintf(&b, "[%s]\n", h)
	fmt.Fprintf(&b, "  runtime_type = %s\n", config.TOMLString(RuntimeType))
	b.WriteString("  # Devices of a privileged pod stay on the host: the VM has its own.\n")
	b.WriteString("  privileged_without_host_devices = true\n")
	b.WriteString("  # The shim applies the annotations its enable_annotations allows and refuses the others.\n")
	fmt.Fprintf(&b, "  pod_annotations = [%s]\n", strings.Join(annotations, ", "))
	fmt.Fprintf(&b, "  [%s.options]\n", h)
	fmt.Fprintf(&b, "    ConfigPath = %s\n", config.TOMLString(o.VesselConfig))
	return b.Bytes()
}

// checkHandler parses data (a whole config file) and checks that it has the handler as
// the install writes it.
func checkHandler(path string, data []byte, l Layout, o Options) error {
	p, err := parseConfig(path, data)
	if err != nil {
		return fmt.Errorf("the result is not valid TOML (%w)", err)
	}
	h := table(p.tree, "plugins", l.Plugin, "containerd", "runtimes", o.Handler)
	if h == nil {
		return fmt.Errorf("%s: no handler %s in the result", path, o.Handler)
	}
	if h["runtime_type"] != RuntimeType {
		return fmt.Errorf("%s: handler %s has runtime_type %v, want %s", path, o.Handler, h["runtime_type"], RuntimeType)
	}
	if opts := table(h, "options"); opts == nil || opts["ConfigPath"] != o.VesselConfig {
		return fmt.Errorf("%s: handler %s does not name ConfigPath %s", path, o.Handler, o.VesselConfig)
	}
	return nil
}
