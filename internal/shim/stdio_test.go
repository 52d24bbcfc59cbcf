package shim

import (
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"golang.org/x/sys/unix"
)

// buildLogger builds testdata/logger, a logging binary following containerd's contract.
func buildLogger(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = "/usr/local/go/bin/go"
	}
	bin := filepath.Join(t.TempDir(), "logger")
	out, err := exec.Command(gobin, "build", "-o", bin, "./testdata/logger").CombinedOutput()
	if err != nil {
		t.Fatalf("build logger: %v\n%s", err, out)
	}
	return bin
}

func openTestStdio(t *testing.T, id string, s stdio) (*hostIO, error) {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), "ns1")
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return openStdio(ctx, openCtx, id, s)
}

func write(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStdioBinary(t *testing.T) {
	bin := buildLogger(t)
	dir := t.TempDir()
	uri := (&url.URL{Scheme: "binary", Path: bin, RawQuery: url.Values{"dir": {dir}}.Encode()}).String()
	h, err := openTestStdio(t, "c1", stdio{stdout: uri, stderr: uri})
	if err != nil {
		t.Fatal(err)
	}
	// openStdio returns only once the binary said it is ready.
	if _, err := os.Stat(filepath.Join(dir, "ready")); err != nil {
		t.Errorf("openStdio returned before the logging binary was ready: %v", err)
	}
	if _, err := io.WriteString(h.pio.Stdout, "out\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(h.pio.Stderr, "err\n"); err != nil {
		t.Fatal(err)
	}
	l := h.closers[0].(*logger)
	pid := l.cmd.Process.Pid
	h.close()
	// Closing ended the output and reaped the binary, which exited on its own.
	select {
	case <-l.exited:
	default:
		t.Fatal("close returned before the logging binary was reaped")
	}
	if l.waitErr != nil {
		t.Errorf("logging binary: %v", l.waitErr)
	}
	if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("logging binary pid %d after close: kill 0 = %v, want ESRCH", pid, err)
	}
	if got := readFile(t, filepath.Join(dir, "stdout")); got != "out\n" {
		t.Errorf("stdout: got %q", got)
	}
	if got := readFile(t, filepath.Join(dir, "stderr")); got != "err\n" {
		t.Errorf("stderr: got %q", got)
	}
	if got := readFile(t, filepath.Join(dir, "env")); got != "CONTAINER_ID=c1\nCONTAINER_NAMESPACE=ns1" {
		t.Errorf("environment: got %q", got)
	}
}

func TestStdioBinaryTerminal(t *testing.T) {
	bin := buildLogger(t)
	dir := t.TempDir()
	uri := "binary://" + bin + "?dir=" + dir
	h, err := openTestStdio(t, "c1", stdio{stdout: uri, terminal: true})
	if err != nil {
		t.Fatal(err)
	}
	if h.pio.Stderr != nil {
		t.Error("a terminal process has a stderr")
	}
	write(t, h.pio.Stdout, "tty\n")
	h.close()
	if got := readFile(t, filepath.Join(dir, "stdout")); got != "tty\n" {
		t.Errorf("stdout: got %q", got)
	}
}

func TestStdioBinaryFails(t *testing.T) {
	for name, uri := range map[string]string{
		"not there":     "binary:///nonexistent/logger",
		"relative path": "binary:logger",
	} {
		t.Run(name, func(t *testing.T) {
			if h, err := openTestStdio(t, "c1", stdio{stdout: uri, stderr: uri}); err == nil {
				h.close()
				t.Fatalf("openStdio(%s) succeeded", uri)
			} else if !strings.Contains(err.Error(), uri) {
				t.Errorf("error does not name the uri: %v", err)
			}
		})
	}
	// A binary that exits instead of getting ready closes the ready pipe too: its failure is
	// reported when openStdio sees the exit already, else by the close at the end.
	t.Run("exits before ready", func(t *testing.T) {
		uri := "binary://" + buildLogger(t) + "?fail"
		h, err := openTestStdio(t, "c1", stdio{stdout: uri, stderr: uri})
		if err == nil {
			err = h.close()
		}
		if err == nil || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf("got %v, want the logging binary's exit status 3", err)
		}
	})
}

func TestStdioFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "log")
	for _, line := range []string{"one", "two"} {
		h, err := openTestStdio(t, "c1", stdio{stdout: "file://" + path, stderr: "file://" + path})
		if err != nil {
			t.Fatal(err)
		}
		write(t, h.pio.Stdout, line+"\n")
		write(t, h.pio.Stderr, line+"-err\n")
		h.close()
	}
	if got, want := readFile(t, path), "one\none-err\ntwo\ntwo-err\n"; got != want {
		t.Errorf("log file: got %q, want %q", got, want)
	}
}

func TestStdioFIFO(t *testing.T) {
	dir := t.TempDir()
	for _, scheme := range []string{"", "fifo://"} {
		out, errp := filepath.Join(dir, "out"), filepath.Join(dir, "err")
		for _, p := range []string{out, errp} {
			os.Remove(p)
			if err := unix.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		// The reading ends, as containerd holds them.
		readers := make(chan []*os.File, 1)
		go func() {
			o, _ := os.OpenFile(out, os.O_RDONLY, 0)
			e, _ := os.OpenFile(errp, os.O_RDONLY, 0)
			readers <- []*os.File{o, e}
		}()
		h, err := openTestStdio(t, "c1", stdio{stdout: scheme + out, stderr: scheme + errp})
		if err != nil {
			t.Fatal(err)
		}
		rs := <-readers
		write(t, h.pio.Stdout, "o")
		write(t, h.pio.Stderr, "e")
		h.close()
		for i, want := range []string{"o", "e"} {
			b, err := io.ReadAll(rs[i])
			if err != nil || string(b) != want {
				t.Errorf("%q: fifo %d: got %q, %v; want %q", scheme, i, b, err, want)
			}
			rs[i].Close()
		}
	}
}

func TestStdioUnknownScheme(t *testing.T) {
	_, err := openTestStdio(t, "c1", stdio{stdout: "tcp://127.0.0.1:1"})
	if !errors.Is(err, errUnsupportedScheme) || !strings.Contains(err.Error(), `"tcp"`) {
		t.Errorf("got %v, want the scheme refused by name", err)
	}
}

// TestStdinCloseKeepsWrittenBytes: a client writes, closes its end and asks for stdin to
// be closed while the copier is still busy with what it read before; the bytes left in
// the FIFO still reach the copier before it sees the close.
func TestStdinCloseKeepsWrittenBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stdin")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := openTestStdio(t, "c1", stdio{stdin: path})
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The copier reads once each time it is let go: it is busy (sending to the guest) in
	// between.
	gate := make(chan struct{})
	got := make(chan string)
	go func() {
		buf := make([]byte, 64)
		for range gate {
			n, err := h.pio.Stdin.Read(buf)
			if err != nil {
				got <- "error: " + err.Error()
				continue
			}
			got <- string(buf[:n])
		}
	}()
	defer close(gate)
	write(t, w, "hello\n")
	gate <- struct{}{}
	if s := <-got; s != "hello\n" {
		t.Fatalf("first read: %q", s)
	}
	write(t, w, "again\n")
	w.Close()
	closed := make(chan error, 1)
	go func() { closed <- h.stdin.closeDrained() }()
	gate <- struct{}{}
	if s := <-got; s != "again\n" {
		t.Fatalf("read after the close was asked for: got %q, want the bytes written before it", s)
	}
	if err := <-closed; err != nil {
		t.Errorf("close: %v", err)
	}
}
