package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/console"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/imagebuilder"
	"github.com/vessel-containers/vessel/internal/imagebuilder/kerneltest"
)

// runImage runs `vessel <args...>` with only the image command wired in.
func runImage(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	app := &cli.App{
		Name:           "vessel",
		Commands:       []*cli.Command{ImageCommand()},
		Writer:         &out,
		ErrWriter:      &out,
		ExitErrHandler: func(*cli.Context, error) {},
	}
	err := app.Run(append([]string{"vessel"}, args...))
	return out.String(), err
}

func TestImageBuildHelp(t *testing.T) {
	out, err := runImage(t, "image", "build", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"--agent", "vessel-agent next to the vessel binary",
		"--output", imagebuilder.DefaultOutputDir,
		"--kernel", `(default: "build")`, "debian",
		"--debug-console", "--busybox", "--cache-dir", imagebuilder.DefaultCacheDir, "--jobs",
		"linux-source-6.1", "linux-image-cloud-amd64", "manifest.json", "lib/vessel/modules.order",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
}

func TestImageBuildFlagErrors(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, _ = filepath.EvalSymlinks(exe)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"bad kernel", []string{"--kernel", "custom"}, []string{`--kernel "custom": want "build" or "debian"`}},
		{"negative jobs", []string{"--jobs", "-1"}, []string{"--jobs -1"}},
		{"jobs not a number", []string{"--jobs", "many"}, []string{"jobs"}},
		{"unknown flag", []string{"--nope"}, []string{"nope"}},
		{"extra argument", []string{"now"}, []string{"takes no arguments"}},
		{"missing agent", []string{"--agent", "/nonexistent/vessel-agent"}, []string{"/nonexistent/vessel-agent", "make agent"}},
		{"default agent next to the binary", nil, []string{filepath.Join(filepath.Dir(exe), "vessel-agent"), "make agent"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir()
			args := append([]string{"image", "build", "--output", filepath.Join(out, "guest"), "--cache-dir", filepath.Join(out, "cache")}, tt.args...)
			_, err := runImage(t, args...)
			if err == nil {
				t.Fatal("succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, err := os.Stat(filepath.Join(out, "guest")); err == nil {
				t.Error("output directory created despite the error")
			}
		})
	}
}

