package nodeinstall

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vessel-containers/vessel/internal/atomicfile"
	"github.com/vessel-containers/vessel/internal/config"
)

// State is what an install found and wrote, kept in StatePath(Config) (mode 0600: it holds
// a copy of containerd's configuration).
type State struct {
	Handler string `json:"handler"`
	// Root is the root the install ran with (Options.Root): every path below is beneath
	// it. A later run with another root (the host's / instead of a pod's /host) reads them
	// beneath its own.
	Root    string `json:"root,omitempty"`
	Version int64  `json:"version"`
	Config  string `json:"config"`
	// Existed says whether Config existed; Original and Perm are its bytes and mode then.
	Existed  bool        `json:"existed"`
	Original []byte      `json:"original"`
	Perm     fs.FileMode `json:"perm"`
	// Written is Config after the install (Original when the handler went into a drop-in).
	Written []byte `json:"written"`
	// DropIn and DropInData are the drop-in file and its content, when there is one.
	DropIn     string `json:"drop_in,omitempty"`
	DropInData []byte `json:"drop_in_data,omitempty"`
	// CreatedDir is the drop-in's directory when the install created it.
	CreatedDir string `json:"created_dir,omitempty"`
	// Files are the binaries, guest image files and Vessel configuration the install
	// wrote, in order; CreatedDirs the directories it created for them, outermost first.
	Files       []FileRecord `json:"files,omitempty"`
	CreatedDirs []string     `json:"created_dirs,omitempty"`
}

// Plan is what an install would do. Apply does it.
type Plan struct {
	Layout Layout
	// DropIn says whether the handler goes into a drop-in (true) or is appended to the
	// configuration, or written into a new one (false).
	DropIn bool
	// Installed says that the recorded install is in place already: there is nothing to do.
	Installed bool
	Changes   []Change
	// Notes explain choices the plan made.
	// Upgrade says that the recorded install is in place but other files are asked for:
	// the plan replaces the files (containerd's configuration stays as it is), and the
	// record keeps what was there before the first install.
	Upgrade bool
	Notes   []string
	state   State
	writes  []fileWrite
	mkdirs  []string
	// oldState is the record an upgrade replaces.
	oldState []byte
}

// planUpgrade plans the upgrade of the files of the install done records to want.
func planUpgrade(o Options, done *Plan, want []wantFile, notes []string) (*Plan, error) {
	st := done.state
	writes, dirs, changes, err := planFiles(o.Config, want, nil, st.Files)
	if err != nil {
		return nil, err
	}
	old, err := os.ReadFile(StatePath(o.Config))
	if err != nil {
		return nil, fmt.Errorf("install state: %w", err)
	}
	index := map[string]int{}
	for i, f := range st.Files {
		index[f.Path] = i
	}
	st.Files = slices.Clone(st.Files)
	for _, w := range writes {
		if i, ok := index[w.rec.Path]; ok {
			st.Files[i] = w.rec
		} else {
			st.Files = append(st.Files, w.rec)
		}
	}
	st.CreatedDirs = append(slices.Clone(st.CreatedDirs), dirs...)
	notes = append(notes, fmt.Sprintf("vessel install is recorded in %s with other files: they are replaced, and the record keeps what was there before it", StatePath(o.Config)))
	return &Plan{Layout: done.Layout, DropIn: done.DropIn, Upgrade: true, Changes: changes, Notes: notes, state: st, writes: writes, mkdirs: dirs, oldState: old}, nil
}

// StateFile is where Apply records the install.
func (p *Plan) StateFile() string { return StatePath(p.state.Config) }

