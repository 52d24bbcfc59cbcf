package procio

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/fifo"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// shimSide opens the FIFOs the way the shim does: stdin for reading, stdout and stderr
// for writing (blocking until the relay's readers are there).
func shimSide(t *testing.T, f FIFOs) (stdin io.ReadCloser, stdout, stderr io.WriteCloser) {
	t.Helper()
	var err error
	if stdin, err = fifo.OpenFifo(context.Background(), f.Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0); err != nil {
		t.Fatal(err)
	}
	if stdout, err = os.OpenFile(f.Stdout, os.O_WRONLY, 0); err != nil {
		t.Fatal(err)
	}
	if f.Stderr != "" {
		if stderr, err = os.OpenFile(f.Stderr, os.O_WRONLY, 0); err != nil {
			t.Fatal(err)
		}
	}
	return stdin, stdout, stderr
}

func TestRelay(t *testing.T) {
	dir := t.TempDir()
	f, err := MakeFIFOs(dir, "init", false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	in, out, errOut := shimSide(t, f)
	var gotOut, gotErr bytes.Buffer
	r.Start(strings.NewReader("to the process\n"), &gotOut, &gotErr)

	// stdin arrives, then EOF once the input ends.
	data, err := io.ReadAll(in)
	if err != nil || string(data) != "to the process\n" {
		t.Errorf("stdin: %q %v", data, err)
	}
	in.Close()
	if _, err := out.Write([]byte("out\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := errOut.Write([]byte("err\n")); err != nil {
		t.Fatal(err)
	}
	out.Close()
	errOut.Close()
	done := make(chan struct{})
	go func() { r.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after EOF")
	}
	if gotOut.String() != "out\n" || gotErr.String() != "err\n" {
		t.Errorf("output: %q %q", gotOut.String(), gotErr.String())
	}
	r.Close()
	f.Remove()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("fifos left: %v", entries)
	}
}

func TestRelayCloseBeforeShim(t *testing.T) {
	f, err := MakeFIFOs(t.TempDir(), "x", true)
	if err != nil {
		t.Fatal(err)
	}
	if f.Stderr != "" {
		t.Errorf("a terminal process has a stderr fifo: %s", f.Stderr)
	}
	r, err := Open(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { r.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked when the shim never opened the fifos")
	}
}

func TestPtyAndConsoleSocket(t *testing.T) {
	master, slave, err := NewPty()
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	if err := Resize(master, Size{Rows: 33, Cols: 99}); err != nil {
		t.Fatal(err)
	}
	if got, err := SizeOf(slave); err != nil || got != (Size{Rows: 33, Cols: 99}) {
		t.Errorf("size seen on the slave: %+v %v", got, err)
	}
	// Raw: bytes pass unchanged, nothing is echoed.
	if _, err := master.Write([]byte("a\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := slave.Read(buf)
	if err != nil || string(buf[:n]) != "a\r\n" {
		t.Errorf("slave read %q %v, want raw \"a\\r\\n\"", buf[:n], err)
	}

	sock := filepath.Join(t.TempDir(), "console.sock")
	got := testutil.ListenConsole(t, sock)
	if err := SendConsole(sock, master); err != nil {
		t.Fatal(err)
	}
	master.Close()
	received := <-got
	if received == nil {
		t.Fatal("no descriptor received")
	}
	defer received.Close()
	// The received descriptor is the master: what the slave writes comes out of it.
	if _, err := slave.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	n, err = received.Read(buf)
	if err != nil || string(buf[:n]) != "hi" {
		t.Errorf("read from the received master: %q %v", buf[:n], err)
	}
}
