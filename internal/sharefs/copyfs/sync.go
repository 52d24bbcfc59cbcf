package copyfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

// SyncMode says which volumes a sandbox in copy mode keeps in sync (config copy_sync).
type SyncMode string

const (
	// SyncAll keeps every directory volume in sync.
	SyncAll SyncMode = "all"
	// SyncKubernetes keeps only Kubernetes ConfigMap, Secret, downward API and projected
	// volumes in sync (KubernetesVolume).
	SyncKubernetes SyncMode = "kubernetes"
	// SyncNone keeps no volume in sync: each is copied once.
	SyncNone SyncMode = "none"
)

// kubeletVolume matches the directory kubelet gives a pod's ConfigMap, Secret, downward
// API or projected volume: <kubelet root>/pods/<pod uid>/volumes/kubernetes.io~<kind>/<name>,
// whatever the kubelet's root directory.
var kubeletVolume = regexp.MustCompile(`/pods/[^/]+/volumes/kubernetes\.io~(configmap|secret|downward-api|projected)/[^/]+$`)

// KubernetesVolume reports whether the host path p is a Kubernetes ConfigMap, Secret,
// downward API or projected volume (kubelet's layout of them).
func KubernetesVolume(p string) bool { return kubeletVolume.MatchString(filepath.Clean(p)) }

// Synced reports whether a volume with host source src is kept in sync under mode. Only a
// directory is: a file bind-mounted alone is the file the container holds, and a copy of
// its new content would be a new file the container never sees (kubelet documents the
// same for a subPath).
func (m SyncMode) Synced(src string, dir bool) bool {
	if !dir {
		return false
	}
	switch m {
	case SyncAll:
		return true
	case SyncKubernetes:
		return KubernetesVolume(src)
	}
	return false
}

const (
	// Debounce is how long a watcher waits after the last change before it copies.
	Debounce = 500 * time.Millisecond
	// maxDelay bounds the wait after the first change of a batch, so that a directory that
	// never stops changing is still copied.
	maxDelay = 2 * time.Second
)

// due is when a batch whose first change came at first and last change at last is copied.
func due(first, last time.Time) time.Time {
	d := last.Add(Debounce)
	if limit := first.Add(maxDelay); d.After(limit) {
		return limit
	}
	return d
}

// change is what a batch knows about one path below the volume root.
type change struct {
	// tree is set when the path appeared (created, or renamed into place): a directory is
	// then copied with everything in it; otherwise only the directory itself.
	tree bool
}

// op is one step of a sync: copy the host path (a whole directory tree when tree is set)
// or remove the guest path.
type op struct {
	rel    string
	remove bool
	tree   bool
	link   bool
}

// plan turns a batch of changed paths into the steps that make the guest match the host
// now: what is on the host is copied (directories and files first, then symlinks, so that
// a link swapped to a new directory, as kubelet swaps ..data, points at a complete copy);
// what is gone is removed (after the copies, so that the old target goes last). A path
// below a directory that is copied whole or removed, or below what is now a file or a
// link (whose copy replaces whatever the guest had there), is left to that step. lstat reads
// the host.
func plan(changes map[string]change, lstat func(rel string) (os.FileInfo, error)) []op {
	rels := make([]string, 0, len(changes))
	for rel := range changes {
		rels = append(rels, rel)
	}
	slices.Sort(rels)
	var copies, links, removes []op
	var covered []string // directories copied whole or removed
	for _, rel := range rels {
		if slices.ContainsFunc(covered, func(dir string) bool { return below(rel, dir) }) {
			continue
		}
		fi, err := lstat(rel)
		switch {
		case err != nil:
			removes = append(removes, op{rel: rel, remove: true})
			covered = append(covered, rel)
		case fi.IsDir():
			tree := changes[rel].tree
			copies = append(copies, op{rel: rel, tree: tree})
			if tree {
				covered = append(covered, rel)
			}
		case fi.Mode()&os.ModeSymlink != 0:
			links = append(links, op{rel: rel, link: true})
			covered = append(covered, rel) // nothing is below a link
		default:
			copies = append(copies, op{rel: rel})
			covered = append(covered, rel) // nor below a file
		}
	}
	return slices.Concat(copies, links, removes)
}

// below reports whether rel is strictly below dir ("." is the root).
func below(rel, dir string) bool {
	return dir == "." && rel != "." || strings.HasPrefix(rel, dir+"/")
}

// Watcher keeps a guest copy of a host directory in sync. Its goroutine runs until Close.
type Watcher struct {
	guest Guest
	root  string // host directory, symlinks resolved
	dst   string // guest directory
	w     *fsnotify.Watcher
	stop  context.CancelFunc
	done  chan struct{}
	// resume is closed by Resume: changes are copied from then on.
	resume     chan struct{}
	resumeOnce sync.Once
	// synced is told of each finished sync (tests); nil when nobody listens.
	synced func(error)
}

// Watch starts watching the host directory root (a Tree's Root) to keep dst in the guest
// in sync with it. The watcher starts paused: it collects changes but copies nothing
// until Resume, so it can be started before the tree is first copied (no change made
// during that copy is missed) without racing the copy. After Resume, changes are copied
// Debounce after the last one of a batch. The caller owns the watcher and stops it with
// Close.
func Watch(ctx context.Context, g Guest, root, dst string) (*Watcher, error) {
	return watch(ctx, g, root, dst, nil)
}

