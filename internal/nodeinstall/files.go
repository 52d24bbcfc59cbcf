package nodeinstall

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vessel-containers/vessel/internal/config"
)

// DefaultGuestDir is where the guest image goes: the directory of the built-in
// configuration's kernel and initrd.
var DefaultGuestDir = filepath.Dir(config.DefaultKernel)

// Binaries are the files an install with Options.From copies into Prefix/bin.
var Binaries = []string{"vessel", "containerd-shim-vessel-v2", "vessel-monitor"}

// GuestFiles are the guest image files an install with Options.From copies into GuestDir,
// named as `vessel image build` writes them; OptionalGuestFiles are copied when From
// has them.
var (
	GuestFiles         = []string{filepath.Base(config.DefaultKernel), filepath.Base(config.DefaultInitrd)}
	OptionalGuestFiles = []string{"manifest.json"}
)

// FileRecord is one file an install wrote.
type FileRecord struct {
	Path string      `json:"path"`
	Perm fs.FileMode `json:"perm"`
	// SHA256 is the hex SHA-256 of what the install wrote.
	SHA256 string `json:"sha256"`
	// Backup, when set, holds the bytes of the file the install replaced, whose mode was
	// PrevPerm.
	Backup   string      `json:"backup,omitempty"`
	PrevPerm fs.FileMode `json:"prev_perm,omitempty"`
}

// BackupDir is the directory where an install of config keeps the files it replaced.
func BackupDir(config string) string { return config + ".vessel-install.d" }

// wantFile is one file the install puts in place.
type wantFile struct {
	dst, from string
	data      []byte
	perm      fs.FileMode
}

// fileWrite is a file the plan writes, with the bytes it replaces.
type fileWrite struct {
	want wantFile
	// replaced and prevPerm are what the file held, nil when it is new.
	replaced []byte
	prevPerm fs.FileMode
	rec      FileRecord
	// backup says that replaced goes to rec.Backup: the file is not one the install
	// wrote before.
	backup bool
}

