package cli

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/nodeinstall"
	"github.com/vessel-containers/vessel/internal/testutil"
)

func put(t *testing.T, path, content string, perm fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
}

// TestInstallCommandFromRoot runs `vessel install --from --root --node-name` and `vessel
// uninstall` on a node's / in a temporary directory, with a kubectl stand-in (no
// Kubernetes API server runs here) that logs its arguments: a dry run changes nothing and
// prints every file and the kubectl command; the install writes the files and labels the
// node; the uninstall takes the label off and leaves the tree byte for byte as before.
func TestInstallCommandFromRoot(t *testing.T) {
	from := t.TempDir()
	for _, name := range append(append([]string{}, nodeinstall.Binaries...), nodeinstall.GuestFiles...) {
		put(t, filepath.Join(from, name), "release "+name, 0o755)
	}
	root := t.TempDir()
	put(t, filepath.Join(root, "etc/containerd/config.toml"), "version = 2\n", 0o644)
	put(t, filepath.Join(root, "usr/local/bin/vessel"), "older vessel", 0o700)
	put(t, filepath.Join(root, "usr/local/bin/other"), "someone else's", 0o755)
	before := testutil.Tree(t, root)

	kdir := t.TempDir()
	kubectl, log := filepath.Join(kdir, "kubectl"), filepath.Join(kdir, "args.log")
	put(t, kubectl, "#!/bin/sh\necho \"$*\" >> "+log+"\n", 0o755)

	run := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		app := testApp(installCommand(), &out)
		app.Commands = append(app.Commands, uninstallCommand())
		if err := app.Run(append([]string{"vessel"}, args...)); err != nil {
			t.Fatalf("vessel %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	common := []string{"--root", root, "--node-name", "node-1", "--kubectl", kubectl}

	dry := run(append([]string{"install", "--from", from, "--dry-run"}, common...)...)
	for _, want := range []string{
		"# would replace " + root + "/usr/local/bin/vessel (mode 0755, 14 bytes, from " + from + "/vessel)",
		"# would write " + root + "/usr/local/bin/containerd-shim-vessel-v2 (mode 0755",
		"# would create directory " + root + "/var/lib/vessel/guest\n",
		"# would write " + root + "/var/lib/vessel/guest/initramfs.img (mode 0755",
		"# would write " + root + "/etc/vessel/configuration.toml (mode 0644",
		"from the built-in defaults)",
		"# would append to " + root + "/etc/containerd/config.toml:",
		"# would run: " + kubectl + " label node node-1 vessel.io/runtime=true --overwrite\n",
	} {
		if !strings.Contains(dry, want) {
			t.Errorf("install --dry-run does not print %q:\n%s", want, dry)
		}
	}
	if got := testutil.Tree(t, root); !reflect.DeepEqual(got, before) {
		t.Fatal("install --dry-run changed the tree")
	}
	if _, err := os.Stat(log); err == nil {
		t.Fatal("install --dry-run ran kubectl")
	}

	out := run(append([]string{"install", "--from", from}, common...)...)
	if !strings.Contains(out, "# ran: "+kubectl+" label node node-1 vessel.io/runtime=true --overwrite") {
		t.Errorf("install output does not report the label:\n%s", out)
	}
	data, err := os.ReadFile(filepath.Join(root, "usr/local/bin/containerd-shim-vessel-v2"))
	if err != nil || string(data) != "release containerd-shim-vessel-v2" {
		t.Errorf("the shim after install: %q, %v", data, err)
	}
	// A second install changes nothing and labels the node again.
	installed := testutil.Tree(t, root)
	out = run(append([]string{"install", "--from", from}, common...)...)
	if !strings.Contains(out, "already installed") {
		t.Errorf("second install:\n%s", out)
	}
	if got := testutil.Tree(t, root); !reflect.DeepEqual(got, installed) {
		t.Error("the second install changed the tree")
	}

	out = run(append([]string{"uninstall"}, common...)...)
	if !strings.Contains(out, "# restored "+root+"/usr/local/bin/vessel") {
		t.Errorf("uninstall output:\n%s", out)
	}
	if got := testutil.Tree(t, root); !reflect.DeepEqual(got, before) {
		t.Errorf("after uninstall the tree is\n%v\nwant\n%v", got, before)
	}
	args, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	want := "label node node-1 vessel.io/runtime=true --overwrite\n" +
		"label node node-1 vessel.io/runtime=true --overwrite\n" +
		"label node node-1 vessel.io/runtime-\n"
	if string(args) != want {
		t.Errorf("kubectl ran with\n%s\nwant\n%s", args, want)
	}
}

// A node name without kubectl fails naming the binary, after the install is in place.
func TestInstallCommandNoKubectl(t *testing.T) {
	root := t.TempDir()
	put(t, filepath.Join(root, "etc/containerd/config.toml"), "version = 3\n", 0o644)
	missing := filepath.Join(t.TempDir(), "kubectl")
	var out bytes.Buffer
	err := testApp(installCommand(), &out).Run([]string{"vessel", "install", "--root", root, "--node-name", "n", "--kubectl", missing})
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("got %v, want an error naming %s\n%s", err, missing, out.String())
	}
}

// Uninstall on a node with no install recorded still takes the label off, and fails
// saying that nothing was installed.
func TestUninstallCommandNothingRecorded(t *testing.T) {
	root := t.TempDir()
	kdir := t.TempDir()
	kubectl, log := filepath.Join(kdir, "kubectl"), filepath.Join(kdir, "args.log")
	put(t, kubectl, "#!/bin/sh\necho \"$*\" >> "+log+"\n", 0o755)
	var out bytes.Buffer
	err := testApp(uninstallCommand(), &out).Run([]string{"vessel", "uninstall", "--root", root, "--node-name", "node-2", "--kubectl", kubectl})
	if err == nil || !strings.Contains(err.Error(), "no vessel install recorded") {
		t.Errorf("got %v, want no install recorded", err)
	}
	args, rerr := os.ReadFile(log)
	if rerr != nil || string(args) != "label node node-2 vessel.io/runtime-\n" {
		t.Errorf("kubectl ran with %q (%v), want the label taken off node-2", args, rerr)
	}
}
