package shim

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// outputFIFO opens an output FIFO as openStdio does, with its reading end held by the test
// (as a client holds it), and writes data into it.
func outputFIFO(t *testing.T, data string) (w syscall.Conn, r *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "out")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	h, err := openTestStdio(t, "c1", stdio{stdout: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.close() })
	if len(h.fifos) != 1 {
		t.Fatalf("openStdio noted %d output fifos, want 1", len(h.fifos))
	}
	if data != "" {
		write(t, h.pio.Stdout, data)
	}
	return h.fifos[0], r
}

// unread is what the pipe of r holds.
func unread(t *testing.T, r *os.File) int {
	t.Helper()
	n, err := unix.IoctlGetInt(int(r.Fd()), unix.TIOCINQ)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAwaitTaken(t *testing.T) {
	noPause := func(context.Context, time.Duration) error {
		t.Error("awaitTaken paused though nothing was left to take")
		return nil
	}

	t.Run("empty", func(t *testing.T) {
		w, _ := outputFIFO(t, "")
		if err := awaitTaken(context.Background(), w, noPause); err != nil {
			t.Errorf("got %v, want nil", err)
		}
	})

	// The reader takes the bytes only while awaitTaken waits: it must not return before.
	t.Run("reader takes", func(t *testing.T) {
		w, r := outputFIFO(t, "out\n")
		pauses := 0
		var got string
		pause := func(context.Context, time.Duration) error {
			pauses++
			if n, want := unread(t, r), 4-len(got); n != want {
				t.Errorf("pause %d: %d bytes in the fifo, want the %d not read yet", pauses, n, want)
			}
			b := make([]byte, 2) // the reader is slow: two bytes per turn
			n, err := r.Read(b)
			if err != nil {
				t.Fatal(err)
			}
			got += string(b[:n])
			return nil
		}
		if err := awaitTaken(context.Background(), w, pause); err != nil {
			t.Errorf("got %v, want nil", err)
		}
		if got != "out\n" || pauses != 2 {
			t.Errorf("returned after %d pauses with %q read, want 2 pauses and %q", pauses, got, "out\n")
		}
	})

	t.Run("reader gone", func(t *testing.T) {
		w, r := outputFIFO(t, "out\n")
		pause := func(context.Context, time.Duration) error {
			r.Close()
			return nil
		}
		err := awaitTaken(context.Background(), w, pause)
		if !errors.Is(err, errReaderGone) || !strings.Contains(err.Error(), "4 bytes") {
			t.Errorf("got %v, want errReaderGone naming the 4 bytes left", err)
		}
	})

	t.Run("deadline", func(t *testing.T) {
		w, _ := outputFIFO(t, "out\n")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := awaitTaken(ctx, w, sleepCtx)
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "4 bytes") {
			t.Errorf("got %v, want the context's error naming the 4 bytes left", err)
		}
	})

	t.Run("closed by the shim", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "out")
		if err := unix.Mkfifo(path, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		h, err := openTestStdio(t, "c1", stdio{stdout: path})
		if err != nil {
			t.Fatal(err)
		}
		write(t, h.pio.Stdout, "out\n")
		h.close()
		if err := awaitTaken(context.Background(), h.fifos[0], noPause); err != nil {
			t.Errorf("got %v, want nil for a fifo the shim closed", err)
		}
	})
}
