package factory_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/agentclient"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/sandbox"
	"github.com/vessel-containers/vessel/internal/sharefs"
)

// TestTemplateRestoreStress restores VMs from one template, a few at a time, while busy
// loops load the host's cores, and checks that every restored agent answers its first
// Check within 20 s. Under load a restored guest can read the new host's first request
// before it learns that the host attached; before the session layer waited for that
// (session.Mux.awaitHost), about 4 in 100 restores here never answered. Set
// VESSEL_RESTORE_STRESS=<restores> to run it (100 restores take about a minute on two
// cores); VESSEL_RESTORE_PARALLEL (default 3) VMs restore at once, VESSEL_RESTORE_LOAD
// (default 8) busy loops run meanwhile, and VESSEL_RESTORE_LOGS=<dir> keeps each VM's
// console log (the VMs then boot with debug logs, which show the session layer's decisions).
func TestTemplateRestoreStress(t *testing.T) {
	restores, _ := strconv.Atoi(os.Getenv("VESSEL_RESTORE_STRESS"))
	if restores <= 0 {
		t.Skip("set VESSEL_RESTORE_STRESS=<restores> to stress template restores")
	}
	parallel := envInt("VESSEL_RESTORE_PARALLEL", 3)
	load := envInt("VESSEL_RESTORE_LOAD", 8)
	fx := newFixture(t)
	fx.base.Debug = os.Getenv("VESSEL_RESTORE_LOGS") != ""
	f := fx.factory(true, false)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := f.BuildTemplate(ctx); err != nil {
		t.Fatalf("build template: %v", err)
	}

	stop := make(chan struct{})
	var busy sync.WaitGroup
	for range load {
		busy.Add(1)
		go func() { // owner: this test; stops when stop closes
			defer busy.Done()
			runtime.LockOSThread()
			var sum [sha256.Size]byte
			for {
				select {
				case <-stop:
					return
				default:
					sum = sha256.Sum256(sum[:])
				}
			}
		}()
	}
	defer func() { close(stop); busy.Wait() }()

	var next, done, hangs atomic.Int64
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() { // owner: this test; ends after the last restore
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > restores || t.Failed() {
					return
				}
				if !restoreOnce(t, fx, f, i) {
					hangs.Add(1)
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d restores, %d agents did not answer", done.Load(), hangs.Load())
	if hangs.Load() > 0 {
		t.Errorf("%d of %d restored agents did not answer their first Check", hangs.Load(), done.Load())
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// restoreOnce restores VM i from src, waits for its agent's first answer and stops it. It
// reports whether the agent answered (other failures fail the test and count as answers).
func restoreOnce(t *testing.T, fx *fixture, src sandbox.VMSource, i int) bool {
	dir := filepath.Join(fx.root, "sandboxes", fmt.Sprintf("r%d", i))
	if err := os.MkdirAll(filepath.Join(dir, "shared"), 0o700); err != nil {
		t.Error(err)
		return true
	}
	defer os.RemoveAll(dir)
	want := fx.base
	want.ID, want.StateDir, want.SharedDir, want.ShareTag = fmt.Sprintf("r%d", i), dir, filepath.Join(dir, "shared"), sharefs.Tag
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	begin := time.Now()
	vm, err := src.VM(ctx, "qemu", want)
	if err != nil {
		t.Errorf("restore %d: %v", i, err)
		return true
	}
	defer func() {
		if err := vm.Stop(context.Background()); err != nil {
			t.Errorf("stop %d: %v", i, err)
		}
	}()
	restored := time.Since(begin)
	agent, err := agentclient.Dial(ctx, vm.Agent(), agentclient.Timeouts{Ready: 20 * time.Second})
	if err != nil {
		t.Errorf("dial %d: %v", i, err)
		return true
	}
	defer agent.Close()
	_, err = agent.WaitReady(ctx)
	t.Logf("restore %d: restored in %s, answered after %s: %v", i, restored.Round(time.Millisecond), (time.Since(begin) - restored).Round(time.Millisecond), err)
	if logs := os.Getenv("VESSEL_RESTORE_LOGS"); logs != "" {
		kind := "good"
		if err != nil {
			kind = "hung"
		}
		b, _ := os.ReadFile(filepath.Join(dir, hypervisor.ConsoleLogName))
		_ = os.WriteFile(filepath.Join(logs, fmt.Sprintf("%s-%d.log", kind, i)), b, 0o600)
	}
	return err == nil
}
