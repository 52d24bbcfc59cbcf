package shimproto

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// parse parses args as the shim binary does: containerd's flags, then the shim's own.
func parse(t *testing.T, args []string) (Invocation, string) {
	t.Helper()
	fs := flag.NewFlagSet(BinaryName, flag.ContinueOnError)
	var inv Invocation
	fs.StringVar(&inv.Namespace, FlagNamespace, "", "")
	fs.StringVar(&inv.ID, FlagID, "", "")
	fs.StringVar(&inv.Address, FlagAddress, "", "")
	fs.StringVar(&inv.Bundle, FlagBundle, "", "")
	fs.BoolVar(&inv.Debug, FlagDebug, false, "")
	Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	inv.Options = Lookup(fs)
	return inv, fs.Arg(0)
}

func TestInvocationArgsRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inv    Invocation
		action string
	}{
		{"cli start", Invocation{Namespace: "vessel", ID: "c1", Bundle: "/b/c 1", Debug: true, Options: Options{
			SandboxRoot: "/r/sandboxes", LogFile: "/r/containers/c1/shim.log", SocketDir: "/r/s", CallerRunsHooks: true,
		}}, ActionStart},
		{"cli delete", Invocation{Namespace: "vessel", ID: "c1", Options: Options{SandboxRoot: "/r/sandboxes", SocketDir: "/r/s"}}, ActionDelete},
		{"containerd start", Invocation{Namespace: "k8s.io", ID: "c1", Address: "/run/containerd/containerd.sock"}, ActionStart},
		{"shim process", Invocation{Namespace: "k8s.io", ID: "c1", Address: "/a", Options: Options{LogFile: "/l"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, action := parse(t, tc.inv.Args(tc.action))
			if got != tc.inv {
				t.Errorf("parsed: got %+v, want %+v", got, tc.inv)
			}
			if action != tc.action {
				t.Errorf("action: got %q, want %q", action, tc.action)
			}
		})
	}
}

func TestEmptyOptionsPassNoFlags(t *testing.T) {
	args := Invocation{Namespace: "k8s.io", ID: "c1", Address: "/a"}.Args(ActionStart)
	for _, f := range []string{FlagSandboxRoot, FlagLogFile, FlagSocketDir, FlagBundle, FlagDebug} {
		if slices.Contains(args, "-"+f) {
			t.Errorf("args %q: -%s passed without a value", args, f)
		}
	}
	if got := Lookup(flag.NewFlagSet("none", flag.ContinueOnError)); got != (Options{}) {
		t.Errorf("lookup in a flag set without the shim's flags: got %+v, want none", got)
	}
}

func TestWriteWrapper(t *testing.T) {
	dir := t.TempDir()
	// The "shim" prints its arguments, one a line.
	bin := filepath.Join(dir, "it's the shim")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nprintf '%s\\n' \"$@\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	wrapDir := filepath.Join(dir, "wrap")
	if err := os.Mkdir(wrapDir, 0o700); err != nil {
		t.Fatal(err)
	}
	o := Options{SandboxRoot: "/tmp/a b/'sb'"}
	if err := WriteWrapper(wrapDir, bin, o); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(wrapDir, BinaryName), "-id", "c 1", "start").Output()
	if err != nil {
		t.Fatalf("run wrapper: %v", err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	want := append(o.Args(), "-id", "c 1", "start")
	if !slices.Equal(got, want) {
		t.Errorf("arguments the shim got: got %q, want %q", got, want)
	}
	if err := WriteWrapper(wrapDir, "relative", o); err == nil {
		t.Error("a relative binary path is accepted")
	}
}

// TestContractImports fails when the CLI reaches past the contract: it starts, drives and
// cleans up behind shims through the shim binary, never the shim's or the sandbox's code.
func TestContractImports(t *testing.T) {
	const module = "github.com/vessel-containers/vessel/internal/"
	for dir, banned := range map[string][]string{
		"../cli":        {module + "sandbox", module + "shim"},
		"../shimclient": {module + "sandbox", module + "shim"},
	} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("go files in %s: %v", dir, err)
		}
		for _, f := range files {
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range file.Imports {
				if p := strings.Trim(imp.Path.Value, `"`); slices.Contains(banned, p) {
					t.Errorf("%s imports %s", f, p)
				}
			}
		}
	}
}

// TestNoEnvironmentSideChannel fails when the code on either side of the contract reads an
// environment variable: the CLI and the shim meet through flags only.
func TestNoEnvironmentSideChannel(t *testing.T) {
	files := []string{"../shim/manager.go", "../shim/plugin.go", "../../cmd/containerd-shim-vessel-v2/main.go"}
	for _, dir := range []string{".", "../shimclient"} {
		m, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			if !strings.HasSuffix(f, "_test.go") {
				files = append(files, f)
			}
		}
	}
	for _, f := range files {
		file, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && (x.Name == "os" || x.Name == "syscall") &&
				(sel.Sel.Name == "Getenv" || sel.Sel.Name == "LookupEnv") {
				t.Errorf("%s reads the environment (%s.%s): pass a flag instead", f, x.Name, sel.Sel.Name)
			}
			return true
		})
	}
}
