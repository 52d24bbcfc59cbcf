package shim_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/containerd/console"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// stdioPayloadSize is what TestCtrStdioIntegrity pushes through each stream.
const stdioPayloadSize = 20 << 20

// TestCtrStdioIntegrity pushes 20 MiB of random bytes from a container to the host through
// stdout and stderr pipes and through a terminal, and checks that every byte arrived
// intact and in order. The terminal's payload has no newline or carriage return: a
// terminal on the way may turn one into the other or add one (ONLCR), which is the
// terminal's job, not a loss.
func TestCtrStdioIntegrity(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	payload := make([]byte, stdioPayloadSize)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "payload"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	ttyPayload := make([]byte, len(payload))
	for i, c := range payload {
		switch c {
		case '\n', '\r':
			c = 'x'
		}
		ttyPayload[i] = c
	}
	if err := os.WriteFile(filepath.Join(dir, "tty-payload"), ttyPayload, 0o644); err != nil {
		t.Fatal(err)
	}
	mount := []string{"--mount", "type=bind,src=" + dir + ",dst=/data,options=rbind:ro"}
	check := func(t *testing.T, name string, got, sent []byte) {
		t.Helper()
		if sum, want := sha256.Sum256(got), sha256.Sum256(sent); sum != want {
			t.Errorf("%s: %d bytes arrived with sha256 %x, want the %d bytes sent (sha256 %x)", name, len(got), sum, len(sent), want)
		}
	}

	t.Run("pipes", func(t *testing.T) {
		ctx, cancel := h.ctx()
		defer cancel()
		args := append(append([]string{"run", "--rm", "--runtime", runtimeName}, mount...),
			testutil.BusyboxImageRef, "stdio-pipes", "sh", "-c", "cat /data/payload; cat /data/payload >&2")
		cmd := h.ctd.CtrCmd(ctx, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("ctr run: %v (stderr starts %q)", err, stderr.Bytes()[:min(stderr.Len(), 200)])
		}
		check(t, "stdout", stdout.Bytes(), payload)
		check(t, "stderr", stderr.Bytes(), payload)
	})

	t.Run("terminal", func(t *testing.T) {
		pty, slave, err := console.NewPty()
		if err != nil {
			t.Fatal(err)
		}
		defer pty.Close()
		tty, err := os.OpenFile(slave, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer tty.Close()
		// ctr's terminal is raw: it passes the container's output as it comes.
		ctrTerm, err := console.ConsoleFromFile(tty)
		if err != nil {
			t.Fatal(err)
		}
		if err := ctrTerm.SetRaw(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := h.ctx()
		defer cancel()
		// The marker tells where the payload starts: the terminal is only raw (no echo of
		// anything, no signals) once stty ran.
		args := append(append([]string{"run", "--rm", "-t", "--runtime", runtimeName}, mount...),
			testutil.BusyboxImageRef, "stdio-tty", "sh", "-c", "stty raw -echo && printf START && cat /data/tty-payload")
		cmd := h.ctd.CtrCmd(ctx, args...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		tty.Close()
		var out bytes.Buffer
		done := make(chan error, 1)
		go func() {
			_, err := io.Copy(&out, pty)
			done <- err
		}()
		werr := cmd.Wait()
		if err := <-done; err != nil && !errors.Is(err, syscall.EIO) {
			t.Errorf("read the terminal: %v", err)
		}
		var ee *exec.ExitError
		if werr != nil && !errors.As(werr, &ee) {
			t.Fatalf("ctr run -t: %v", werr)
		}
		if werr != nil {
			t.Fatalf("ctr run -t: %v; terminal starts %q", werr, out.Bytes()[:min(out.Len(), 200)])
		}
		got := out.Bytes()
		i := bytes.Index(got, []byte("START"))
		if i < 0 {
			t.Fatalf("terminal output (%d bytes) lacks the start marker; it starts %q", len(got), got[:min(len(got), 200)])
		}
		check(t, "terminal", got[i+len("START"):], ttyPayload)
	})
}
