// Package hvtest is the conformance suite every hypervisor driver runs, on the driver as
// it is registered:
//
//	func TestConformance(t *testing.T) { hvtest.Run(t, "qemu") }
//
// Its first scenario, Capabilities, needs no VM and runs in every test run: the driver's
// registered capabilities must match the optional interfaces its VMs implement, and New
// must refuse a shared file system the driver does not list. The other scenarios boot
// real VMs (gated like testutil.RequiresVM: VESSEL_INTEGRATION=1, root, the guest
// kernel) from the project's guest kernel and a tiny busybox initramfs it builds in the
// test's temporary directory, and checks the hypervisor.VM contract: the agent channel and
// the console, pause and resume, stop, an external kill, a bad kernel, two VMs at once,
// a guest flooding its console, which must leave the host's console buffers at
// hypervisor.MaxConsoleLog, disk hotplug (CheckDisks) and NIC hotplug (CheckNICs, on taps
// in a network namespace of the test's own); a driver's unit tests can also run both
// checks against a fake VMM.
// It waits on events (socket reads, Done) under generous deadlines, never on fixed sleeps.
//
// Only the "serial" agent transport (a unix socket connected to the vessel.agent
// virtio-serial port) is supported; a driver reporting another kind fails the suite.
package hvtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/guesttext"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// Deadlines, generous for software emulation on a busy host (a boot takes ~2 s).
const (
	bootTimeout = 60 * time.Second
	stopTimeout = 30 * time.Second
	opTimeout   = 30 * time.Second
	// quietWindow is how long a paused guest must stay silent; a running one ticks every
	// 100 ms.
	quietWindow = 1500 * time.Millisecond
	// inFlight is how many ticks may still arrive after Pause returns (written by the
	// guest before its vCPUs stopped).
	inFlight = 3
)

type suite struct {
	driver string
	kernel string
	initrd string
}

// Run runs every scenario as a subtest against the registered driver of that name. The
// scenarios that boot VMs are skipped outside integration mode.
func Run(t *testing.T, driver string) {
	t.Run("Capabilities", func(t *testing.T) { CheckCapabilities(t, driver) })
	kernel := requiresKernel(t)
	initrd, err := buildInitramfs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &suite{driver: driver, kernel: kernel, initrd: initrd}
	t.Run("Boot", s.testBoot)
	t.Run("PauseResume", s.testPauseResume)
	t.Run("Stop", s.testStop)
	t.Run("KilledFromOutside", s.testKilled)
	t.Run("MissingKernel", s.testMissingKernel)
	t.Run("BadKernelImage", s.testBadKernelImage)
	t.Run("TwoVMs", s.testTwoVMs)
	t.Run("ConsoleFlood", s.testConsoleFlood)
	t.Run("Disks", s.testDisks)
	t.Run("NICs", s.testNICs)
}

// knownSharedFS are the shared file systems a driver may list.
var knownSharedFS = []hypervisor.SharedFS{hypervisor.SharedFS9P, hypervisor.SharedFSVirtioFS}

