//go:build linux

package factory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/sirupsen/logrus"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	factoryv1 "github.com/vessel-containers/vessel/api/factory/v1"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/procid"
	"github.com/vessel-containers/vessel/internal/testutil/ttrpcwire"
	"github.com/vessel-containers/vessel/internal/unixsock"
)

const (
	cacheServiceName = "vessel.factory.v1.Cache"
	// fuzzDriver is the hypervisor driver FuzzClientResponse takes VMs over with.
	fuzzDriver = "takeover"
	// failStartID is the sandbox id whose VM fails to start (the taker's failure path).
	failStartID = "sb-fail"
	// failStartBit in FuzzClientResponse's code makes the taken VM fail to start.
	failStartBit = 1 << 16
	// hangAfter is how long FuzzClientResponse lets the client handle one answer.
	hangAfter = 3 * time.Second
)

func init() {
	hypervisor.Register(fuzzDriver, hypervisor.Driver{New: func(cfg hypervisor.Config) (hypervisor.VM, error) {
		return &adoptingVM{fakeVM: newFakeVM(cfg.ID), cfg: cfg}, nil
	}})
}

// adoptingVM is the VM the taker gets from the fuzz driver: it records its configuration
// (with Config.Adopt) and fails to start for the sandbox failStartID.
type adoptingVM struct {
	*fakeVM
	cfg hypervisor.Config
}

func (v *adoptingVM) Start(context.Context) error {
	if v.cfg.ID == failStartID {
		return errors.New("start failed on purpose")
	}
	return nil
}

// quietContext is a context whose logger discards: the server and the client log every
// refused request.
func quietContext() context.Context {
	logger := logrus.New()
	logger.SetOutput(io.Discard)
	return log.WithLogger(context.Background(), logrus.NewEntry(logger))
}

// cacheMethods lists the cache service's methods, by name.
func cacheMethods() []string {
	typ := reflect.TypeFor[factoryv1.CacheService]()
	names := make([]string, typ.NumMethod())
	for i := range names {
		names[i] = typ.Method(i).Name
	}
	slices.Sort(names)
	return names
}

// fuzzCacheKey is the configuration of the cache FuzzServerRequest serves; the seed corpus
// holds requests with its hash.
var fuzzCacheKey = Key{{"driver", "fuzz"}}

