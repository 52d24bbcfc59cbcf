package shimclient

import (
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/shim"
)

func TestShimEnv(t *testing.T) {
	env := shimEnv([]string{"PATH=/bin", "TTRPC_ADDRESS=/run/containerd/containerd.sock.ttrpc", "NAMESPACE=k8s.io", "VESSEL_SANDBOX_ROOT=/old", "HOME=/root"},
		StartConfig{SandboxRoot: "/r/sandboxes", Log: "/r/containers/c/shim.log"})
	got := strings.Join(env, " ")
	want := "PATH=/bin HOME=/root VESSEL_SANDBOX_ROOT=/r/sandboxes " + shim.LogEnv + "=/r/containers/c/shim.log"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