func watch(ctx context.Context, g Guest, root, dst string, synced func(error)) (*Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", root, err)
	}
	w := &Watcher{guest: g, root: filepath.Clean(root), dst: dst, w: fw, done: make(chan struct{}), resume: make(chan struct{}), synced: synced}
	if err := w.addTree("."); err != nil {
		fw.Close()
		return nil, fmt.Errorf("watch %s: %w", root, err)
	}
	ctx, w.stop = context.WithCancel(context.WithoutCancel(ctx))
	go w.run(ctx)
	return w, nil
}

// Resume lets the watcher copy changes, those collected while it was paused first.
func (w *Watcher) Resume() { w.resumeOnce.Do(func() { close(w.resume) }) }

// Close stops the watcher and waits for its goroutine. A sync in progress is abandoned.
func (w *Watcher) Close() error {
	w.stop()
	<-w.done
	if err := w.w.Close(); err != nil {
		return fmt.Errorf("stop watching %s: %w", w.root, err)
	}
	return nil
}

// addTree watches the directory rel and every directory below it. A directory that is
// gone by the time it is reached is skipped: its removal is an event of its own.
func (w *Watcher) addTree(rel string) error {
	return filepath.WalkDir(filepath.Join(w.root, rel), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if err := w.w.Add(p); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOENT) {
			return err
		}
		return nil
	})
}

func (w *Watcher) run(ctx context.Context) {
	defer close(w.done)
	changes := map[string]change{}
	var first, last time.Time
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	resume := w.resume
	for {
		select {
		case <-ctx.Done():
			return
		case <-resume:
			resume = nil
			if len(changes) > 0 {
				timer.Reset(time.Until(due(first, last)))
			}
		case ev, ok := <-w.w.Events:
			if !ok {
				return
			}
			rel, ok := w.rel(ev.Name)
			if !ok {
				continue
			}
			c := changes[rel]
			if ev.Has(fsnotify.Create) {
				c.tree = true
				// Watched before it is copied: what appears in it meanwhile is seen.
				if err := w.addTree(rel); err != nil {
					log.G(ctx).WithError(err).Warnf("copy mode: watch %s", ev.Name)
				}
			}
			if ev.Has(fsnotify.Rename) || ev.Has(fsnotify.Remove) {
				w.unwatch(ev.Name)
			}
			changes[rel] = c
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			last = now
			timer.Reset(time.Until(due(first, last)))
		case err, ok := <-w.w.Errors:
			if !ok {
				return
			}
			log.G(ctx).WithError(err).Warnf("copy mode: watching %s", w.root)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: copy everything again.
				changes["."] = change{tree: true}
				now := time.Now()
				if first.IsZero() {
					first = now
				}
				last = now
				timer.Reset(time.Until(due(first, last)))
			}
		case <-timer.C:
			if resume != nil {
				continue // paused: Resume copies what was collected
			}
			err := w.sync(ctx, changes)
			if err != nil && ctx.Err() == nil {
				log.G(ctx).WithError(err).Warnf("copy mode: sync %s into the guest", w.root)
			}
			if w.synced != nil {
				w.synced(err)
			}
			changes = map[string]change{}
			first = time.Time{}
		}
	}
}

// unwatch drops the watches of the directory p and of every directory below it: a
// directory renamed away keeps its watches, which would report its new contents under
// its old names (where it lands in the tree, its creation event watches it again).
func (w *Watcher) unwatch(p string) {
	for _, watched := range w.w.WatchList() {
		if watched == p || strings.HasPrefix(watched, p+"/") {
			_ = w.w.Remove(watched)
		}
	}
}

// rel maps a host path of an event to a path below the root.
func (w *Watcher) rel(p string) (string, bool) {
	rel, err := filepath.Rel(w.root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	return rel, true
}

// sync makes the guest match the host for the changed paths. Every step is tried; the
// errors are returned together.
func (w *Watcher) sync(ctx context.Context, changes map[string]change) error {
	var errs []error
	for _, o := range plan(changes, func(rel string) (os.FileInfo, error) { return os.Lstat(filepath.Join(w.root, rel)) }) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		dst := path.Join(w.dst, filepath.ToSlash(o.rel))
		if o.remove {
			if err := w.guest.RemovePath(ctx, dst, true); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", dst, err))
			}
			continue
		}
		err := w.copy(ctx, o, dst)
		if err != nil {
			// The guest may have another kind of file there (a directory that became a
			// file on the host, or the other way round): remove it and copy once more.
			if rerr := w.guest.RemovePath(ctx, dst, true); rerr == nil {
				err = w.copy(ctx, o, dst)
			}
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) { // gone since: a later event removes it
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// copy copies one planned path: a whole tree, or the one entry.
func (w *Watcher) copy(ctx context.Context, o op, dst string) error {
	src := filepath.Join(w.root, o.rel)
	if o.tree {
		t, err := scan(src)
		if err != nil {
			return err
		}
		return Copy(ctx, w.guest, t, dst)
	}
	e, err := entryOf(src, ".")
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return copyEntry(ctx, w.guest, src, dst, e)
}