func TestImageBuildWithCachedKernel(t *testing.T) {
	agent := "/bin/busybox" // any static executable will do as the agent here
	if err := imagebuilder.CheckStatic(agent); err != nil {
		t.Skipf("no static binary to stand in for the agent: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "dpkg-query"), []byte("#!/bin/sh\nprintf 9.9-test\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	cache := filepath.Join(dir, "cache")
	key := imagebuilder.KernelCacheKey(imagebuilder.KernelFragment(), "9.9-test")
	vmlinux := imagebuilder.KernelCachePath(cache, key)
	if err := os.MkdirAll(filepath.Dir(vmlinux), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vmlinux, []byte("cached kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	guest := filepath.Join(dir, "guest")

	out, err := runImage(t, "image", "build", "--agent", agent, "--output", guest, "--cache-dir", cache, "--debug-console")
	if err != nil {
		t.Fatalf("image build: %v\n%s", err, out)
	}
	for _, want := range []string{filepath.Join(guest, "vmlinux"), filepath.Join(guest, "initramfs.img"), filepath.Join(guest, "manifest.json"), key, "lz4 (agent, busybox)", "MiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"vmlinux", "initramfs.img", "manifest.json"} {
		if _, err := os.Stat(filepath.Join(guest, f)); err != nil {
			t.Error(err)
		}
	}
}

// TestImageBuildProgress drives `vessel image build` with a fake kernel compile
// (kerneltest: its make prints 60 kbuild steps; the last build logged in the cache printed
// 60) with standard error on a pty, then on a pipe. On the pty the make vmlinux stage is
// one line redrawn in place with a rising percentage; on the pipe each stage prints plain
// lines, without carriage returns or percentages.
func TestImageBuildProgress(t *testing.T) {
	agent := "/bin/busybox" // any static executable will do as the agent here
	if err := imagebuilder.CheckStatic(agent); err != nil {
		t.Skipf("no static binary to stand in for the agent: %v", err)
	}
	env := kerneltest.Setup(t, "9.9-progress")
	t.Setenv("FAKE_MAKE_STEPS", "60")

	run := func(t *testing.T, stderr *os.File) {
		t.Helper()
		dir := t.TempDir()
		cache := filepath.Join(dir, "cache")
		kerneltest.WriteBuildLog(t, filepath.Join(cache, "kernel"), "earlier", 60)
		var out bytes.Buffer
		app := &cli.App{
			Name:           "vessel",
			Commands:       []*cli.Command{ImageCommand()},
			Writer:         &out,
			ErrWriter:      stderr,
			ExitErrHandler: func(*cli.Context, error) {},
		}
		args := []string{"vessel", "image", "build", "--agent", agent, "--output", filepath.Join(dir, "guest"),
			"--cache-dir", cache, "--kernel-source", env.Tarball, "--jobs", "2"}
		if err := app.Run(args); err != nil {
			t.Fatalf("image build: %v\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "initramfs") {
			t.Errorf("summary lacks the initramfs:\n%s", out.String())
		}
	}

	t.Run("terminal", func(t *testing.T) {
		master, slavePath, err := console.NewPty()
		if err != nil {
			t.Fatalf("pty: %v", err)
		}
		defer master.Close()
		if err := master.Resize(console.WinSize{Height: 40, Width: 160}); err != nil {
			t.Fatal(err)
		}
		slave, err := os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		read := make(chan struct{})
		go func() {
			defer close(read)
			_, _ = io.Copy(&got, master) // ends with EIO once the slave is closed
		}()
		run(t, slave)
		if err := slave.Close(); err != nil {
			t.Fatal(err)
		}
		<-read
		text := got.String()
		t.Logf("pty output:\n%q", text)
		// Redraws in place: a carriage return that does not end a line (the pty turns
		// "\n" into "\r\n").
		if !regexp.MustCompile("\r[^\n]").MatchString(text) {
			t.Errorf("no in-place redraw (carriage return not before a newline) on the pty")
		}
		pcts := regexp.MustCompile(`\rkernel: make vmlinux \[[ =>]+\] +(\d+)% (\d+)/~60 objects`).FindAllStringSubmatch(text, -1)
		if len(pcts) < 10 {
			t.Fatalf("make vmlinux drew %d progress lines, want at least 10", len(pcts))
		}
		prev := -1
		for _, m := range pcts {
			p, _ := strconv.Atoi(m[1])
			if p <= prev {
				t.Errorf("percentage went from %d to %d", prev, p)
			}
			prev = p
		}
		if prev != 99 {
			t.Errorf("last percentage drawn = %d, want 99 (an estimated total shows 100 only when done)", prev)
		}
		for _, want := range []string{"kernel: make vmlinux: done in", "60 objects", "\rinitramfs [", "initramfs: done in", "kernel: extract source: done in"} {
			if !strings.Contains(text, want) {
				t.Errorf("pty output lacks %q", want)
			}
		}
	})

	t.Run("pipe", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var got bytes.Buffer
		read := make(chan struct{})
		go func() {
			defer close(read)
			_, _ = io.Copy(&got, r)
		}()
		run(t, w)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		<-read
		text := got.String()
		t.Logf("pipe output:\n%s", text)
		if strings.ContainsAny(text, "\r\x1b%") {
			t.Errorf("plain output has carriage returns, escapes or percentages:\n%q", text)
		}
		for _, want := range []string{
			"kernel: extract source (0.0 MiB)\n", "kernel: make vmlinux (about 60 objects)\n",
			"kernel: make vmlinux: done in", ", 60 objects\n", "initramfs (", "initramfs: done in", "manifest: done in",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("plain output lacks %q", want)
			}
		}
	})
}