// PlanInstall works out the install o asks for without changing anything. detect gives the
// config version when neither o.Version nor the file says (a missing or key-less file);
// it may be nil.
func PlanInstall(o Options, detect func() (int64, error)) (*Plan, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	want, fileNotes, err := wantFiles(o)
	if err != nil {
		return nil, err
	}
	if done, err := recordedInstall(o); err != nil || done != nil {
		if err != nil || filesInPlace(want) == nil {
			return done, err
		}
		return planUpgrade(o, done, want, fileNotes)
	}
	configDirs := missingDirs(filepath.Dir(o.Config))
	writes, dirs, fileChanges, err := planFiles(o.Config, want, configDirs, nil)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(o.Config); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("containerd config %s is a symbolic link: pass its target with --config", o.Config)
	}
	data, existed, err := readOptional(o.Config)
	if err != nil {
		return nil, err
	}
	st := State{Handler: o.Handler, Root: o.Root, Config: o.Config, Existed: existed, Original: data, Perm: 0o644}
	if existed {
		fi, err := os.Stat(o.Config)
		if err != nil {
			return nil, fmt.Errorf("containerd config: %w", err)
		}
		st.Perm = fi.Mode().Perm()
	}
	main, err := parseConfig(o.Config, data)
	if err != nil {
		return nil, err
	}
	version, err := configVersion(main, existed, o, detect)
	if err != nil {
		return nil, err
	}
	l := Layouts[version]
	st.Version = version
	p := &Plan{Layout: l, Changes: fileChanges, Notes: fileNotes, writes: writes, mkdirs: dirs}
	st.CreatedDirs = dirs
	for _, w := range writes {
		st.Files = append(st.Files, w.rec)
	}

	patterns, err := main.importPatterns(version, o.Root)
	if err != nil {
		return nil, err
	}
	dropIn := DropInPath(o.Config)
	imports, err := readImports(patterns, "")
	if err != nil {
		return nil, err
	}
	var importCRI []string
	for _, f := range append([]*parsed{main}, imports...) {
		if table(f.tree, "plugins", l.Plugin, "containerd", "runtimes", o.Handler) != nil {
			return nil, fmt.Errorf("%s already configures a runtime handler %q, which vessel install did not write: remove it, or pick another name with --handler", f.path, o.Handler)
		}
		if f != main && table(f.tree, "plugins", l.Plugin) != nil {
			importCRI = append(importCRI, f.path)
		}
	}
	mainCRI := table(main.tree, "plugins", l.Plugin)

	p.DropIn = main.keys > 0 && covers(patterns, dropIn) && (version == 3 || (mainCRI == nil && len(importCRI) == 0))
	if _, err := os.Lstat(dropIn); err == nil && p.DropIn {
		return nil, fmt.Errorf("%s exists and vessel install did not write it (no %s): move it away first", dropIn, StatePath(o.Config))
	}
	if !p.DropIn && version == 2 && len(importCRI) > 0 {
		return nil, fmt.Errorf("containerd 1.6 replaces %s's [plugins.%s] with the one in %s: add the handler there by hand (docs/kubernetes.md)", o.Config, config.TOMLString(l.Plugin), importCRI[0])
	}

	addRunc := false
	if version == 2 {
		cri := mainCRI
		if p.DropIn {
			cri = nil // the drop-in's section replaces everything else
		}
		def, _ := table(cri, "containerd")["default_runtime_name"].(string)
		if def == "" {
			def = "runc"
		}
		if def == "runc" && table(cri, "containerd", "runtimes", "runc") == nil {
			addRunc = true
			p.Notes = append(p.Notes, "containerd 1.6 drops its built-in runc handler once any handler is configured: the runc handler is written too")
		}
	}
	addRestrict := false
	if o.RestrictOOMScoreAdj {
		switch v, set := mainCRI["restrict_oom_score_adj"]; {
		case !set || p.DropIn:
			addRestrict = true
		case v == true:
			p.Notes = append(p.Notes, fmt.Sprintf("%s sets restrict_oom_score_adj = true already", o.Config))
		default:
			return nil, fmt.Errorf("%s sets restrict_oom_score_adj = %v under [plugins.%s]: set it to true there, or omit --restrict-oom-score-adj", o.Config, v, config.TOMLString(l.Plugin))
		}
	}

	blk := block(l, o, addRunc, addRestrict)
	header := fmt.Appendf(nil, "version = %d\n\n", version)
	switch {
	case p.DropIn:
		content := append(header, blk...)
		if err := checkHandler(dropIn, content, l, o); err != nil {
			return nil, fmt.Errorf("vessel install: drop-in %s: %w", dropIn, err)
		}
		p.Changes = append(p.Changes, Change{Path: dropIn, Action: "create", Data: content})
		st.Written, st.DropIn, st.DropInData = data, dropIn, content
		if _, err := os.Stat(filepath.Dir(dropIn)); errors.Is(err, fs.ErrNotExist) {
			st.CreatedDir = filepath.Dir(dropIn)
		}
		p.Notes = append(p.Notes, fmt.Sprintf("%s imports %s: the handler goes there and %s stays as it is", o.Config, dropIn, o.Config))
	case !existed:
		content := append(header, blk...)
		if err := checkHandler(o.Config, content, l, o); err != nil {
			return nil, fmt.Errorf("vessel install: %w", err)
		}
		p.Changes = append(p.Changes, Change{Path: o.Config, Action: "create", Data: content})
		st.Written = content
	default:
		var added []byte
		if len(data) > 0 && data[len(data)-1] != '\n' {
			added = append(added, '\n')
		}
		if len(data) > 0 {
			added = append(added, '\n')
		}
		if main.keys == 0 {
			added = append(added, header...)
		}
		added = append(added, blk...)
		written := append(bytes.Clone(data), added...)
		if err := checkHandler(o.Config, written, l, o); err != nil {
			if addRestrict {
				return nil, fmt.Errorf("vessel install: %s defines [plugins.%s] itself, so restrict_oom_score_adj cannot be appended (%w): set it there, or omit --restrict-oom-score-adj", o.Config, config.TOMLString(l.Plugin), err)
			}
			return nil, fmt.Errorf("vessel install: appending the handler to %s: %w", o.Config, err)
		}
		p.Changes = append(p.Changes, Change{Path: o.Config, Action: "append", Data: added})
		st.Written = written
	}
	p.state = st
	return p, nil
}

