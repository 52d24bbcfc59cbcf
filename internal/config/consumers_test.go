package config

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// TestConsumers keeps the key table honest: every key names the function that applies it
// or says why it is not supported, and every named function exists in the source under
// internal/ and reads the key's Config field (a selector such as `.MachineAccelerators`).
// All offending keys are reported together.
func TestConsumers(t *testing.T) {
	root := repoRoot(t)
	src := parseInternal(t, filepath.Join(root, "internal"))
	var problems []string
	for _, k := range Keys() {
		if err := checkConsumer(src, k); err != nil {
			problems = append(problems, fmt.Sprintf("  %s: %v", k.FullName(), err))
		}
	}
	if len(problems) > 0 {
		t.Fatalf("%d keys have no consumer that reads them and no Unsupported mark (set Key.Consumer to the "+
			"function reading the key's field, or Key.Unsupported to the reason):\n%s", len(problems), strings.Join(problems, "\n"))
	}
}

// TestConsumerCheckFails shows that the check refuses a key without a consumer, a consumer
// that does not exist, and one that does not read the field.
func TestConsumerCheckFails(t *testing.T) {
	src := parseInternal(t, filepath.Join(repoRoot(t), "internal"))
	k, _ := lookupKey("hypervisor", "machine_accelerators")
	for _, tc := range []struct {
		name     string
		consumer string
		want     string
	}{
		{"none", "", "neither a Consumer nor an Unsupported reason"},
		{"no package", "nosuchpkg.HypervisorConfig", "no package nosuchpkg"},
		{"no function", "oci.NoSuchFunc", "no function NoSuchFunc"},
		{"no method", "config.Config.NoSuchMethod", "no method Config.NoSuchMethod"},
		{"malformed", "HypervisorConfig", "not pkg.Func or pkg.Type.Method"},
		{"does not read the field", "config.Config.Limits", "does not read .MachineAccelerators"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := k
			k.Consumer = tc.consumer
			err := checkConsumer(src, k)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	k.Unsupported = "reason"
	if err := checkConsumer(src, k); err == nil || !strings.Contains(err.Error(), "both") {
		t.Fatalf("consumer and unsupported: got %v", err)
	}
}

// checkConsumer verifies k's Consumer or Unsupported mark against the parsed source.
func checkConsumer(src map[string]*goPackage, k Key) error {
	switch {
	case k.Consumer == "" && k.Unsupported == "":
		return errors.New("has neither a Consumer nor an Unsupported reason")
	case k.Consumer != "" && k.Unsupported != "":
		return errors.New("has both a Consumer and an Unsupported reason")
	case k.Consumer == "":
		return nil
	}
	parts := strings.Split(k.Consumer, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return fmt.Errorf("consumer %q is not pkg.Func or pkg.Type.Method", k.Consumer)
	}
	pkg, ok := src[parts[0]]
	switch {
	case !ok:
		return fmt.Errorf("consumer %s: no package %s under internal/", k.Consumer, parts[0])
	case len(pkg.dirs) > 1:
		return fmt.Errorf("consumer %s: package name %s is ambiguous (%s)", k.Consumer, parts[0], strings.Join(pkg.dirs, ", "))
	}
	recv, name := "", parts[1]
	if len(parts) == 3 {
		recv, name = parts[1], parts[2]
	}
	fn := pkg.find(recv, name)
	if fn == nil {
		if recv != "" {
			return fmt.Errorf("consumer %s: no method %s.%s in %s", k.Consumer, recv, name, pkg.dirs[0])
		}
		return fmt.Errorf("consumer %s: no function %s in %s", k.Consumer, name, pkg.dirs[0])
	}
	fields := []string{goFieldName(k)}
	if isGlobList(k) && k.Consumer == "config.Config.matchGlobs" {
		fields = append(fields, "Globs") // reads the list through the key naming it
	}
	for _, f := range fields {
		if readsField(fn, f) {
			return nil
		}
	}
	return fmt.Errorf("consumer %s does not read .%s", k.Consumer, strings.Join(fields, " or ."))
}

// goPackage is the parsed non-test source of a package name under internal/.
type goPackage struct {
	dirs  []string
	funcs []*ast.FuncDecl
}

// find returns the function (recv == "") or method named, or nil.
func (p *goPackage) find(recv, name string) *ast.FuncDecl {
	for _, fn := range p.funcs {
		if fn.Name.Name == name && receiverName(fn) == recv {
			return fn
		}
	}
	return nil
}

func receiverName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return ""
	}
	t := fn.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	if g, ok := t.(*ast.IndexExpr); ok { // generic receiver
		t = g.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// readsField reports whether fn's body has a selector naming field.
func readsField(fn *ast.FuncDecl, field string) bool {
	found := false
	ast.Inspect(fn, func(n ast.Node) bool {
		if s, ok := n.(*ast.SelectorExpr); ok && s.Sel.Name == field {
			found = true
		}
		return !found
	})
	return found
}

// goFieldName is the Go name of k's Config field.
func goFieldName(k Key) string {
	ct := reflect.TypeOf(Config{})
	for i := 0; i < ct.NumField(); i++ {
		sec := ct.Field(i)
		if sec.Tag.Get("toml") != k.Section {
			continue
		}
		for j := 0; j < sec.Type.NumField(); j++ {
			if f := sec.Type.Field(j); f.Tag.Get("toml") == k.Name {
				return f.Name
			}
		}
	}
	return ""
}

// isGlobList reports whether another key names k as its Globs.
func isGlobList(k Key) bool {
	return slices.ContainsFunc(keyTable, func(o Key) bool { return o.Section == k.Section && o.Globs == k.Name })
}

// repoRoot is the directory holding go.mod, found upwards from the test's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// parseInternal parses every non-test Go file under dir, by package name.
func parseInternal(t *testing.T, dir string) map[string]*goPackage {
	t.Helper()
	fset := token.NewFileSet()
	pkgs := map[string]*goPackage{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		p := pkgs[f.Name.Name]
		if p == nil {
			p = &goPackage{}
			pkgs[f.Name.Name] = p
		}
		if rel, _ := filepath.Rel(filepath.Dir(dir), filepath.Dir(path)); !slices.Contains(p.dirs, rel) {
			p.dirs = append(p.dirs, rel)
			sort.Strings(p.dirs)
		}
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok {
				p.funcs = append(p.funcs, fn)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("parse %s: %v", dir, err)
	}
	return pkgs
}