// FuzzServerRequest sends one ttrpc request frame over a unix socket to the cache's real
// ttrpc server (Server.ttrpcServer, with its peer-credential check) and real Server, whose
// cache hands out fake VMs (fakeBooter), and checks that the frame is answered or the
// connection closed, never a hang or a crash (a handler's panic kills the process: the
// server recovers none). method picks the method (a name that is not one is mapped onto
// one); payload is the method's protobuf request, or with raw set the whole ttrpc Request
// message, so the ttrpc decoder gets arbitrary bytes too.
func FuzzServerRequest(f *testing.F) {
	methods := cacheMethods()
	ctx := quietContext()
	dir := f.TempDir()
	endpoint := filepath.Join(dir, "cache.sock")
	b := &fakeBooter{}
	c, err := newCache(ctx, cacheConfig{
		dir: CacheDir(endpoint), target: 2, key: fuzzCacheKey,
		shape: Shape{VCPUs: 1, MaxVCPUs: 2, MemoryMiB: 256, MaxMemoryMiB: 512, MemorySlots: 2}, boot: b.boot,
	})
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{f: New(Config{Driver: "fuzz", CacheEndpoint: endpoint}), target: 2, cache: c}
	srv, err := s.ttrpcServer()
	if err != nil {
		f.Fatal(err)
	}
	l, err := unixsock.Listen(endpoint, 0o600)
	if err != nil {
		f.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ctx, l)
	}()
	f.Cleanup(func() {
		_ = srv.Close()
		<-served
		c.close(ctx)
	})
	// The seeds that ask for a VM get one: the cache is full before they run.
	for deadline := time.Now().Add(5 * time.Second); len(c.status().GetReady()) < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			f.Fatal("the cache did not fill")
		}
	}

	for _, m := range methods {
		f.Add(m, []byte{}, false)
	}
	good, err := proto.Marshal(&factoryv1.GetVMRequest{
		SandboxId: "sb", ConfigHash: fuzzCacheKey.Hash(), Key: keyToProto(fuzzCacheKey), Vcpus: 1, MemoryMib: 256,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("GetVM", good, false)

	f.Fuzz(func(t *testing.T, method string, payload []byte, raw bool) {
		method, body, err := ttrpcwire.FuzzBody(cacheServiceName, methods, method, payload, raw)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := roundTrip(endpoint, body)
		if err != nil {
			t.Fatalf("%s (raw %v): %v", method, raw, err)
		}
		if resp == nil {
			if !raw {
				t.Fatalf("%s: a well-formed ttrpc request was not answered", method)
			}
			return
		}
		if raw {
			// The method the server answered is the one the frame names.
			var req ttrpc.Request
			if proto.Unmarshal(body, &req) == nil {
				method = req.GetMethod()
			}
		}
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK || method != "GetVM" {
			return
		}
		// A VM was handed out: it must be one the cache booted, with the adoption its
		// driver gave. Its directory goes, as a taker would move it away.
		var got factoryv1.GetVMResponse
		if err := proto.Unmarshal(resp.GetPayload(), &got); err != nil {
			t.Fatalf("GetVM answer: %v", err)
		}
		if got.GetPid() != 42 || got.GetStartTime() != 7 || got.GetStateDir() != filepath.Join(CacheDir(endpoint), got.GetVmId()) {
			t.Fatalf("GetVM handed out %+v, want a vm of the cache with its adoption (pid 42, start time 7)", &got)
		}
		if err := os.RemoveAll(got.GetStateDir()); err != nil {
			t.Fatal(err)
		}
	})
}

// roundTrip sends body as a request on a new connection to endpoint (ttrpcwire.RoundTrip).
func roundTrip(endpoint string, body []byte) (*ttrpc.Response, error) {
	conn, err := net.Dial("unix", endpoint)
	if err != nil {
		return nil, err
	}
	return ttrpcwire.RoundTrip(conn, body)
}

// Bits of FuzzClientResponse's fix argument: they put values into a GetVM answer that no
// checked-in seed can hold (this run's pids and directories), so that mutations reach the
// taker's code past its checks.
const (
	fixVMMChild = 1 << iota // pid and start time of a child of the server
	fixSelf                 // pid and start time of the server itself (not its child)
	fixStateDir             // vm id and state dir of a VM directory in the cache's directory
	fixOutside              // vm id "../outside" and the state dir outside the cache's
)

// FuzzClientResponse answers the taker's GetVM (getVM) or a CacheStatus with a fuzzed
// answer from a hostile cache server (a ttrpc Response with status code and message and
// payload, or with raw set payload is the whole response frame's body) and checks that
// the real client returns an error or a valid result, never panics or hangs, and acts on
// nothing the answer does not identify: it takes over only the VM directory and the VMM
// process (a child of the server, with its start time) that the cache holds, and removes
// or kills nothing else: a directory beside the cache's must survive, and an answer may
// name this process itself (fixSelf), whose adoption fails the check and whose kill ends
// the worker, a crash. A VM that fails to start (sandbox failStartID) exercises the
// taker's cleanup, which kills the VMM and removes its directory; failStartBit of code
// (above the status codes) picks that sandbox.
func FuzzClientResponse(f *testing.F) {
	ctx := quietContext()
	dir := f.TempDir()
	endpoint := filepath.Join(dir, "cache.sock")
	cacheDir := CacheDir(endpoint)
	vmDir := filepath.Join(cacheDir, "vm")
	// outside is a directory beside the cache's that the answer may name but the taker
	// must never touch.
	outside := filepath.Join(dir, "outside")
	for _, d := range []string{cacheDir, outside} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "keep"), nil, 0o600); err != nil {
		f.Fatal(err)
	}
	l, err := unixsock.Listen(endpoint, 0o600)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = l.Close() })
	fac := New(Config{Driver: fuzzDriver, CacheEndpoint: endpoint})
	self, err := procid.Self()
	if err != nil {
		f.Fatal(err)
	}
	vmm := &vmmChild{}
	f.Cleanup(vmm.stop)

	for _, seed := range clientSeeds() {
		f.Add(seed.getVM, seed.code, seed.msg, seed.payload, false, seed.fix)
	}

	f.Fuzz(func(t *testing.T, getVM bool, code uint32, msg string, payload []byte, raw bool, fix uint8) {
		if err := os.MkdirAll(filepath.Join(vmDir, "shared"), 0o700); err != nil {
			t.Fatal(err)
		}
		child, err := vmm.ensure()
		if err != nil {
			t.Fatal(err)
		}
		var resp factoryv1.GetVMResponse
		if getVM && !raw && fix != 0 && proto.Unmarshal(payload, &resp) == nil {
			if fix&fixVMMChild != 0 {
				resp.Pid, resp.StartTime = int32(child.Pid), child.StartTime
			}
			if fix&fixSelf != 0 {
				resp.Pid, resp.StartTime = int32(self.Pid), self.StartTime
			}
			if fix&fixStateDir != 0 {
				resp.VmId, resp.StateDir = "vm", vmDir
			}
			if fix&fixOutside != 0 {
				resp.VmId, resp.StateDir = "../outside", outside
			}
			if payload, err = proto.Marshal(&resp); err != nil {
				t.Fatal(err)
			}
		}
		body := payload
		if !raw {
			// proto3 strings are UTF-8: a raw frame carries any other bytes.
			st := &spb.Status{Code: int32(code & 0xffff % 17), Message: strings.ToValidUTF8(msg, "\uFFFD")}
			if st.Code == int32(codes.OK) {
				st = nil
			}
			if body, err = proto.Marshal(&ttrpc.Response{Status: st, Payload: payload}); err != nil {
				t.Fatal(err)
			}
		}
		answered := make(chan error, 1)
		go func() { answered <- answerOnce(l, body) }() // owner: this iteration, which waits for it

		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		// The server answers at once and closes the connection: a call that waits for
		// seconds waits for something that never comes (an answer may itself be
		// DeadlineExceeded, so the time tells, not the error).
		begin := time.Now()
		defer func() {
			if d := time.Since(begin); d > hangAfter {
				t.Fatalf("the client took %v to handle an answer", d)
			}
		}()
		if getVM {
			checkTakeover(cctx, t, fac, dir, vmDir, outside, child, code&failStartBit != 0)
		} else {
			st, err := CacheStatus(cctx, endpoint)
			if (err == nil) == (st == nil) {
				t.Fatalf("status: got %+v and error %v, want exactly one", st, err)
			}
		}
		if err := <-answered; err != nil {
			t.Fatal(err)
		}
	})
}