// configVersion is the config version to write: the file's, else o.Version, else detect's.
func configVersion(main *parsed, existed bool, o Options, detect func() (int64, error)) (int64, error) {
	v, err := main.version()
	if err != nil {
		return 0, err
	}
	switch {
	case v != 0:
		if _, ok := Layouts[v]; !ok {
			return 0, fmt.Errorf("containerd config %s has version = %d: vessel install writes versions 2 (containerd 1.6) and 3 (containerd 2.x); migrate it with `containerd config migrate`", o.Config, v)
		}
		if o.Version != 0 && o.Version != v {
			return 0, fmt.Errorf("containerd config %s has version = %d, not the %d asked for", o.Config, v, o.Version)
		}
		return v, nil
	case existed && main.keys > 0:
		return 0, fmt.Errorf("containerd config %s has no version key, so containerd reads it as config version 1, which vessel install does not write: migrate it with `containerd config migrate`, or add version = 2 at its top", o.Config)
	case o.Version != 0:
		return o.Version, nil
	case detect != nil:
		v, err := detect()
		if err != nil {
			return 0, fmt.Errorf("containerd config %s has no version: pass the version to write (2 for containerd 1.6, 3 for 2.x): %w", o.Config, err)
		}
		return v, nil
	}
	return 0, fmt.Errorf("containerd config %s has no version: pass the version to write (2 for containerd 1.6, 3 for 2.x)", o.Config)
}

// recordedInstall returns a plan with nothing to do when the install o.Config's state file
// records is in place, an error when its files changed since, and nil when there is no
// state file.
func recordedInstall(o Options) (*Plan, error) {
	st, err := readState(o.Config, o.Root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := st.unchanged(); err != nil {
		return nil, fmt.Errorf("vessel install is recorded in %s, but %w: run vessel uninstall first", StatePath(o.Config), err)
	}
	if st.Handler != o.Handler {
		return nil, fmt.Errorf("vessel install is recorded in %s for handler %q: run vessel uninstall first to install %q", StatePath(o.Config), st.Handler, o.Handler)
	}
	return &Plan{Layout: Layouts[st.Version], DropIn: st.DropIn != "", Installed: true, state: *st}, nil
}

// readState reads the record of the install of config, its paths beneath root.
func readState(config, root string) (*State, error) {
	data, err := os.ReadFile(StatePath(config))
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("install state %s: %w", StatePath(config), err)
	}
	if err := st.rebase(root); err != nil {
		return nil, fmt.Errorf("install state %s: %w", StatePath(config), err)
	}
	if st.Config != config {
		return nil, fmt.Errorf("install state %s is for %s, not %s", StatePath(config), st.Config, config)
	}
	if _, ok := Layouts[st.Version]; !ok {
		return nil, fmt.Errorf("install state %s: config version %d", StatePath(config), st.Version)
	}
	return &st, nil
}