// CheckCapabilities checks, without starting a VM, that the registered capabilities of
// driver agree with what its VMs are: every optional interface a capability promises is
// implemented and none is implemented that no capability promises, the shared file systems
// listed are known kinds, and New refuses the known kinds that are not listed.
func CheckCapabilities(t *testing.T, driver string) {
	t.Helper()
	caps, err := hypervisor.CapabilitiesOf(driver)
	if err != nil {
		t.Fatalf("capabilities of %s: %v", driver, err)
	}
	t.Logf("%s capabilities: %+v", driver, caps)
	cfg := hypervisor.Config{ID: "caps", StateDir: t.TempDir(), Kernel: "/nonexistent/vmlinux", VCPUs: 1, MemoryMiB: 128}
	vm, err := hypervisor.New(driver, cfg)
	if err != nil {
		t.Fatalf("new %s vm (not started): %v", driver, err)
	}
	_, saver := vm.(hypervisor.TemplateSaver)
	_, detacher := vm.(hypervisor.Detacher)
	_, resizer := vm.(hypervisor.Resizer)
	_, disks := vm.(hypervisor.DiskHotplugger)
	_, nics := vm.(hypervisor.NICHotplugger)
	for _, c := range []struct {
		what      string
		promised  bool
		implement bool
	}{
		{"hypervisor.TemplateSaver (Templating)", caps.Templating, saver},
		{"hypervisor.Detacher (Templating)", caps.Templating, detacher},
		{"hypervisor.Resizer (Templating, CPUHotplug or MemHotplug)", caps.Templating || caps.CPUHotplug || caps.MemHotplug, resizer},
		{"hypervisor.DiskHotplugger (BlockHotplug)", caps.BlockHotplug, disks},
		{"hypervisor.NICHotplugger (NICHotplug)", caps.NICHotplug, nics},
	} {
		if c.promised != c.implement {
			t.Errorf("%s: capability %v, VM implements it %v", c.what, c.promised, c.implement)
		}
	}
	if caps.Templating && !caps.HasSharedFS(hypervisor.SharedFS9P) {
		t.Error("Templating without virtio-9p: the VM factory shares a template's directory by 9p")
	}
	seen := map[hypervisor.SharedFS]bool{}
	for _, fs := range caps.SharedFS {
		if !slices.Contains(knownSharedFS, fs) || seen[fs] {
			t.Errorf("shared fs %q listed: unknown or twice (known: %v)", fs, knownSharedFS)
		}
		seen[fs] = true
	}
	for _, fs := range knownSharedFS {
		if seen[fs] {
			continue
		}
		c := cfg
		c.SharedFS, c.SharedDir, c.ShareTag = fs, t.TempDir(), "share"
		if _, err := hypervisor.New(driver, c); !errors.Is(err, errdefs.ErrNotImplemented) {
			t.Errorf("new vm with unlisted shared fs %s: got %v, want ErrNotImplemented", fs, err)
		}
	}
	if err := vm.Stop(context.Background()); err != nil {
		t.Errorf("stop of a vm never started: %v", err)
	}
}

// newVM creates an unstarted VM with the suite's driver, as the rest of Vessel does.
func (s *suite) newVM(t *testing.T, cfg hypervisor.Config) (hypervisor.VM, error) {
	t.Helper()
	return hypervisor.New(s.driver, cfg)
}

// requiresKernel gates the suite like testutil.RequiresVM (integration mode, root) but
// needs only the guest kernel: the suite brings its own initramfs, so it does not wait
// for the agent image (initramfs.img) to be built.
func requiresKernel(t *testing.T) string {
	t.Helper()
	testutil.RequiresIntegration(t)
	testutil.RequiresRoot(t)
	kernel := filepath.Join(testutil.GuestDir(), "vmlinux")
	if _, err := os.Stat(kernel); err != nil {
		if testutil.InCI() {
			t.Fatalf("CI prerequisite missing: guest kernel (run `make image`): %v", err)
		}
		t.Skipf("guest kernel missing (run `make image`): %v", err)
	}
	return kernel
}

// config is a small VM booting the suite's initramfs with marker on its command line.
func (s *suite) config(t *testing.T, marker string) hypervisor.Config {
	return hypervisor.Config{
		ID:           marker,
		StateDir:     t.TempDir(),
		Kernel:       s.kernel,
		Initrd:       s.initrd,
		KernelParams: []string{"hvtest.marker=" + marker},
		Accelerator:  hypervisor.AccelAuto,
		VCPUs:        1,
		MemoryMiB:    256,
	}
}

// booted is a started VM with its agent connection.
type booted struct {
	vm    hypervisor.VM
	cfg   hypervisor.Config
	agent *agentConn
	// started is when Start was called; bootTime is from then to the agent marker.
	started  time.Time
	bootTime time.Duration
}

// start starts a VM and dials its agent socket right away, before the guest is up. The
// VM is stopped at cleanup whatever happens.
func (s *suite) start(t *testing.T, marker string) *booted {
	t.Helper()
	return s.startConfig(t, s.config(t, marker))
}

