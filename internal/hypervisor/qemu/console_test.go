package qemu

import (
	"bytes"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// TestRing checks the ring against the obvious model: the last size bytes of everything
// written, for writes smaller than, equal to and larger than the ring.
func TestRing(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{1, 7, 64} {
		r := ring{size: size}
		var all []byte
		if got := r.bytes(); len(got) != 0 {
			t.Fatalf("size %d: empty ring holds %q", size, got)
		}
		for i := range 500 {
			p := make([]byte, rnd.IntN(2*size+2))
			for j := range p {
				p[j] = byte(rnd.IntN(256))
			}
			r.write(p)
			all = append(all, p...)
			want := all[max(len(all)-size, 0):]
			if got := r.bytes(); !bytes.Equal(got, want) {
				t.Fatalf("size %d, write %d (%d bytes): got %q, want %q", size, i, len(p), got, want)
			}
			if r.len() > size || cap(r.buf) > size {
				t.Fatalf("size %d: ring holds %d bytes, capacity %d", size, r.len(), cap(r.buf))
			}
			n := rnd.IntN(size + 3)
			if got, want := r.last(n), want[max(len(want)-n, 0):]; !bytes.Equal(got, want) {
				t.Fatalf("size %d: last(%d): got %q, want %q", size, n, got, want)
			}
		}
	}
}

// stream is n bytes of numbered lines, so that any cut is visible.
func stream(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		b.WriteString(strings.Repeat("x", i%50))
		b.WriteString(" line ")
		b.WriteString(time.Duration(i).String())
		b.WriteByte('\n')
	}
	return b.Bytes()[:n]
}

// TestConsoleLogBounded writes 4 MiB in reads of varied sizes: memory and file stay at
// the bound, the ring holds exactly the newest bytes and the file a suffix of the stream
// at least half the bound long.
func TestConsoleLogBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), hypervisor.ConsoleLogName)
	c := newConsoleLog()
	if err := c.open(path); err != nil {
		t.Fatal(err)
	}
	data := stream(4 << 20)
	for off, step := 0, 1; off < len(data); step = step*7%(consoleReadSize) + 1 {
		end := min(off+step, len(data))
		c.write(data[off:end])
		off = end
		if _, kept, size := c.stats(); kept > hypervisor.MaxConsoleLog || size > hypervisor.MaxConsoleLog {
			t.Fatalf("after %d bytes: ring %d, file %d bytes, bound %d", off, kept, size, hypervisor.MaxConsoleLog)
		}
	}
	if err := c.closeFile(); err != nil {
		t.Fatal(err)
	}
	total, kept, size := c.stats()
	if total != int64(len(data)) || kept != hypervisor.MaxConsoleLog {
		t.Errorf("stats: total %d, ring %d; want %d and %d", total, kept, len(data), hypervisor.MaxConsoleLog)
	}
	if got := c.tail(); !bytes.Equal(got, data[len(data)-hypervisor.MaxConsoleLog:]) {
		t.Error("ring does not hold the newest bytes")
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(file)) != size || len(file) > hypervisor.MaxConsoleLog || len(file) < hypervisor.MaxConsoleLog/2 {
		t.Errorf("console.log: %d bytes (recorded %d), want between %d and %d", len(file), size, hypervisor.MaxConsoleLog/2, hypervisor.MaxConsoleLog)
	}
	if !bytes.HasSuffix(data, file) {
		t.Error("console.log is not the end of what the guest wrote")
	}

	// A new owner (adoption) goes on with the file and starts with its end in the ring.
	c2 := newConsoleLog()
	if err := c2.open(path); err != nil {
		t.Fatal(err)
	}
	c2.write([]byte("after handover\n"))
	if err := c2.closeFile(); err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{}, file...), "after handover\n"...)
	if got := c2.tail(); !bytes.Equal(got, want) {
		t.Errorf("adopter's ring: %d bytes, want the file's %d and the new line", len(got), len(want))
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
		t.Errorf("adopter's console.log: %d bytes, want %d", len(got), len(want))
	}
}

