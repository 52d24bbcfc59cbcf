//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

var _ agentv1.MemoryService = (*Service)(nil)

// Hot-plugged memory is onlined movable (ZONE_MOVABLE) where the kernel allows it: the
// kernel puts only pages it can migrate there, so the blocks can go offline again when the
// host takes the memory back (OfflineMemory). Offlining is the agent's job, not the
// kernel's on the ACPI eject: the kernel's eject offlines what is still online from a
// kernel thread, where offlining retries page migration for as long as pages remain and
// nothing can interrupt it; the agent checks for room first and bounds the time.

const (
	// defaultOfflineTimeout bounds OfflineMemory when the request gives no timeout.
	defaultOfflineTimeout = 10 * time.Second
	// offlineMarginBytes is the memory the guest must keep available after OfflineMemory.
	offlineMarginBytes = 64 << 20
	// offlineResignal is how often an offline past its deadline is signalled again.
	offlineResignal = 100 * time.Millisecond
)

// OfflineMemory offlines the memory blocks in the ranges asked for, highest first, after
// checking that the guest can spare them; on a failure it onlines again what it offlined.
func (s *Service) OfflineMemory(ctx context.Context, req *agentv1.OfflineMemoryRequest) (*agentv1.OfflineMemoryResponse, error) {
	dir := filepath.Join(s.cfg.SysDir, "devices/system/memory")
	blockSize, err := memoryBlockSize(dir)
	if err != nil {
		return nil, err
	}
	var online []uint64
	for _, r := range req.GetRanges() {
		if r.GetSize() == 0 || r.GetAddr()%blockSize != 0 || r.GetSize()%blockSize != 0 {
			return nil, fmt.Errorf("offline memory: range %#x+%#x is not made of whole %#x-byte blocks: %w", r.GetAddr(), r.GetSize(), blockSize, errdefs.ErrInvalidArgument)
		}
		for b := r.GetAddr() / blockSize; b < (r.GetAddr()+r.GetSize())/blockSize; b++ {
			state, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("memory%d", b), "state"))
			if err != nil {
				return nil, fmt.Errorf("offline memory: block %d of range %#x+%#x: %w", b, r.GetAddr(), r.GetSize(), errors.Join(err, errdefs.ErrNotFound))
			}
			if strings.TrimSpace(string(state)) != "offline" {
				online = append(online, b)
			}
		}
	}
	slices.Sort(online)
	slices.Reverse(online)
	online = slices.Compact(online)
	need := uint64(len(online)) * blockSize
	avail, err := memAvailable(s.cfg.MemInfo)
	if err != nil {
		return nil, err
	}
	if avail < need+offlineMarginBytes {
		return nil, fmt.Errorf("offline memory: the guest has %d MiB available and would keep %d MiB after giving up %d MiB; it must keep %d MiB: %w",
			avail>>20, (avail-min(avail, need))>>20, need>>20, offlineMarginBytes>>20, errdefs.ErrFailedPrecondition)
	}
	timeout := defaultOfflineTimeout
	if ms := req.GetTimeoutMs(); ms > 0 {
		timeout = time.Duration(ms) * time.Millisecond
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var done []uint64
	for _, b := range online {
		ctl := filepath.Join(dir, fmt.Sprintf("memory%d", b), "state")
		if err := offlineBlock(ctl, deadline); err != nil {
			for _, o := range done {
				if oerr := onlineMemoryBlock(filepath.Join(dir, fmt.Sprintf("memory%d", o), "state")); oerr != nil {
					log.G(ctx).WithError(oerr).Warnf("online memory block %d again after a failed offline", o)
				}
			}
			return nil, fmt.Errorf("offline memory block %d: %w", b, err)
		}
		done = append(done, b)
	}
	log.G(ctx).Debugf("offlined memory blocks %v", done)
	return &agentv1.OfflineMemoryResponse{Blocks: done}, nil
}

