// Package ksm turns the host's kernel samepage merging on for a measurement and puts the
// host's settings back afterwards.
package ksm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Dir is where the kernel exposes KSM.
const Dir = "/sys/kernel/mm/ksm"

// Values of the run file.
const (
	Stopped  = 0
	Running  = 1
	Unmerged = 2 // stop and unmerge every merged page
)

// Counters are ksmd's progress and what it merged.
type Counters struct {
	FullScans    uint64
	PagesShared  uint64 // distinct merged pages in use
	PagesSharing uint64 // further mappings of them: the pages saved
}

// KSM is one KSM sysfs directory.
type KSM struct {
	dir string
}

// New is KSM at dir; it fails when the directory is not there or its run file cannot be
// written.
func New(dir string) (*KSM, error) {
	f, err := os.OpenFile(filepath.Join(dir, "run"), os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("kernel samepage merging: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("kernel samepage merging: %w", err)
	}
	return &KSM{dir: dir}, nil
}

func (k *KSM) read(name string) (uint64, error) {
	data, err := os.ReadFile(filepath.Join(k.dir, name))
	if err != nil {
		return 0, fmt.Errorf("ksm: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("ksm %s: %w", name, err)
	}
	return v, nil
}

func (k *KSM) write(name string, v uint64) error {
	if err := os.WriteFile(filepath.Join(k.dir, name), []byte(strconv.FormatUint(v, 10)), 0); err != nil {
		return fmt.Errorf("ksm: set %s to %d: %w", name, v, err)
	}
	return nil
}

// Counters reads ksmd's counters.
func (k *KSM) Counters() (Counters, error) {
	var c Counters
	var err error
	if c.FullScans, err = k.read("full_scans"); err != nil {
		return c, err
	}
	if c.PagesShared, err = k.read("pages_shared"); err != nil {
		return c, err
	}
	c.PagesSharing, err = k.read("pages_sharing")
	return c, err
}

// PagesToScan is how many pages ksmd scans per wake-up.
func (k *KSM) PagesToScan() (uint64, error) { return k.read("pages_to_scan") }

// SetPagesToScan sets how many pages ksmd scans per wake-up.
func (k *KSM) SetPagesToScan(n uint64) error { return k.write("pages_to_scan", n) }

// Enable starts ksmd and returns the function that puts run and pages_to_scan back to
// what they were. When KSM was stopped before, restore unmerges what ksmd merged (run = 2)
// before stopping it again, so no page stays merged on the host's account.
func (k *KSM) Enable() (restore func() error, err error) {
	run, err := k.read("run")
	if err != nil {
		return nil, err
	}
	pages, err := k.read("pages_to_scan")
	if err != nil {
		return nil, err
	}
	restore = func() error {
		var errs []error
		if run != Running {
			if err := k.write("run", Unmerged); err != nil {
				errs = append(errs, err)
			}
		}
		if err := k.write("run", run); err != nil {
			errs = append(errs, err)
		}
		if err := k.write("pages_to_scan", pages); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	if run == Running {
		return restore, nil
	}
	if err := k.write("run", Running); err != nil {
		return nil, errors.Join(err, restore())
	}
	return restore, nil
}

// WaitScans waits until ksmd has finished scans more full scans than from (a page merges
// on the second scan that sees it unchanged), polling every poll.
func (k *KSM) WaitScans(ctx context.Context, from uint64, scans uint64, poll time.Duration) (Counters, error) {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		c, err := k.Counters()
		if err != nil {
			return c, err
		}
		if c.FullScans >= from+scans {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return c, fmt.Errorf("ksm: %d of %d full scans done: %w", c.FullScans-from, scans, ctx.Err())
		case <-t.C:
		}
	}
}