// checkTakeover takes a VM from the hostile server and checks what the taker did.
func checkTakeover(ctx context.Context, t *testing.T, fac *Factory, dir, vmDir, outside string, child procid.ID, failStart bool) {
	t.Helper()
	sb, err := os.MkdirTemp(dir, "sb-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sb)
	id := "sb"
	if failStart {
		id = failStartID
	}
	want := hypervisor.Config{ID: id, StateDir: sb, Kernel: "/vmlinux", VCPUs: 1, MemoryMiB: 256}
	vm, err := fac.fromCache(ctx, KeyOf(fuzzDriver, want, nil), want)
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Fatalf("the taker touched a directory outside the cache's: %v", err)
	}
	if err != nil {
		return
	}
	a := vm.(*adoptingVM).cfg.Adopt
	if a == nil || a.Pid != child.Pid || a.StartTime != child.StartTime || vm.(*adoptingVM).cfg.StateDir != sb {
		t.Fatalf("took over %+v in %s, want the server's child %s in %s", a, vm.(*adoptingVM).cfg.StateDir, child, sb)
	}
	if _, err := os.Stat(filepath.Join(sb, "shared")); err != nil {
		t.Fatalf("the vm's files did not move: %v", err)
	}
	if _, err := os.Stat(vmDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the vm's directory after a takeover: %v", err)
	}
}