// startConfig is start with a config of the caller's.
func (s *suite) startConfig(t *testing.T, cfg hypervisor.Config) *booted {
	t.Helper()
	vm, err := s.newVM(t, cfg)
	if err != nil {
		t.Fatalf("new vm: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		if err := vm.Stop(ctx); err != nil {
			t.Errorf("cleanup stop: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	begin := time.Now()
	if err := vm.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	if vm.Pid() <= 0 {
		t.Fatalf("pid after start: got %d, want > 0", vm.Pid())
	}
	return &booted{vm: vm, cfg: cfg, agent: dialAgent(t, vm.Agent()), started: begin}
}

// waitBooted waits for the agent marker, which must be the first line on the socket.
func (s *suite) waitBooted(t *testing.T, b *booted) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	want := "hvtest-agent " + b.cfg.ID
	got, err := b.agent.line(ctxDeadline(ctx))
	if err != nil {
		t.Fatalf("waiting for the agent marker %q: %v%s", want, err, consoleTail(b.vm, b.cfg))
	}
	if got != want {
		t.Fatalf("first line on the agent socket: got %q, want %q", got, want)
	}
	b.bootTime = time.Since(b.started)
}

// boot starts a VM and waits for its agent marker.
func (s *suite) boot(t *testing.T, marker string) *booted {
	t.Helper()
	b := s.start(t, marker)
	s.waitBooted(t, b)
	return b
}

func (s *suite) testBoot(t *testing.T) {
	b := s.boot(t, "boot")
	t.Logf("start to agent marker: %v", b.bootTime)

	// The console marker is printed before the agent marker; the driver may still be
	// reading it.
	waitConsole(t, b, "hvtest-console boot")

	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if st, err := b.vm.State(ctx); err != nil || st != hypervisor.StateRunning {
		t.Errorf("state: got %q, %v; want %q", st, err, hypervisor.StateRunning)
	}
	// The agent channel carries data both ways; here the guest writes. Idle a moment
	// (a few ticks) and report the VMM's memory.
	for range 10 {
		if _, err := b.agent.tick(ctx); err != nil {
			t.Fatalf("tick: %v", err)
		}
	}
	if pss := pssKiB(b.vm.Pid()); pss > 0 {
		t.Logf("VMM pid %d PSS at idle: %d KiB", b.vm.Pid(), pss)
	}
	select {
	case <-b.vm.Done():
		t.Fatalf("vm exited: %v", b.vm.Err())
	default:
	}
	if err := b.vm.Err(); err != nil {
		t.Errorf("Err while running: got %v, want nil", err)
	}
}

func (s *suite) testPauseResume(t *testing.T) {
	b := s.boot(t, "pause")
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	// Control: a running guest is not quiet.
	if n, err := b.agent.quiet(quietWindow, inFlight+1); err != nil || n <= inFlight {
		t.Fatalf("running guest: got %d ticks before a %v silence (%v), want more than %d", n, quietWindow, err, inFlight)
	}
	last, err := b.agent.tick(ctx)
	if err != nil {
		t.Fatalf("tick before pause: %v", err)
	}

	if err := b.vm.Pause(ctx); err != nil {
		t.Fatalf("pause: %v", err)
	}
	if st, err := b.vm.State(ctx); err != nil || st != hypervisor.StatePaused {
		t.Fatalf("state after pause: got %q, %v; want %q", st, err, hypervisor.StatePaused)
	}
	// A paused guest goes quiet: at most a few ticks already in flight, then nothing.
	late, err := b.agent.quiet(quietWindow, inFlight+1)
	if err != nil {
		t.Fatalf("paused guest: %v", err)
	}
	if late > inFlight {
		t.Fatalf("paused guest kept ticking: %d ticks after pause", late)
	}
	t.Logf("ticks after pause returned: %d", late)
	last += late

	if err := b.vm.Resume(ctx); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if st, err := b.vm.State(ctx); err != nil || st != hypervisor.StateRunning {
		t.Fatalf("state after resume: got %q, %v; want %q", st, err, hypervisor.StateRunning)
	}
	next, err := b.agent.tick(ctx)
	if err != nil {
		t.Fatalf("tick after resume: %v", err)
	}
	if next <= last {
		t.Errorf("tick after resume: got %d, want > %d", next, last)
	}

	// Transitions that make no sense are refused.
	if err := b.vm.Resume(ctx); err == nil {
		t.Error("resume of a running vm: got nil error")
	}
}

func (s *suite) testStop(t *testing.T) {
	b := s.boot(t, "stop")
	pid := b.vm.Pid()
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	begin := time.Now()
	if err := b.vm.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	t.Logf("stop took %v", time.Since(begin))
	select {
	case <-b.vm.Done():
	default:
		t.Fatal("Done not closed after Stop returned")
	}
	if err := b.vm.Err(); err != nil {
		t.Errorf("Err after Stop: got %v, want nil", err)
	}
	assertGone(t, pid)
	assertNoSockets(t, b.cfg.StateDir)
	if err := b.vm.Stop(ctx); err != nil {
		t.Errorf("second stop: got %v, want nil", err)
	}
	if st, err := b.vm.State(ctx); err != nil || st != hypervisor.StateShutdown {
		t.Errorf("state after stop: got %q, %v; want %q", st, err, hypervisor.StateShutdown)
	}
	if err := b.vm.Pause(ctx); err == nil {
		t.Error("pause after stop: got nil error")
	}
	if err := b.vm.Start(ctx); err == nil {
		t.Error("start after stop: got nil error")
	}
	// The agent channel ends: after the lines already buffered, EOF.
	if err := b.agent.drain(ctx); !errors.Is(err, io.EOF) {
		t.Errorf("agent connection after stop: got %v, want EOF", err)
	}
}

func (s *suite) testKilled(t *testing.T) {
	b := s.boot(t, "killed")
	pid := b.vm.Pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
	select {
	case <-b.vm.Done():
	case <-time.After(bootTimeout):
		t.Fatalf("Done not closed %v after SIGKILL", bootTimeout)
	}
	err := b.vm.Err()
	if err == nil {
		t.Fatal("Err after an external SIGKILL: got nil")
	}
	if msg := err.Error(); !strings.Contains(msg, "signal") && !strings.Contains(msg, "killed") {
		t.Errorf("Err does not mention the signal: %v", err)
	}
	t.Logf("Err after SIGKILL: %v", err)
	assertGone(t, pid)
	assertNoSockets(t, b.cfg.StateDir)
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := b.vm.Stop(ctx); err != nil {
		t.Errorf("stop after the vm died: got %v, want nil", err)
	}
}

func (s *suite) testMissingKernel(t *testing.T) {
	cfg := s.config(t, "nokernel")
	cfg.Kernel = filepath.Join(t.TempDir(), "no-such-vmlinux")
	err := s.startMustFail(t, cfg)
	if !strings.Contains(err.Error(), cfg.Kernel) {
		t.Errorf("error does not name the kernel path %s: %v", cfg.Kernel, err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error does not wrap fs.ErrNotExist: %v", err)
	}
}

func (s *suite) testBadKernelImage(t *testing.T) {
	cfg := s.config(t, "badkernel")
	cfg.Kernel = filepath.Join(t.TempDir(), "garbage-vmlinux")
	if err := os.WriteFile(cfg.Kernel, []byte(strings.Repeat("not a kernel\n", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	err := s.startMustFail(t, cfg)
	t.Logf("start error: %v", err)
}

// startMustFail starts a VM that cannot boot and checks nothing is left behind.
func (s *suite) startMustFail(t *testing.T, cfg hypervisor.Config) error {
	t.Helper()
	vm, err := s.newVM(t, cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	err = vm.Start(ctx)
	if err == nil {
		_ = vm.Stop(ctx)
		t.Fatal("start: got nil error")
	}
	if pid := vm.Pid(); pid != 0 {
		select {
		case <-vm.Done():
		default:
			t.Error("Start failed but Done is open")
		}
		assertGone(t, pid)
	}
	assertNoSockets(t, cfg.StateDir)
	if err := vm.Stop(ctx); err != nil {
		t.Errorf("stop after a failed start: %v", err)
	}
	return err
}

func (s *suite) testTwoVMs(t *testing.T) {
	// Both boot at once; each sees its own marker on its own agent socket.
	a := s.start(t, "twin-a")
	b := s.start(t, "twin-b")
	s.waitBooted(t, a)
	s.waitBooted(t, b)
	if a.vm.Pid() == b.vm.Pid() || a.vm.Agent().Path == b.vm.Agent().Path {
		t.Fatalf("vms share a pid or an agent socket: %d %d %s", a.vm.Pid(), b.vm.Pid(), a.vm.Agent().Path)
	}

	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if err := a.vm.Pause(ctx); err != nil {
		t.Fatalf("pause a: %v", err)
	}
	if st, err := b.vm.State(ctx); err != nil || st != hypervisor.StateRunning {
		t.Errorf("b while a is paused: got %q, %v; want %q", st, err, hypervisor.StateRunning)
	}
	if err := a.vm.Stop(ctx); err != nil {
		t.Fatalf("stop a: %v", err)
	}
	select {
	case <-b.vm.Done():
		t.Fatalf("b exited when a stopped: %v", b.vm.Err())
	default:
	}
	// b still runs: its counter advances.
	first, err := b.agent.tick(ctx)
	if err != nil {
		t.Fatalf("b tick: %v", err)
	}
	second, err := b.agent.tick(ctx)
	if err != nil || second <= first {
		t.Fatalf("b ticks after a stopped: %d then %d, %v", first, second, err)
	}
	if st, err := b.vm.State(ctx); err != nil || st != hypervisor.StateRunning {
		t.Errorf("b after a stopped: got %q, %v; want %q", st, err, hypervisor.StateRunning)
	}
}

// consoleOf is what the driver kept of the guest's console: the VM's ConsoleTail if it
// has one, otherwise the console log file.
func consoleOf(vm hypervisor.VM, cfg hypervisor.Config) ([]byte, error) {
	if c, ok := vm.(hypervisor.ConsoleTailer); ok {
		return c.ConsoleTail(), nil
	}
	return os.ReadFile(filepath.Join(cfg.StateDir, hypervisor.ConsoleLogName))
}

// consoleTail is the end of the console, escaped, for failure messages.
func consoleTail(vm hypervisor.VM, cfg hypervisor.Config) string {
	b, err := consoleOf(vm, cfg)
	if err != nil {
		return fmt.Sprintf("\n(console: %v)", err)
	}
	return "\nconsole:\n" + guesttext.Tail(b, 20, 0)
}

// waitConsole waits until the console the driver kept and the console log both hold want.
func waitConsole(t *testing.T, b *booted, want string) {
	t.Helper()
	deadline := time.Now().Add(opTimeout)
	for {
		kept, err := consoleOf(b.vm, b.cfg)
		file, ferr := os.ReadFile(filepath.Join(b.cfg.StateDir, hypervisor.ConsoleLogName))
		if err == nil && ferr == nil && bytes.Contains(kept, []byte(want)) && bytes.Contains(file, []byte(want)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("console lacks %q after %v (file: %v):%s", want, opTimeout, ferr, consoleTail(b.vm, b.cfg))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// defaultFloodMiB is how much the ConsoleFlood guest writes to its console: eight times
// hypervisor.MaxConsoleLog. The emulated UART moves about 45 KiB/s under TCG here, so the
// default keeps the scenario under a minute; VESSEL_HVTEST_FLOOD_MIB asks for more (64
// takes about 25 minutes under TCG).
const defaultFloodMiB = 2

// floodMiB is VESSEL_HVTEST_FLOOD_MIB or defaultFloodMiB.
func floodMiB(t *testing.T) int {
	s := os.Getenv("VESSEL_HVTEST_FLOOD_MIB")
	if s == "" {
		return defaultFloodMiB
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("VESSEL_HVTEST_FLOOD_MIB=%q: want a positive number of MiB", s)
	}
	return n
}

// testConsoleFlood boots a guest that writes floodMiB MiB of hostile text to its serial
// console. The driver's console buffer (ConsoleTail) and console log stay at
// hypervisor.MaxConsoleLog and end with the guest's last line, and the VM keeps working.
func (s *suite) testConsoleFlood(t *testing.T) {
	floodMiB := floodMiB(t)
	cfg := s.config(t, "flood")
	cfg.KernelParams = append(cfg.KernelParams, fmt.Sprintf("hvtest.flood=%d", floodMiB))
	b := s.startConfig(t, cfg)
	s.waitBooted(t, b)
	// The emulated UART is slow: allow 60 s per MiB.
	floodTimeout := time.Duration(floodMiB) * time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), floodTimeout)
	defer cancel()
	begin := time.Now()
	for {
		line, err := b.agent.line(ctxDeadline(ctx))
		if err != nil {
			t.Fatalf("waiting for the guest to finish its console flood: %v%s", err, consoleTail(b.vm, b.cfg))
		}
		if line == fmt.Sprintf("hvtest-flooded %d", floodMiB) {
			break
		}
	}
	t.Logf("guest wrote %d MiB to its console in %v", floodMiB, time.Since(begin))
	waitConsole(t, b, "hvtest-flood-end flood")

	kept, err := consoleOf(b.vm, b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) > hypervisor.MaxConsoleLog {
		t.Errorf("driver keeps %d bytes of console, bound %d", len(kept), hypervisor.MaxConsoleLog)
	}
	st, err := os.Stat(filepath.Join(b.cfg.StateDir, hypervisor.ConsoleLogName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > hypervisor.MaxConsoleLog || st.Size() < hypervisor.MaxConsoleLog/2 {
		t.Errorf("console log is %d bytes after a %d MiB flood, want between %d and %d",
			st.Size(), floodMiB, hypervisor.MaxConsoleLog/2, hypervisor.MaxConsoleLog)
	}
	t.Logf("console kept: %d bytes in memory, %d in %s", len(kept), st.Size(), hypervisor.ConsoleLogName)
	if tail := consoleTail(b.vm, b.cfg); strings.Contains(tail, "\x1b[2J") || !strings.Contains(tail, `\x1b[2J`) {
		t.Errorf("console tail for messages is not escaped:%s", tail)
	}

	// The VM still works: ticks go on, and it answers its control channel.
	first, err := b.agent.tick(ctx)
	if err != nil {
		t.Fatalf("tick after the flood: %v", err)
	}
	if next, err := b.agent.tick(ctx); err != nil || next <= first {
		t.Fatalf("ticks after the flood: %d then %d, %v", first, next, err)
	}
	if st, err := b.vm.State(ctx); err != nil || st != hypervisor.StateRunning {
		t.Errorf("state after the flood: got %q, %v; want %q", st, err, hypervisor.StateRunning)
	}
}

// assertGone checks that no process pid exists any more (reaped, not a zombie).
func assertGone(t *testing.T, pid int) {
	t.Helper()
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !errors.Is(err, fs.ErrNotExist) {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		t.Errorf("process %d still exists (%v): %s", pid, err, st)
	}
}

// assertNoSockets checks that dir holds no unix sockets.
func assertNoSockets(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read state dir: %v", err)
	}
	for _, e := range entries {
		if e.Type()&fs.ModeSocket != 0 {
			t.Errorf("socket left in state dir: %s", e.Name())
		}
	}
}

// pssKiB is the proportional set size of pid from smaps_rollup, 0 if unknown.
func pssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// agentConn reads lines the guest writes into the agent port.
type agentConn struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialAgent(t *testing.T, addr hypervisor.AgentAddress) *agentConn {
	t.Helper()
	if addr.Kind != "serial" {
		t.Fatalf("hvtest supports the serial agent transport only, driver reports %q", addr.Kind)
	}
	conn, err := net.Dial("unix", addr.Path)
	if err != nil {
		t.Fatalf("dial agent socket: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &agentConn{conn: conn, r: bufio.NewReader(conn)}
}

// line reads one line, giving up at the deadline.
func (a *agentConn) line(deadline time.Time) (string, error) {
	if err := a.conn.SetReadDeadline(deadline); err != nil {
		return "", err
	}
	s, err := a.r.ReadString('\n')
	return strings.TrimRight(s, "\r\n"), err
}

func ctxDeadline(ctx context.Context) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(bootTimeout)
}

// tick reads until the next "tick N" line and returns N.
func (a *agentConn) tick(ctx context.Context) (int, error) {
	for {
		s, err := a.line(ctxDeadline(ctx))
		if err != nil {
			return 0, fmt.Errorf("waiting for a tick: %w", err)
		}
		if n, ok := strings.CutPrefix(s, "tick "); ok {
			return strconv.Atoi(n)
		}
	}
}

// drain reads lines until an error, which it returns.
func (a *agentConn) drain(ctx context.Context) error {
	for {
		if _, err := a.line(ctxDeadline(ctx)); err != nil {
			return err
		}
	}
}

// quiet reads lines until none arrives for window and returns how many arrived. It stops
// early, returning limit, once limit lines have arrived.
func (a *agentConn) quiet(window time.Duration, limit int) (int, error) {
	n := 0
	for n < limit {
		_, err := a.line(time.Now().Add(window))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