// offlineBlock writes "offline" to the memory block state file ctl. The kernel keeps
// migrating the block's pages away until none is left, and gives up (EINTR) only when a
// signal is pending for the writing thread: from deadline on, the thread gets SIGURG (which
// the Go runtime ignores when it is not preempting) until the write returns.
func offlineBlock(ctl string, deadline time.Time) error {
	if time.Until(deadline) <= 0 {
		return fmt.Errorf("no time left to offline it: %w", errdefs.ErrUnavailable)
	}
	var mu sync.Mutex
	writing := false // guarded by mu: the writer's thread is in the write
	tid := make(chan int, 1)
	result := make(chan error, 1)
	go func() { // owner: offlineBlock, which waits for result
		// The thread ends with the goroutine (never unlocked), so a signal meant for this
		// write cannot reach another goroutine's thread.
		runtime.LockOSThread()
		fd, err := unix.Open(ctl, unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0)
		if err != nil {
			tid <- 0
			result <- fmt.Errorf("open %s: %w", ctl, err)
			return
		}
		defer unix.Close(fd) //nolint:errcheck // written or failed already
		mu.Lock()
		writing = true
		mu.Unlock()
		tid <- unix.Gettid()
		_, err = unix.Write(fd, []byte("offline"))
		mu.Lock()
		writing = false
		mu.Unlock()
		result <- err
	}()
	t := <-tid
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case err := <-result:
			switch {
			case err == nil:
				return nil
			case errors.Is(err, unix.EINTR):
				return fmt.Errorf("the guest kernel did not migrate its pages away in time: %w", errdefs.ErrUnavailable)
			case errors.Is(err, unix.EBUSY):
				return fmt.Errorf("it holds pages the guest kernel cannot move: %w", errors.Join(err, errdefs.ErrFailedPrecondition))
			default:
				return fmt.Errorf("write %s: %w", ctl, err)
			}
		case <-timer.C:
			mu.Lock()
			if writing && t != 0 {
				if err := unix.Tgkill(unix.Getpid(), t, unix.SIGURG); err != nil {
					mu.Unlock()
					return fmt.Errorf("interrupt the offline of %s: %w", ctl, err)
				}
			}
			mu.Unlock()
			// Again until the write returns: a signal that came while the kernel waited
			// for the hotplug lock restarts the write instead of ending it.
			timer.Reset(offlineResignal)
		}
	}
}

// onlineMemoryBlock onlines the memory block whose state file is ctl, movable when the
// kernel allows it (a block next to unmovable memory may have to be normal).
func onlineMemoryBlock(ctl string) error {
	if err := os.WriteFile(ctl, []byte("online_movable"), 0); err == nil {
		return nil
	}
	if err := os.WriteFile(ctl, []byte("online"), 0); err != nil {
		return fmt.Errorf("online %s: %w", ctl, err)
	}
	return nil
}

// onlineMemory onlines every offline memory block under dir (sysfs devices/system/memory),
// movable where it can (onlineMemoryBlock).
func onlineMemory(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "memory")
		if !ok {
			continue
		}
		if _, err := strconv.Atoi(rest); err != nil {
			continue
		}
		ctl := filepath.Join(dir, e.Name(), "state")
		state, err := os.ReadFile(ctl)
		if err != nil || strings.TrimSpace(string(state)) != "offline" {
			continue
		}
		if err := onlineMemoryBlock(ctl); err != nil {
			return err
		}
	}
	return nil
}

// memoryBlockSize reads the guest's memory block size (block_size_bytes, hex) under dir.
func memoryBlockSize(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, "block_size_bytes"))
	if err != nil {
		return 0, fmt.Errorf("memory block size: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 16, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("memory block size %q is not a hex number of bytes: %w", b, errdefs.ErrUnknown)
	}
	return v, nil
}

// memAvailable reads MemAvailable from the meminfo file at path, in bytes.
func memAvailable(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	kb, ok := procKB(string(b), "MemAvailable")
	if !ok {
		return 0, fmt.Errorf("%s has no MemAvailable: %w", path, errdefs.ErrUnknown)
	}
	return kb << 10, nil
}
