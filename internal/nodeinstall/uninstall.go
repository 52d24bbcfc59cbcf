package nodeinstall

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vessel-containers/vessel/internal/atomicfile"
)

// UninstallPlan is what an uninstall would do. Apply does it.
type UninstallPlan struct {
	Changes []Change
	state   State
}

// PlanUninstall works out how to put back what the install recorded for config (a host
// path, read beneath root as Options.Root says). It refuses when the files changed since
// the install wrote them, unless force is set: then those changes are undone too. With no
// install recorded, the error is fs.ErrNotExist.
func PlanUninstall(config, root string, force bool) (*UninstallPlan, error) {
	if config == "" {
		config = DefaultConfig
	}
	root, err := cleanRoot(root)
	if err != nil {
		return nil, err
	}
	if root != "/" && !filepath.IsAbs(config) {
		return nil, fmt.Errorf("containerd config %q: want an absolute path (a host path, read beneath --root %s)", config, root)
	}
	config, err = filepath.Abs(config)
	if err != nil {
		return nil, fmt.Errorf("containerd config: %w", err)
	}
	if config, err = hostFile(root, config); err != nil {
		return nil, err
	}
	st, err := readState(config, root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no vessel install recorded for %s (%s: %w)", config, StatePath(config), err)
	}
	if err != nil {
		return nil, err
	}
	if err := st.unchanged(); err != nil && !force {
		return nil, fmt.Errorf("%w; an uninstall would undo that change too: take it out again, or pass --force to put back the original anyway", err)
	}
	p := &UninstallPlan{state: *st}
	var backups []Change
	for i := len(st.Files) - 1; i >= 0; i-- {
		f := st.Files[i]
		if f.Backup == "" {
			p.Changes = append(p.Changes, Change{Path: f.Path, Action: "remove"})
			continue
		}
		data, err := os.ReadFile(f.Backup)
		if err != nil {
			return nil, fmt.Errorf("the file vessel install replaced at %s is lost: %w", f.Path, err)
		}
		p.Changes = append(p.Changes, Change{Path: f.Path, Action: "restore", Data: data, Perm: f.PrevPerm})
		backups = append(backups, Change{Path: f.Backup, Action: "remove"})
	}
	if st.DropIn != "" {
		if _, err := os.Lstat(st.DropIn); err == nil {
			p.Changes = append(p.Changes, Change{Path: st.DropIn, Action: "remove"})
		}
		if st.CreatedDir != "" {
			p.Changes = append(p.Changes, Change{Path: st.CreatedDir, Action: "rmdir"})
		}
	}
	switch cur, exists, err := readOptional(config); {
	case err != nil:
		return nil, err
	case st.Existed && exists && bytes.Equal(cur, st.Original):
		// untouched: the handler is in the drop-in
	case st.Existed:
		p.Changes = append(p.Changes, Change{Path: config, Action: "restore", Data: st.Original, Perm: st.Perm})
	case exists:
		p.Changes = append(p.Changes, Change{Path: config, Action: "remove"})
	}
	p.Changes = append(p.Changes, Change{Path: StatePath(config), Action: "remove"})
	// The backups go after the record, so that an uninstall that fails before can be run
	// again (with --force, since the files it put back differ from the record).
	if len(backups) > 0 {
		p.Changes = append(p.Changes, backups...)
		p.Changes = append(p.Changes, Change{Path: BackupDir(config), Action: "rmdir"})
	}
	for i := len(st.CreatedDirs) - 1; i >= 0; i-- {
		p.Changes = append(p.Changes, Change{Path: st.CreatedDirs[i], Action: "rmdir"})
	}
	return p, nil
}

// Apply puts the files back and removes the state file last (but for the backups and the
// directories the install created), so that a failed uninstall can be run again.
func (p *UninstallPlan) Apply() error {
	for _, c := range p.Changes {
		switch c.Action {
		case "restore":
			if err := atomicfile.WriteFile(c.Path, c.Data, c.Perm); err != nil {
				return fmt.Errorf("vessel uninstall: restore %s: %w", c.Path, err)
			}
		case "rmdir":
			_ = os.Remove(c.Path) // one holding files of others stays
		case "remove":
			if err := os.Remove(c.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("vessel uninstall: %w", err)
			}
		}
	}
	return nil
}
