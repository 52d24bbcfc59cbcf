// Package kerneltest stands in for a kernel build in tests: a fake make and dpkg-query on
// PATH and a small linux-source tarball, so that imagebuilder's kernel step runs in
// milliseconds instead of a real half-hour compile.
package kerneltest

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
)

// FakeMake stands in for the kernel's make: tinyconfig writes a small .config, olddefconfig
// drops $FAKE_MAKE_DROP (as Kconfig drops an option whose dependency is missing), and
// `-jN vmlinux` prints $FAKE_MAKE_STEPS lines of kbuild's quiet output ("  CC      ..."),
// then writes a fake vmlinux, fails with $FAKE_MAKE_FAIL or sleeps $FAKE_MAKE_SLEEP.
// Every call is appended to $FAKE_MAKE_LOG.
const FakeMake = `#!/bin/sh
echo "$*" >> "$FAKE_MAKE_LOG"
case "$1" in
tinyconfig)
	printf 'CONFIG_64BIT=y\n# CONFIG_MODULES is not set\n' > .config ;;
olddefconfig)
	if [ -n "$FAKE_MAKE_DROP" ]; then grep -v "^$FAKE_MAKE_DROP=" .config > .config.new; mv .config.new .config; fi ;;
-j*)
	[ "$2" = vmlinux ] || exit 3
	i=0
	while [ "$i" -lt "${FAKE_MAKE_STEPS:-0}" ]; do
		i=$((i + 1))
		echo "  CC      drivers/fake/obj$i.o"
	done
	if [ -n "$FAKE_MAKE_SLEEP" ]; then sleep "$FAKE_MAKE_SLEEP"; fi
	if [ -n "$FAKE_MAKE_FAIL" ]; then echo "ld: undefined reference to boom" >&2; exit 2; fi
	printf 'fake vmlinux\n' > vmlinux ;;
*)
	echo "fake make: unexpected $*" >&2; exit 4 ;;
esac
`

// fakeMergeConfig is scripts/kconfig/merge_config.sh in the fake source tarball.
const fakeMergeConfig = `#!/bin/sh
[ "$1" = -m ] || exit 9
cat "$3" >> "$2"
`

// Env is a fake kernel build environment.
type Env struct {
	// Tarball is the fake linux-source tarball.
	Tarball string
	// MakeLog is where the fake make records its calls.
	MakeLog string
	// SourceVersion is what the fake dpkg-query prints.
	SourceVersion string
}

// Setup puts the fake make and dpkg-query (printing sourceVersion) first on PATH, writes
// the fake tarball into a temporary directory and clears the FAKE_MAKE_* variables. Tests
// using it cannot run in parallel (they set environment variables).
func Setup(t *testing.T, sourceVersion string) *Env {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	writeFile(t, filepath.Join(bin, "make"), FakeMake, 0o755)
	writeFile(t, filepath.Join(bin, "dpkg-query"), "#!/bin/sh\nprintf '"+sourceVersion+"'\n", 0o755)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	e := &Env{
		Tarball:       filepath.Join(dir, "linux-source-6.1.tar.xz"),
		MakeLog:       filepath.Join(dir, "make.log"),
		SourceVersion: sourceVersion,
	}
	t.Setenv("FAKE_MAKE_LOG", e.MakeLog)
	for _, k := range []string{"FAKE_MAKE_DROP", "FAKE_MAKE_FAIL", "FAKE_MAKE_SLEEP", "FAKE_MAKE_STEPS"} {
		t.Setenv(k, "")
	}
	WriteSourceTarball(t, e.Tarball)
	return e
}

// WriteSourceTarball writes an xz tarball shaped like linux-source-6.1's: one top
// directory holding a Makefile and scripts/kconfig/merge_config.sh.
func WriteSourceTarball(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw, err := xz.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	for _, e := range []struct {
		name string
		mode int64
		body string
	}{
		{"linux-source-6.1/", 0o755, ""},
		{"linux-source-6.1/Makefile", 0o644, "# fake\n"},
		{"linux-source-6.1/scripts/", 0o755, ""},
		{"linux-source-6.1/scripts/kconfig/", 0o755, ""},
		{"linux-source-6.1/scripts/kconfig/merge_config.sh", 0o755, fakeMergeConfig},
	} {
		hdr := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.body)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if strings.HasSuffix(e.name, "/") {
			hdr.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []interface{ Close() error }{tw, zw} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Calls returns the fake make's calls so far, one "args" string each.
func (e *Env) Calls(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(e.MakeLog)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// WriteBuildLog writes a finished build's log into the kernel cache directory kdir
// (<cache>/kernel) whose `make vmlinux` printed steps kbuild lines: the count a next
// build takes as its estimate.
func WriteBuildLog(t *testing.T, kdir, key string, steps int) {
	t.Helper()
	var b strings.Builder
	b.WriteString("==> make olddefconfig\n==> make olddefconfig done in 1s\n==> make vmlinux\n$ make -j2 vmlinux\n")
	for i := range steps {
		b.WriteString("  CC      old/obj" + strings.Repeat("x", i%3) + ".o\n")
	}
	b.WriteString("==> make vmlinux done in 10m0s\n")
	writeFile(t, filepath.Join(kdir, key+".build.log"), b.String(), 0o644)
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}