// unchanged checks that the files are as the install left them.
func (st *State) unchanged() error {
	if err := filesUnchanged(st.Files); err != nil {
		return err
	}
	data, exists, err := readOptional(st.Config)
	if err != nil {
		return err
	}
	wantExists := st.Existed || st.DropIn == ""
	if exists != wantExists || !bytes.Equal(data, st.Written) {
		return fmt.Errorf("%s changed since vessel install wrote it", st.Config)
	}
	if st.DropIn != "" {
		data, exists, err := readOptional(st.DropIn)
		if err != nil {
			return err
		}
		if !exists || !bytes.Equal(data, st.DropInData) {
			return fmt.Errorf("%s changed since vessel install wrote it", st.DropIn)
		}
	}
	return nil
}

// Apply keeps the files it replaces, records the install and writes its files. On
// failure it puts back what it changed.
func (p *Plan) Apply() (err error) {
	if p.Installed {
		return nil
	}
	st := p.state
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	for _, d := range p.mkdirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("install: %w", err)
		}
		undo = append(undo, func() { _ = os.Remove(d) })
	}
	for _, w := range p.writes {
		if !w.backup {
			continue
		}
		dir := filepath.Dir(w.rec.Backup)
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("install backups: %w", err)
		} else if err == nil {
			undo = append(undo, func() { _ = os.RemoveAll(dir) })
		}
		if err := atomicfile.WriteFile(w.rec.Backup, w.replaced, 0o600); err != nil {
			return fmt.Errorf("install backup of %s: %w", w.rec.Path, err)
		}
		undo = append(undo, func() { _ = os.Remove(w.rec.Backup) })
	}
	rec, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("install state: %w", err)
	}
	statePath := StatePath(st.Config)
	if err := atomicfile.WriteFile(statePath, rec, 0o600); err != nil {
		return fmt.Errorf("install state: %w", err)
	}
	if p.oldState != nil {
		undo = append(undo, func() { _ = atomicfile.WriteFile(statePath, p.oldState, 0o600) })
	} else {
		undo = append(undo, func() { _ = os.Remove(statePath) })
	}
	for _, w := range p.writes {
		if err := atomicfile.WriteFile(w.want.dst, w.want.data, w.want.perm); err != nil {
			return fmt.Errorf("install: %w", err)
		}
		if w.replaced != nil {
			undo = append(undo, func() { _ = atomicfile.WriteFile(w.want.dst, w.replaced, w.prevPerm) })
		} else {
			undo = append(undo, func() { _ = os.Remove(w.want.dst) })
		}
	}
	if p.Upgrade {
		return nil
	}
	if st.CreatedDir != "" {
		if err := os.Mkdir(st.CreatedDir, 0o755); err != nil {
			return fmt.Errorf("drop-in directory: %w", err)
		}
		undo = append(undo, func() { _ = os.Remove(st.CreatedDir) })
	}
	if st.DropIn != "" {
		if err := atomicfile.WriteFile(st.DropIn, st.DropInData, 0o644); err != nil {
			return err
		}
		undo = append(undo, func() { _ = os.Remove(st.DropIn) })
	}
	if !bytes.Equal(st.Written, st.Original) || !st.Existed && st.DropIn == "" {
		if err := atomicfile.WriteFile(st.Config, st.Written, st.Perm); err != nil {
			return err
		}
	}
	return nil
}

// rebase moves st's paths from beneath st.Root to beneath root.
func (st *State) rebase(root string) error {
	if st.Root == "" {
		st.Root = "/"
	}
	if st.Root == root {
		return nil
	}
	var err error
	move := func(p *string) {
		if *p == "" || err != nil {
			return
		}
		rel, e := filepath.Rel(st.Root, *p)
		if e != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			err = fmt.Errorf("%s is not beneath the install's root %s", *p, st.Root)
			return
		}
		*p = filepath.Join(root, rel)
	}
	move(&st.Config)
	move(&st.DropIn)
	move(&st.CreatedDir)
	for i := range st.Files {
		move(&st.Files[i].Path)
		move(&st.Files[i].Backup)
	}
	for i := range st.CreatedDirs {
		move(&st.CreatedDirs[i])
	}
	st.Root = root
	return err
}
