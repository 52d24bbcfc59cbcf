package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/imagebuilder"
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
