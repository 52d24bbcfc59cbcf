package imagebuilder

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// File type bits of a cpio mode (as in stat(2)).
const (
	cpioTypeDir     = 0o040000
	cpioTypeChar    = 0o020000
	cpioTypeReg     = 0o100000
	cpioTypeSymlink = 0o120000
)

// cpioEntry is one member of an initramfs. Exactly one of data, src (a host file copied as
// is) or linkname supplies a regular file's or symlink's body.
type cpioEntry struct {
	name     string // relative, no leading slash: "dev/console"
	mode     uint32 // type bits | permissions
	rdev     [2]uint32
	data     []byte
	src      string
	linkname string
}

// cpioArchive collects entries and writes them as a deterministic newc archive: entries
// sorted by name, parents created before children, inode numbers assigned in order, uid,
// gid and mtime zero. (github.com/cavaliergopher/cpio v1.0.1 cannot write the rdev numbers
// that /dev/console needs, hence this small writer.)
type cpioArchive struct {
	entries map[string]cpioEntry
}

func newCpioArchive() *cpioArchive {
	return &cpioArchive{entries: map[string]cpioEntry{}}
}

// add records e and any missing parent directories (mode 0755). Adding a name twice is an
// error unless both are the same directory.
func (a *cpioArchive) add(e cpioEntry) error {
	e.name = strings.TrimPrefix(path.Clean("/"+e.name), "/")
	if e.name == "" {
		return fmt.Errorf("cpio entry with an empty name")
	}
	for dir := path.Dir(e.name); dir != "."; dir = path.Dir(dir) {
		if old, ok := a.entries[dir]; ok {
			if old.mode&0o170000 != cpioTypeDir {
				return fmt.Errorf("cpio entry %s: parent %s is not a directory", e.name, dir)
			}
			continue
		}
		a.entries[dir] = cpioEntry{name: dir, mode: cpioTypeDir | 0o755}
	}
	if old, ok := a.entries[e.name]; ok {
		if old.mode == e.mode && e.mode&0o170000 == cpioTypeDir {
			return nil
		}
		return fmt.Errorf("cpio entry %s added twice", e.name)
	}
	a.entries[e.name] = e
	return nil
}

// names returns the entry names in archive order.
func (a *cpioArchive) names() []string {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// writeTo writes the archive and its trailer to w.
func (a *cpioArchive) writeTo(w io.Writer) error {
	cw := &newcWriter{w: w}
	for i, name := range a.names() {
		if err := cw.write(a.entries[name], uint32(i+1)); err != nil {
			return fmt.Errorf("cpio entry %s: %w", name, err)
		}
	}
	return cw.write(cpioEntry{name: "TRAILER!!!"}, 0)
}

// size returns the number of bytes writeTo writes, reading the sizes of host files.
func (a *cpioArchive) size() (int64, error) {
	align := func(n int64) int64 { return (n + 3) &^ 3 }
	const header = 110
	total := align(header + int64(len("TRAILER!!!")+1))
	for _, e := range a.entries {
		total += align(header + int64(len(e.name)+1))
		switch {
		case e.mode&0o170000 == cpioTypeReg && e.src != "":
			fi, err := os.Stat(e.src)
			if err != nil {
				return 0, fmt.Errorf("stat %s: %w", e.src, err)
			}
			total += align(fi.Size())
		case e.mode&0o170000 == cpioTypeReg:
			total += align(int64(len(e.data)))
		case e.mode&0o170000 == cpioTypeSymlink:
			total += align(int64(len(e.linkname)))
		}
	}
	return total, nil
}

// newcWriter writes "070701" (newc, no checksum) headers and bodies, padded to 4 bytes.
type newcWriter struct {
	w   io.Writer
	off int64
}

func (cw *newcWriter) write(e cpioEntry, ino uint32) error {
	var (
		size int64
		body io.Reader
	)
	nlink := uint32(1)
	switch e.mode & 0o170000 {
	case cpioTypeReg:
		switch {
		case e.src != "":
			f, err := os.Open(e.src)
			if err != nil {
				return fmt.Errorf("open %s: %w", e.src, err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return fmt.Errorf("stat %s: %w", e.src, err)
			}
			size, body = fi.Size(), io.LimitReader(f, fi.Size())
		default:
			size, body = int64(len(e.data)), bytes.NewReader(e.data)
		}
	case cpioTypeSymlink:
		size, body = int64(len(e.linkname)), strings.NewReader(e.linkname)
	case cpioTypeDir:
		nlink = 2
	}
	if size > 0xffffffff {
		return fmt.Errorf("%d bytes is too large for newc", size)
	}
	if e.name == "TRAILER!!!" {
		nlink = 1
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, e.mode, 0, 0, nlink, 0, size, 0, 0, e.rdev[0], e.rdev[1], len(e.name)+1, 0)
	if err := cw.put([]byte(hdr + e.name + "\x00")); err != nil {
		return err
	}
	if body != nil {
		n, err := io.Copy(cw.w, body)
		cw.off += n
		if err != nil {
			return fmt.Errorf("write body: %w", err)
		}
		if n != size {
			return fmt.Errorf("body is %d bytes, header said %d (file changed while archiving?)", n, size)
		}
	}
	return cw.put(nil)
}

// put writes b and then zero padding up to a multiple of 4.
func (cw *newcWriter) put(b []byte) error {
	pad := (4 - (cw.off+int64(len(b)))%4) % 4
	n, err := cw.w.Write(append(b, make([]byte, pad)...))
	cw.off += int64(n)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}
