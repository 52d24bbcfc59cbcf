package testutil

import (
	"bufio"
	"io"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Lines delivers r's lines until r ends, then closes the channel. The goroutine ends with
// r: close the writer (or r) to stop it.
func Lines(r io.Reader) <-chan string {
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines
}

// ListenConsole listens on a console socket at path as conmon does and delivers the one
// descriptor (the pty master) a runtime sends over it; the channel closes without a value
// if none arrives. The listener closes when the test ends.
func ListenConsole(t testing.TB, path string) <-chan *os.File {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan *os.File, 1)
	go func() {
		defer close(got)
		c, err := l.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		oob := make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := c.ReadMsgUnix(make([]byte, 256), oob)
		if err != nil {
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			return
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			return
		}
		got <- os.NewFile(uintptr(fds[0]), "pty-master")
	}()
	return got
}