// TestConsoleLogOpenTrims opens a console.log larger than the bound (left by something
// that did not bound it): it is cut to the newest half of the bound.
func TestConsoleLogOpenTrims(t *testing.T) {
	path := filepath.Join(t.TempDir(), hypervisor.ConsoleLogName)
	data := stream(3 * hypervisor.MaxConsoleLog)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c := newConsoleLog()
	if err := c.open(path); err != nil {
		t.Fatal(err)
	}
	if err := c.closeFile(); err != nil {
		t.Fatal(err)
	}
	file, _ := os.ReadFile(path)
	if len(file) != hypervisor.MaxConsoleLog/2 || !bytes.HasSuffix(data, file) {
		t.Errorf("console.log after open: %d bytes, want the last %d", len(file), hypervisor.MaxConsoleLog/2)
	}
	if got := c.tail(); !bytes.Equal(got, data[len(data)-hypervisor.MaxConsoleLog:]) {
		t.Error("ring was not seeded with the file's end")
	}
}

// TestConsoleReader runs the VM's console reader against a socket standing in for QEMU's
// chardev: a guest writing 16 MiB as fast as it can leaves the ring and the file at the
// bound, the reader stops when the writer hangs up, and again when stopConsole closes the
// connection of a writer that stays.
func TestConsoleReader(t *testing.T) {
	v, _ := newTestVM(t, nil)
	if err := os.MkdirAll(v.cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", v.statePath(consoleSocketName))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	logger := log.L.WithField("test", t.Name())

	data := stream(16 << 20)
	wrote := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			wrote <- err
			return
		}
		_, err = conn.Write(data)
		_ = conn.Close()
		wrote <- err
	}()
	if err := v.startConsole(logger); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("guest side: %v", err)
	}
	v.stopConsole(10 * time.Second) // the writer hung up: the reader ends on its own
	if got := v.ConsoleTail(); !bytes.Equal(got, data[len(data)-hypervisor.MaxConsoleLog:]) {
		t.Errorf("ConsoleTail: %d bytes, want the last %d of the stream", len(got), hypervisor.MaxConsoleLog)
	}
	st, err := os.Stat(v.statePath(hypervisor.ConsoleLogName))
	if err != nil || st.Size() > hypervisor.MaxConsoleLog || st.Mode().Perm() != 0o600 {
		t.Errorf("console.log: %v, %d bytes, mode %v; want at most %d, 0600", err, st.Size(), st.Mode(), hypervisor.MaxConsoleLog)
	}

	// A writer that never hangs up: stopConsole (Detach) ends the reader.
	held := make(chan net.Conn, 1)
	go func() {
		conn, err := l.Accept()
		if err == nil {
			_, _ = conn.Write([]byte("still here\n"))
		}
		held <- conn
	}()
	if err := v.startConsole(logger); err != nil {
		t.Fatal(err)
	}
	conn := <-held
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !bytes.HasSuffix(v.ConsoleTail(), []byte("still here\n")) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	v.stopConsole(0)
	if !bytes.HasSuffix(v.ConsoleTail(), []byte("still here\n")) {
		t.Error("second connection's output missing from the ring")
	}
	assertNoDriverGoroutines(t)
}

// TestLogTailsEscaped checks that the console tail an error quotes is escaped and bounded.
func TestLogTailsEscaped(t *testing.T) {
	v, _ := newTestVM(t, nil)
	v.console.write([]byte(strings.Repeat("y", 1<<20) + "\n"))
	v.console.write([]byte("ok line\n\x1b[2J\x1b]0;owned\x07evil\r\n"))
	got := v.logTails()
	if strings.ContainsAny(got, "\x1b\x07\r") {
		t.Errorf("tail holds raw control characters: %q", got)
	}
	if !strings.Contains(got, `\x1b[2J\x1b]0;owned\x07evil`) || !strings.Contains(got, "ok line") {
		t.Errorf("tail lacks the escaped last lines: %q", got)
	}
	if len(got) > 4*tailBytes {
		t.Errorf("tail is %d bytes, want it bounded near %d", len(got), 2*tailBytes)
	}
}
