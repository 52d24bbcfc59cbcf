// Command logger is a logging binary for the shim's tests, following containerd's contract:
// the output arrives on fds 3 (stdout) and 4 (stderr), closing fd 5 says it is ready, and
// CONTAINER_ID and CONTAINER_NAMESPACE name the process. Its arguments are "dir DIR": it
// writes DIR/stdout, DIR/stderr, DIR/env (its environment) and DIR/ready (before it says
// it is ready). With "fail" as an argument it exits with status 3 before it is ready.
package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

func main() {
	var dir string
	for i, a := range os.Args {
		if a == "dir" && i+1 < len(os.Args) {
			dir = os.Args[i+1]
		}
		if a == "fail" {
			os.Exit(3)
		}
	}
	if dir == "" {
		os.Exit(2)
	}
	must(os.WriteFile(filepath.Join(dir, "env"), []byte(strings.Join(os.Environ(), "\n")), 0o644))
	var wg sync.WaitGroup
	for fd, name := range map[uintptr]string{3: "stdout", 4: "stderr"} {
		in := os.NewFile(fd, name)
		out, err := os.Create(filepath.Join(dir, name))
		must(err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := io.Copy(out, in)
			must(err)
			must(out.Close())
		}()
	}
	must(os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644))
	must(os.NewFile(5, "ready").Close())
	wg.Wait()
}

func must(err error) {
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
}