func sum(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// wantFiles reads what an install with o.From puts in place: the binaries, the guest
// image, and a Vessel configuration when there is none.
func wantFiles(o Options) ([]wantFile, []string, error) {
	if o.From == "" {
		return nil, nil, nil
	}
	fi, err := os.Stat(o.From)
	if err != nil {
		return nil, nil, fmt.Errorf("--from: %w", err)
	}
	if !fi.IsDir() {
		return nil, nil, fmt.Errorf("--from %s is not a directory", o.From)
	}
	var out []wantFile
	var notes []string
	add := func(name, dstDir string, optional bool) error {
		src := filepath.Join(o.From, name)
		fi, err := os.Stat(src)
		if optional && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("--from %s must hold %s: %w", o.From, name, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", src)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("install %s: %w", name, err)
		}
		out = append(out, wantFile{dst: filepath.Join(dstDir, name), from: src, data: data, perm: fi.Mode().Perm()})
		return nil
	}
	bin, err := hostDir(o.Root, filepath.Join(o.Prefix, "bin"))
	if err != nil {
		return nil, nil, err
	}
	for _, name := range Binaries {
		if err := add(name, bin, false); err != nil {
			return nil, nil, err
		}
	}
	guest, err := hostDir(o.Root, o.GuestDir)
	if err != nil {
		return nil, nil, err
	}
	for _, name := range GuestFiles {
		if err := add(name, guest, false); err != nil {
			return nil, nil, err
		}
	}
	for _, name := range OptionalGuestFiles {
		if err := add(name, guest, true); err != nil {
			return nil, nil, err
		}
	}

	cfgPath, err := hostFile(o.Root, o.VesselConfig)
	if err != nil {
		return nil, nil, err
	}
	data, exists, err := readOptional(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	if exists {
		kernel := filepath.Join(o.GuestDir, GuestFiles[0])
		if cfg, err := config.Parse(data, cfgPath); err != nil {
			notes = append(notes, fmt.Sprintf("%s is kept as it is, but does not load: %v", cfgPath, err))
		} else if cfg.Hypervisor.Kernel != kernel {
			notes = append(notes, fmt.Sprintf("%s is kept as it is: it names the kernel %s, not the installed %s", cfgPath, cfg.Hypervisor.Kernel, kernel))
		}
		return out, notes, nil
	}
	content, err := defaultVesselConfig(o.GuestDir)
	if err != nil {
		return nil, nil, err
	}
	out = append(out, wantFile{dst: cfgPath, from: "the built-in defaults", data: content, perm: 0o644})
	return out, notes, nil
}

// defaultVesselConfig is the built-in configuration, with the kernel and initrd in
// guestDir.
func defaultVesselConfig(guestDir string) ([]byte, error) {
	cfg := config.Default()
	if guestDir != DefaultGuestDir {
		cfg.Hypervisor.Kernel = filepath.Join(guestDir, GuestFiles[0])
		cfg.Hypervisor.Initrd = filepath.Join(guestDir, GuestFiles[1])
		cfg.Hypervisor.ValidKernelPaths = []string{filepath.Join(guestDir, "*")}
		cfg.Hypervisor.ValidImagePaths = []string{filepath.Join(guestDir, "*")}
	}
	var b bytes.Buffer
	b.WriteString("# Vessel configuration written by `vessel install`: the built-in defaults (docs/configuration.md).\n\n")
	if err := cfg.Encode(&b); err != nil {
		return nil, fmt.Errorf("default vessel configuration: %w", err)
	}
	return b.Bytes(), nil
}

// planFiles works out which of want must be written (a file already holding the same
// bytes and mode is left alone, and not recorded), the directories to create (first
// configDirs, the containerd configuration's), and the backups of the files replaced.
// A file recorded (written by the install being upgraded) is replaced without a backup:
// its record keeps the backup of what was there before that install.
func planFiles(config string, want []wantFile, configDirs []string, recorded []FileRecord) ([]fileWrite, []string, []Change, error) {
	prior := map[string]FileRecord{}
	for _, f := range recorded {
		prior[f.Path] = f
	}
	var writes []fileWrite
	var dirs []string
	var changes []Change
	made := map[string]bool{}
	for _, d := range configDirs {
		made[d] = true
		dirs = append(dirs, d)
		changes = append(changes, Change{Path: d, Action: "mkdir"})
	}
	for _, w := range want {
		fi, err := os.Lstat(w.dst)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			for _, d := range missingDirs(filepath.Dir(w.dst)) {
				if !made[d] {
					made[d] = true
					dirs = append(dirs, d)
					changes = append(changes, Change{Path: d, Action: "mkdir"})
				}
			}
			writes = append(writes, fileWrite{want: w, rec: FileRecord{Path: w.dst, Perm: w.perm, SHA256: sum(w.data)}})
			changes = append(changes, Change{Path: w.dst, Action: "install", Data: w.data, From: w.from, Perm: w.perm})
		case err != nil:
			return nil, nil, nil, fmt.Errorf("install %s: %w", w.dst, err)
		case !fi.Mode().IsRegular():
			return nil, nil, nil, fmt.Errorf("%s is not a regular file (%s): move it away first", w.dst, fi.Mode().Type())
		default:
			old, err := os.ReadFile(w.dst)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("install %s: %w", w.dst, err)
			}
			if bytes.Equal(old, w.data) && fi.Mode().Perm() == w.perm {
				continue
			}
			if rec, ok := prior[w.dst]; ok {
				rec.Perm, rec.SHA256 = w.perm, sum(w.data)
				writes = append(writes, fileWrite{want: w, replaced: old, prevPerm: fi.Mode().Perm(), rec: rec})
				changes = append(changes, Change{Path: w.dst, Action: "replace", Data: w.data, From: w.from, Perm: w.perm})
				continue
			}
			rec := FileRecord{
				Path: w.dst, Perm: w.perm, SHA256: sum(w.data),
				Backup:   filepath.Join(BackupDir(config), fmt.Sprintf("%d-%s", len(recorded)+len(writes), filepath.Base(w.dst))),
				PrevPerm: fi.Mode().Perm(),
			}
			writes = append(writes, fileWrite{want: w, replaced: old, prevPerm: fi.Mode().Perm(), rec: rec, backup: true})
			changes = append(changes, Change{Path: w.dst, Action: "replace", Data: w.data, From: w.from, Perm: w.perm})
		}
	}
	return writes, dirs, changes, nil
}

// missingDirs are dir and those of its parents that do not exist, outermost first.
func missingDirs(dir string) []string {
	var out []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		out = append([]string{d}, out...)
	}
	return out
}

// filesInPlace checks that each of want holds what it would be written with.
func filesInPlace(want []wantFile) error {
	for _, w := range want {
		data, exists, err := readOptional(w.dst)
		if err != nil {
			return err
		}
		if !exists || !bytes.Equal(data, w.data) {
			return fmt.Errorf("%s differs from %s", w.dst, w.from)
		}
	}
	return nil
}

// filesUnchanged checks that the files the install wrote hold what it wrote.
func filesUnchanged(files []FileRecord) error {
	for _, f := range files {
		data, exists, err := readOptional(f.Path)
		if err != nil {
			return err
		}
		if !exists || sum(data) != f.SHA256 {
			return fmt.Errorf("%s changed since vessel install wrote it", f.Path)
		}
	}
	return nil
}
