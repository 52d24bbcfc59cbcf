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

// PlanUninstall works out how to put back what the install recorded for config. It
// refuses when the files changed since the install wrote them, unless force is set: then
// those changes are undone too.
func PlanUninstall(config string, force bool) (*UninstallPlan, error) {
	if config == "" {
		config = DefaultConfig
	}
	config, err := filepath.Abs(config)
	if err != nil {
		return nil, fmt.Errorf("containerd config: %w", err)
	}
	st, err := readState(config)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no vessel install recorded for %s (%s does not exist)", config, StatePath(config))
	}
	if err != nil {
		return nil, err
	}
	if err := st.unchanged(); err != nil && !force {
		return nil, fmt.Errorf("%w; an uninstall would undo that change too: take it out again, or pass --force to put back the original anyway", err)
	}
	p := &UninstallPlan{state: *st}
	if st.DropIn != "" {
		if _, err := os.Lstat(st.DropIn); err == nil {
			p.Changes = append(p.Changes, Change{Path: st.DropIn, Action: "remove"})
		}
		if st.CreatedDir != "" {
			p.Changes = append(p.Changes, Change{Path: st.CreatedDir, Action: "remove"})
		}
	}
	switch cur, exists, err := readOptional(config); {
	case err != nil:
		return nil, err
	case st.Existed && exists && bytes.Equal(cur, st.Original):
		// untouched: the handler is in the drop-in
	case st.Existed:
		p.Changes = append(p.Changes, Change{Path: config, Action: "restore", Data: st.Original})
	case exists:
		p.Changes = append(p.Changes, Change{Path: config, Action: "remove"})
	}
	p.Changes = append(p.Changes, Change{Path: StatePath(config), Action: "remove"})
	return p, nil
}

// Apply puts the files back and removes the state file last, so that a failed uninstall
// can be run again.
func (p *UninstallPlan) Apply() error {
	for _, c := range p.Changes {
		switch c.Action {
		case "restore":
			if err := atomicfile.WriteFile(c.Path, c.Data, p.state.Perm); err != nil {
				return fmt.Errorf("restore containerd config: %w", err)
			}
		case "remove":
			err := os.Remove(c.Path)
			if c.Path == p.state.CreatedDir && err != nil {
				continue // the directory holds files of others now: it stays
			}
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("vessel uninstall: %w", err)
			}
		}
	}
	return nil
}