// answerOnce accepts one connection on l, reads one frame and answers it with body as a
// response frame on the same stream, then closes the connection.
func answerOnce(l *unixsock.Listener, body []byte) error {
	if err := l.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	conn, err := l.Accept()
	if err != nil {
		return fmt.Errorf("the client did not connect: %w", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	stream, typ, _, err := ttrpcwire.ReadFrame(conn)
	if err != nil {
		return fmt.Errorf("read the client's request: %w", err)
	}
	if typ != ttrpcwire.TypeRequest {
		return fmt.Errorf("client sent a frame of type %d, want a request", typ)
	}
	// The client may have given up (a closed connection) before reading: not an error.
	_ = ttrpcwire.WriteFrame(conn, stream, ttrpcwire.TypeResponse, body)
	return nil
}

// vmmChild is the stand-in for a VMM the cache server started: a child of this process.
type vmmChild struct {
	cmd *exec.Cmd
	id  procid.ID
}

// ensure returns the running child, starting a new one when the last was killed.
func (c *vmmChild) ensure() (procid.ID, error) {
	if c.cmd != nil && c.id.Alive() {
		return c.id, nil
	}
	c.stop()
	cmd := exec.Command("sleep", "100000")
	// A fuzz worker may end without its cleanups: the child goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return procid.ID{}, err
	}
	id, err := procid.Of(cmd.Process.Pid)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return procid.ID{}, err
	}
	c.cmd, c.id = cmd, id
	return id, nil
}

func (c *vmmChild) stop() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
	c.cmd = nil
}

type clientSeed struct {
	getVM   bool
	code    uint32
	msg     string
	payload []byte
	fix     uint8
}

// clientSeeds are answers the real server gives: a VM (with this run's child and
// directory filled in by fix), the errors GetVM returns, and a status.
func clientSeeds() []clientSeed {
	vm, _ := proto.Marshal(&factoryv1.GetVMResponse{
		VmId: "vm", Pid: 42, StartTime: 7, StateDir: "/run/vessel/vmcache/vm",
		Shape: &factoryv1.VMShape{Vcpus: 1, MaxVcpus: 2, MemoryMib: 256, MaxMemoryMib: 512, MemorySlots: 2}, FromTemplate: true,
	})
	st, _ := proto.Marshal(&factoryv1.StatusResponse{
		Pid: 1, ConfigHash: fuzzCacheKey.Hash(), Target: 2, Booting: 1, HandedOut: 3, Discarded: 1, BootFailures: 1,
		Ready:     []*factoryv1.CachedVM{{VmId: "cache-0123abcd", Pid: 2, FromTemplate: true, ReadyUnixNano: 1}},
		Shape:     &factoryv1.VMShape{Vcpus: 1, MaxVcpus: 2, MemoryMib: 256, MaxMemoryMib: 512, MemorySlots: 2},
		LastError: "hypervisor driver \"x\" is not built into this binary",
	})
	return []clientSeed{
		{getVM: true, payload: vm, fix: fixVMMChild | fixStateDir},
		{getVM: true, payload: vm, fix: fixSelf | fixStateDir},
		{getVM: true, code: failStartBit, payload: vm, fix: fixVMMChild | fixStateDir},
		{getVM: true, payload: vm, fix: fixVMMChild},
		{getVM: true, payload: vm, fix: fixVMMChild | fixOutside},
		{getVM: true, payload: vm},
		{getVM: true, code: uint32(codes.NotFound), msg: "no vm ready (1 booting): not found"},
		{getVM: true, code: uint32(codes.FailedPrecondition), msg: "the cache's VMs have configuration 1234, the sandbox needs a configuration that differs in kernel: failed precondition"},
		{payload: st},
		{code: uint32(codes.Unavailable), msg: "closed"},
	}
}
