package suite

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// RuntimeToolsModule is the Go module of the OCI runtime-tools validation suite.
const RuntimeToolsModule = "github.com/opencontainers/runtime-tools"

// RuntimeTools is the runtime-tools validation suite at one module version, built in Dir:
// the module's source copied to Dir/src (the programs read rootfs-amd64.tar.gz and the
// runtimetest binary from their working directory, src) and one binary per validation
// program in Dir/bin.
type RuntimeTools struct {
	Version string
	Dir     string
}

func (rt RuntimeTools) src() string { return filepath.Join(rt.Dir, "src") }
func (rt RuntimeTools) bin() string { return filepath.Join(rt.Dir, "bin") }

// builtMarker records, in Dir, the version whose build completed.
const builtMarker = "built-version"

// Prepare downloads the module through the Go module proxy, builds runtimetest (static:
// it runs inside the containers) and every validation program, and returns the programs'
// names, sorted. A build of the same version already in Dir is reused.
func (rt RuntimeTools) Prepare(ctx context.Context) ([]string, error) {
	if b, err := os.ReadFile(filepath.Join(rt.Dir, builtMarker)); err == nil && string(b) == rt.Version {
		return rt.programs()
	}
	if err := os.RemoveAll(rt.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(rt.bin(), 0o755); err != nil {
		return nil, err
	}
	modDir, err := downloadModule(ctx, RuntimeToolsModule+"@"+rt.Version)
	if err != nil {
		return nil, err
	}
	// The module cache is read-only and a build with -mod=mod may add to go.sum: build a copy.
	if err := os.CopyFS(rt.src(), os.DirFS(modDir)); err != nil {
		return nil, fmt.Errorf("copy %s: %w", modDir, err)
	}
	if err := goBuild(ctx, rt.src(), []string{"CGO_ENABLED=0"},
		"-tags", "netgo osusergo", "-o", filepath.Join(rt.src(), "runtimetest"), "./cmd/runtimetest"); err != nil {
		return nil, err
	}
	if err := goBuild(ctx, rt.src(), nil, "-o", rt.bin()+"/", "./validation/..."); err != nil {
		return nil, err
	}
	progs, err := rt.programs()
	if err != nil {
		return nil, err
	}
	if len(progs) == 0 {
		return nil, fmt.Errorf("%s@%s built no validation program", RuntimeToolsModule, rt.Version)
	}
	return progs, os.WriteFile(filepath.Join(rt.Dir, builtMarker), []byte(rt.Version), 0o644)
}

func (rt RuntimeTools) programs() ([]string, error) {
	ents, err := os.ReadDir(rt.bin())
	if err != nil {
		return nil, err
	}
	var progs []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			progs = append(progs, e.Name())
		}
	}
	slices.Sort(progs)
	return progs, nil
}

// Runtime is an OCI runtime as the programs call it: one executable (a wrapper that
// adds the runtime's global options) that takes runc's verbs.
type Runtime struct {
	Name    string
	Command string
}

// Run runs program against r with a time limit, parses its TAP output, and afterwards
// lists the runtime's containers: any still there is recorded as leaked and force-deleted,
// so the next program starts clean.
func (rt RuntimeTools) Run(ctx context.Context, program string, r Runtime, limit time.Duration) Run {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(rt.bin(), program))
	cmd.Dir = rt.src()
	cmd.Env = append(os.Environ(), "RUNTIME="+r.Command)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// The program and every runtime process it starts form one process group, killed
	// together at the time limit.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	runErr := cmd.Run()

	var res Run
	res.TAP, _ = ParseTAP(&stdout)
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		res.ExitCode, res.Err = -1, fmt.Sprintf("timed out after %s", limit)
	case errors.As(runErr, &exitErr):
		res.ExitCode = exitErr.ExitCode()
		if res.TAP.Plan < 0 {
			res.Err = "no TAP plan: " + lastLine(stderr.String())
		}
	case runErr != nil:
		res.ExitCode, res.Err = -1, runErr.Error()
	}
	res.Leaked = cleanLeftovers(context.WithoutCancel(ctx), r)
	return res
}

// cleanLeftovers lists r's containers and force-deletes each; it returns one description
// of each, or a note that the list failed.
func cleanLeftovers(ctx context.Context, r Runtime) []string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.Command, "list", "-q").Output()
	if err != nil {
		return []string{fmt.Sprintf("(%s list failed: %v)", r.Name, err)}
	}
	var leaked []string
	for _, id := range strings.Fields(string(out)) {
		// Best effort: the id is reported as leaked whether or not this succeeds, and the
		// next list shows it again if it stays.
		_ = exec.CommandContext(ctx, r.Command, "delete", "--force", id).Run()
		leaked = append(leaked, "container "+id)
	}
	return leaked
}

// downloadModule fetches mod (path@version) into the module cache and returns its directory.
func downloadModule(ctx context.Context, mod string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", mod)
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	out, runErr := cmd.Output()
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("go mod download %s: %w, output %q", mod, errors.Join(runErr, err), lastLine(string(out)))
	}
	if info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: no module directory: %w", mod, errors.Join(errors.New(info.Error), runErr))
	}
	return info.Dir, nil
}

// goBuild runs `go build -mod=mod args...` in dir, its own module.
func goBuild(ctx context.Context, dir string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-mod=mod"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GOFLAGS=", "GOWORK=off"), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s in %s: %w\n%s", strings.Join(args, " "), dir, err, out)
	}
	return nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
