package nodeinstall

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeKubectl writes a kubectl stand-in that appends its arguments to a log, prints
// stderr and exits with code. No Kubernetes API server runs where these tests do.
func fakeKubectl(t *testing.T, stderr string, code int) (bin, log string) {
	t.Helper()
	dir := t.TempDir()
	bin, log = filepath.Join(dir, "kubectl"), filepath.Join(dir, "args.log")
	script := "#!/bin/sh\necho \"$*\" >> " + log + "\nprintf '%s' '" + stderr + "' >&2\nexit " + strconv.Itoa(code) + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, log
}

func TestKubectl(t *testing.T) {
	t.Run("label and unlabel", func(t *testing.T) {
		bin, log := fakeKubectl(t, "", 0)
		if err := Kubectl(context.Background(), bin, LabelArgs("node-1")); err != nil {
			t.Fatal(err)
		}
		if err := Kubectl(context.Background(), bin, UnlabelArgs("node-1")); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		want := "label node node-1 vessel.io/runtime=true --overwrite\nlabel node node-1 vessel.io/runtime-\n"
		if string(got) != want {
			t.Errorf("kubectl ran with\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("kubectl fails", func(t *testing.T) {
		bin, _ := fakeKubectl(t, `Error from server (NotFound): nodes "node-1" not found`, 1)
		err := Kubectl(context.Background(), bin, LabelArgs("node-1"))
		if err == nil || !strings.Contains(err.Error(), `nodes "node-1" not found`) || !strings.Contains(err.Error(), "label node node-1") {
			t.Errorf("got %v, want the command and kubectl's message", err)
		}
	})
	t.Run("no kubectl", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "kubectl")
		err := Kubectl(context.Background(), missing, LabelArgs("node-1"))
		if err == nil || !strings.Contains(err.Error(), "needs kubectl") || !strings.Contains(err.Error(), missing) {
			t.Errorf("got %v, want an error naming %s", err, missing)
		}
	})
}
