package cli

import (
	"flag"
	"testing"

	"github.com/vessel-containers/vessel/internal/shimclient"
	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/store"
)

// TestShimConfig parses the command lines the CLI runs the shim binary with as the shim
// does: everything the shim keeps lands under --root, and start and delete get the same
// flags.
func TestShimConfig(t *testing.T) {
	r := &ociRuntime{root: "/r", store: store.New("/r"), debug: true}
	c := &store.Container{ID: "c1", SandboxID: "c1", Bundle: "/bundles/c1"}
	cfg := r.shimConfig("/bin/shim", c)
	if cfg.Dir != "/r/containers/c1" {
		t.Errorf("working directory: got %q, want the container's state directory", cfg.Dir)
	}
	want := shimproto.Options{SandboxRoot: "/r/sandboxes", LogFile: "/r/containers/c1/shim.log", SocketDir: "/r/s", DirectVolumeRoot: "/r/direct-volumes", CallerRunsHooks: true}
	for _, action := range []string{shimproto.ActionStart, shimproto.ActionDelete} {
		fs := flag.NewFlagSet(shimproto.BinaryName, flag.ContinueOnError)
		ns := fs.String(shimproto.FlagNamespace, "", "")
		id := fs.String(shimproto.FlagID, "", "")
		bundle := fs.String(shimproto.FlagBundle, "", "")
		address := fs.String(shimproto.FlagAddress, "", "")
		debug := fs.Bool(shimproto.FlagDebug, false, "")
		shimproto.Register(fs)
		if err := fs.Parse(cfg.Args(action)); err != nil {
			t.Fatalf("%s: parse %q: %v", action, cfg.Args(action), err)
		}
		if got := shimproto.Lookup(fs); got != want {
			t.Errorf("%s: shim options: got %+v, want %+v", action, got, want)
		}
		if *ns != shimclient.Namespace || *id != "c1" || *bundle != "/bundles/c1" || *address != "" || !*debug || fs.Arg(0) != action {
			t.Errorf("%s: got -namespace %q -id %q -bundle %q -address %q -debug %v %q", action, *ns, *id, *bundle, *address, *debug, fs.Args())
		}
	}
}
