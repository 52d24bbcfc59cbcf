package critest

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/vessel-containers/vessel/internal/busyboximage"
	"github.com/vessel-containers/vessel/internal/ociregistry"
)

// Where critest's images live: the Kubernetes e2e images and cri-tools' own test images.
const (
	e2eImages   = "registry.k8s.io/e2e-test-images/"
	criTestRepo = "gcr.io/k8s-staging-cri-tools/"
)

// file is one entry of an extra image layer.
type file struct {
	mode int64 // permission bits, with setuid; a directory when data is nil and mode has 040000
	data []byte
}

// hardlinkApplets rewrites the busybox layer's applet symlinks (bin/x → busybox) as hard
// links to bin/busybox, as in the busybox image critest expects: masking one applet's path
// (MaskedPaths: /bin/ls) then masks that applet only, not the binary behind every applet.
func hardlinkApplets(layer []byte) ([]byte, error) {
	type entry struct {
		hdr  *tar.Header
		data []byte
	}
	var entries []entry
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("busybox layer: %w", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("busybox layer: %w", err)
		}
		if hdr.Typeflag == tar.TypeSymlink && hdr.Linkname == "busybox" && path.Dir(hdr.Name) == "bin" {
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeLink, "bin/busybox", 0o755
		}
		entries = append(entries, entry{hdr, data})
	}
	// A hard link's target comes first in the archive: bin/busybox right after bin/.
	sort.SliceStable(entries, func(i, j int) bool {
		rank := func(n string) int {
			switch n {
			case "bin/":
				return 0
			case "bin/busybox":
				return 1
			}
			return 2
		}
		return rank(entries[i].hdr.Name) < rank(entries[j].hdr.Name)
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tw.WriteHeader(e.hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// layerOf archives files (path → entry) as a layer tar owned by root, in path order.
func layerOf(files map[string]file) ([]byte, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		f := files[n]
		hdr := &tar.Header{Name: n, Mode: f.mode &^ 0o40000, Size: int64(len(f.data)), Typeflag: tar.TypeReg}
		if f.mode&0o40000 != 0 {
			hdr.Typeflag, hdr.Name, hdr.Size = tar.TypeDir, n+"/", 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer %s: %w", n, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("layer %s: %w", n, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tools stands in for the applets critest runs that Debian's busybox lacks: pgrep (the
// names only, by process name) and ipcs -m (from /proc/sysvipc/shm).
var tools = map[string]file{
	"usr/bin/pgrep": {mode: 0o755, data: []byte("#!/bin/sh\n# pgrep NAME: the pids of the processes named NAME\n" +
		"ps -o pid= -o comm= | awk -v n=\"$1\" '$2 == n { print $1; found = 1 } END { exit !found }'\n")},
	"usr/bin/ipcs": {mode: 0o755, data: []byte("#!/bin/sh\n# ipcs -m: the System V shared memory segments\n" +
		"[ \"$1\" = -m ] || { echo \"ipcs: only -m\" >&2; exit 1; }\n" +
		"echo '------ Shared Memory Segments --------'\necho 'key        shmid      perms      bytes      nattch'\n" +
		"awk 'NR > 1 { print $1, $2, $3, $4, $7 }' /proc/sysvipc/shm\n")},
}

// extras is the layer every critest image but pause adds to busybox: tools and accounts.
var extras = func() map[string]file {
	m := map[string]file{}
	for k, v := range tools {
		m[k] = v
	}
	for k, v := range accounts {
		m[k] = v
	}
	return m
}()

// accounts is /etc/passwd and /etc/group of the busybox image critest's images are built
// on (the accounts they name: www-data, and default-user with a group defined in the image).
var accounts = map[string]file{
	"etc/passwd": {mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\n" +
		"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")},
	"etc/group": {mode: 0o644, data: []byte("root:x:0:\nwww-data:x:33:\ndefault-user:x:1000:\n" +
		"group-defined-in-image:x:50000:default-user\nnogroup:x:65534:\n")},
}

// webServerScript is the program of the nginx and httpd stand-ins, installed as
// /usr/sbin/<name>: busybox httpd in the foreground on port %d under the script's shell,
// which records its pid where nginx does and exits on SIGTERM. Run through its #! line,
// the shell's process name is the script's (what pidof finds), and the image's command
// passes "master process" as an argument, as nginx shows in its command line.
const webServerScript = `#!/bin/sh
echo $$ > /var/run/nginx.pid
trap 'kill $!; exit 0' TERM INT
echo "${0##*/} serving on :%[1]d"
/bin/httpd -f -p %[1]d -h /www &
wait
`

// webServer is the image of the nginx or httpd stand-in called name, serving on port.
func webServer(base, common []byte, env []string, name string, port int) (ociregistry.Image, error) {
	www, err := layerOf(map[string]file{
		"www":              {mode: 0o40755},
		"www/index.html":   {mode: 0o644, data: []byte("<html><body>It works!</body></html>\n")},
		"var/run":          {mode: 0o40755},
		"usr/sbin":         {mode: 0o40755},
		"usr/sbin/" + name: {mode: 0o755, data: []byte(fmt.Sprintf(webServerScript, port))},
	})
	if err != nil {
		return ociregistry.Image{}, err
	}
	return ociregistry.Image{Layers: [][]byte{base, common, www}, Config: map[string]any{"Env": env,
		"Cmd": []string{"/usr/sbin/" + name, "master process"}}}, nil
}

// noNewPrivsSource is the program of the nonewprivs stand-in, installed setuid root: it
// prints its effective uid, as the e2e image's does.
const noNewPrivsSource = `package main

import (
	"fmt"
	"os"
)

func main() { fmt.Printf("Effective uid: %d\n", os.Geteuid()) }
`

// pauseSource is the program of the pause stand-in, /pause, the sandbox container's only
// process, as in registry.k8s.io/pause: it reaps the orphans of the pod's pid namespace,
// whose PID 1 it is, and exits 0 on SIGINT or SIGTERM. A pod's containers share that
// namespace (critest leaves the pid namespace mode at POD), so they see it: its name must
// be none a spec looks for (execSync with timeout expects `pgrep sleep` to find nothing).
const pauseSource = `package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			if pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
`

// buildImages builds the images critest pulls into reg, under the names critest uses, in
// work (a scratch directory). Not built: test-image-digest (critest pins a digest of the
// image built elsewhere: its spec is in skipped) and the Windows images.
func buildImages(reg *ociregistry.Registry, work string) error {
	base, err := busyboxLayer(work)
	if err != nil {
		return err
	}
	common, err := layerOf(extras)
	if err != nil {
		return err
	}
	nnp, err := noNewPrivsLayer(work)
	if err != nil {
		return err
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	nginx, err := webServer(base, common, env, "nginx", 80)
	if err != nil {
		return err
	}
	httpd, err := webServer(base, common, env, "httpd", 80)
	if err != nil {
		return err
	}
	// The host-network port-forward spec's server listens on 12003 of the host's network.
	hostnetNginx, err := webServer(base, common, env, "nginx", 12003)
	if err != nil {
		return err
	}
	plain := func(extra ...[]byte) ociregistry.Image {
		return ociregistry.Image{Layers: append([][]byte{base, common}, extra...), Config: map[string]any{"Env": env, "Cmd": []string{"sh"}}}
	}
	// Layers with one file each, named as in cri-tools' image-test: images that differ.
	marker := map[string][]byte{}
	for _, name := range []string{"test-image-1", "test-image-2", "test-image-3", "test-image-latest", "same-image", "test", "all"} {
		if marker[name], err = layerOf(map[string]file{name: {mode: 0o644}}); err != nil {
			return err
		}
	}
	withUser := func(user string) ociregistry.Image {
		img := plain()
		img.Config = map[string]any{"Env": env, "Cmd": []string{"sh"}, "User": user}
		return img
	}
	pause, err := pauseImage(work, base, env)
	if err != nil {
		return err
	}
	images := map[string]ociregistry.Image{
		e2eImages + "busybox:1.29-2":                                plain(),
		e2eImages + "nginx:1.14-2":                                  nginx,
		e2eImages + "httpd:2.4.39-4":                                httpd,
		criTestRepo + "hostnet-nginx-" + runtime.GOARCH + ":latest": hostnetNginx,
		e2eImages + "nonewprivs:1.3":                                {Layers: [][]byte{base, common, nnp}, Config: map[string]any{"Env": env, "Cmd": []string{"/usr/local/bin/nnp"}}},
		"registry.k8s.io/pause:3.9":                                 pause,
		"k8s.gcr.io/pause:3.9":                                      pause,
		criTestRepo + "test-image-1:latest":                         plain(marker["test-image-1"]),
		criTestRepo + "test-image-2:latest":                         plain(marker["test-image-2"]),
		criTestRepo + "test-image-3:latest":                         plain(marker["test-image-3"]),
		criTestRepo + "test-image-latest:latest":                    plain(marker["test-image-latest"]),
		criTestRepo + "test-image-tags:1":                           plain(marker["same-image"]),
		criTestRepo + "test-image-tags:2":                           plain(marker["same-image"]),
		criTestRepo + "test-image-tags:3":                           plain(marker["same-image"]),
		criTestRepo + "test-image-tag:test":                         plain(marker["test"]),
		criTestRepo + "test-image-tag:all":                          plain(marker["all"]),
		criTestRepo + "test-image-user-uid:latest":                  withUser("1002"),
		criTestRepo + "test-image-user-username:latest":             withUser("www-data"),
		criTestRepo + "test-image-user-uid-group:latest":            withUser("1003:1004"),
		criTestRepo + "test-image-user-username-group:latest":       withUser("www-data:1004"),
		criTestRepo + "test-image-predefined-group:latest":          withUser("1000"),
	}
	for ref, img := range images {
		if _, err := reg.Add(ref, img); err != nil {
			return err
		}
	}
	return nil
}

// busyboxLayer is the layer every critest image starts from: busybox with its applets
// as hard links, built in work.
func busyboxLayer(work string) ([]byte, error) {
	base, err := busyboximage.Layer(filepath.Join(work, "rootfs"))
	if err != nil {
		return nil, err
	}
	return hardlinkApplets(base)
}

// pauseImage is the pause stand-in: busybox (base) and pauseSource as /pause, its
// entrypoint.
func pauseImage(work string, base []byte, env []string) (ociregistry.Image, error) {
	data, err := buildProgram(work, "pause", pauseSource)
	if err != nil {
		return ociregistry.Image{}, err
	}
	layer, err := layerOf(map[string]file{"pause": {mode: 0o755, data: data}})
	if err != nil {
		return ociregistry.Image{}, err
	}
	return ociregistry.Image{Layers: [][]byte{base, layer}, Config: map[string]any{"Env": env, "Entrypoint": []string{"/pause"}}}, nil
}

// noNewPrivsLayer returns a layer holding noNewPrivsSource setuid root at
// usr/local/bin/nnp.
func noNewPrivsLayer(work string) ([]byte, error) {
	data, err := buildProgram(work, "nnp", noNewPrivsSource)
	if err != nil {
		return nil, err
	}
	return layerOf(map[string]file{
		"usr/local":         {mode: 0o40755},
		"usr/local/bin":     {mode: 0o40755},
		"usr/local/bin/nnp": {mode: 0o4755, data: data},
	})
}

// buildProgram compiles the Go program source (static, with the go toolchain running the
// test) in work/name and returns the binary.
func buildProgram(work, name, source string) ([]byte, error) {
	dir := filepath.Join(work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte(source), 0o644); err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build %s program: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return os.ReadFile(bin)
}
