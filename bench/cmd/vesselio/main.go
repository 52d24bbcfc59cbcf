//go:build linux

// Binary vesselio is the I/O workload of vesselbench's io measure. It runs inside a
// container (built static, bind-mounted in) and measures, in the directory -dir: small-file
// create, find (walk and stat) and delete, a sequential write and read of one file, and
// random 4 KiB writes and reads in it. It prints one JSON object (report.IORun) as its last
// line and removes what it wrote.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/bench/internal/report"
)

const (
	filesPerDir   = 100
	smallFileSize = 4096
	seqBlock      = 1 << 20
	randBlock     = 4096
	fsyncEvery    = 32
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "vesselio:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", "", "directory to measure (made if missing; what the workload writes there is removed)")
	files := flag.Int("files", 1000, "small files to create")
	size := flag.Int("size", 64, "MiB of the sequential and random file")
	randFor := flag.Duration("rand", 5*time.Second, "duration of each random test")
	flag.Parse()
	if *dir == "" || *files < 1 || *size < 1 || *randFor <= 0 {
		return errors.New("want -dir, and -files, -size and -rand above zero")
	}
	work := filepath.Join(*dir, "vesselio")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(work)
	r := report.IORun{Dir: *dir, FSType: fsType(*dir), Files: *files, SizeMiB: *size, RandSeconds: randFor.Seconds()}
	var err error
	if r.CreatePerSec, r.FindPerSec, r.DeletePerSec, err = smallFiles(filepath.Join(work, "tree"), *files); err != nil {
		return err
	}
	file := filepath.Join(work, "data")
	if r.SeqWriteMiBs, err = seqWrite(file, *size); err != nil {
		return err
	}
	if r.SeqReadMiBs, err = seqRead(file, *size); err != nil {
		return err
	}
	if r.RandWriteIOPS, err = randIO(file, *size, *randFor, true); err != nil {
		return err
	}
	if r.RandReadIOPS, err = randIO(file, *size, *randFor, false); err != nil {
		return err
	}
	out, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}

// fsType is the type of the mount that holds dir (the longest mount point that is a
// prefix of it), or "" when /proc/mounts cannot be read.
func fsType(dir string) string {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return ""
	}
	defer f.Close()
	best, typ := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 3 {
			continue
		}
		mp := fl[1]
		if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, typ = mp, fl[2]
		}
	}
	return typ
}

// smallFiles creates n files of 4 KiB, 100 per directory, as an untar would (no fsync),
// then walks the tree stat'ing every entry, then removes it; it returns the rates.
func smallFiles(root string, n int) (create, find, del float64, err error) {
	buf := make([]byte, smallFileSize)
	begin := time.Now()
	for i := range n {
		d := filepath.Join(root, fmt.Sprintf("d%03d", i/filesPerDir))
		if i%filesPerDir == 0 {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return 0, 0, 0, err
			}
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d", i)), buf, 0o644); err != nil {
			return 0, 0, 0, err
		}
	}
	create = float64(n) / time.Since(begin).Seconds()
	begin = time.Now()
	entries := 0
	err = filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if _, err := d.Info(); err != nil {
			return err
		}
		entries++
		return nil
	})
	if err != nil {
		return 0, 0, 0, err
	}
	find = float64(entries) / time.Since(begin).Seconds()
	begin = time.Now()
	if err := os.RemoveAll(root); err != nil {
		return 0, 0, 0, err
	}
	del = float64(n) / time.Since(begin).Seconds()
	return create, find, del, nil
}

// seqWrite writes sizeMiB in 1 MiB blocks and fsyncs; MiB/s over both.
func seqWrite(path string, sizeMiB int) (float64, error) {
	buf := make([]byte, seqBlock)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	begin := time.Now()
	for range sizeMiB {
		if _, err := f.Write(buf); err != nil {
			return 0, fmt.Errorf("sequential write: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("sequential write fsync: %w", err)
	}
	return float64(sizeMiB) / time.Since(begin).Seconds(), f.Close()
}

// dropCache asks the kernel to drop f's cached pages (they are clean after an fsync), so
// that reads go to the storage; on a file system without a page cache it does nothing.
func dropCache(f *os.File) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync before dropping the cache: %w", err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil && !errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("fadvise DONTNEED: %w", err)
	}
	return nil
}

// seqRead reads the file in 1 MiB blocks after dropping its cache; MiB/s.
func seqRead(path string, sizeMiB int) (float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := dropCache(f); err != nil {
		return 0, err
	}
	buf := make([]byte, seqBlock)
	begin := time.Now()
	total := 0
	for {
		n, err := f.Read(buf)
		total += n
		if err != nil || n == 0 {
			break
		}
	}
	if total != sizeMiB*seqBlock {
		return 0, fmt.Errorf("sequential read: %d bytes, want %d", total, sizeMiB*seqBlock)
	}
	return float64(total) / seqBlock / time.Since(begin).Seconds(), nil
}

// randIO does 4 KiB writes (with an fsync every 32) or reads (after dropping the cache)
// at random aligned offsets of the file for d; IOPS.
func randIO(path string, sizeMiB int, d time.Duration, write bool) (float64, error) {
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if !write {
		if err := dropCache(f); err != nil {
			return 0, err
		}
	}
	blocks := int64(sizeMiB) * seqBlock / randBlock
	buf := make([]byte, randBlock)
	rng := rand.New(rand.NewPCG(1, 2)) //nolint:gosec // reproducible offsets for a benchmark, not a secret
	ops := 0
	begin := time.Now()
	for time.Since(begin) < d {
		off := rng.Int64N(blocks) * randBlock
		if write {
			if _, err := f.WriteAt(buf, off); err != nil {
				return 0, fmt.Errorf("random write: %w", err)
			}
			ops++
			if ops%fsyncEvery == 0 {
				if err := f.Sync(); err != nil {
					return 0, fmt.Errorf("random write fsync: %w", err)
				}
			}
			continue
		}
		if _, err := f.ReadAt(buf, off); err != nil {
			return 0, fmt.Errorf("random read: %w", err)
		}
		ops++
	}
	if write {
		if err := f.Sync(); err != nil {
			return 0, fmt.Errorf("random write fsync: %w", err)
		}
	}
	return float64(ops) / time.Since(begin).Seconds(), nil
}
