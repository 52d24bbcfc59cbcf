package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/agent/libct/known"
	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/rootless"
	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/store"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// runApp runs vessel with args and returns stdout and the error.
func runApp(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := App()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	app.ExitErrHandler = func(*cli.Context, error) {}
	err := app.RunContext(context.Background(), append([]string{"vessel"}, args...))
	return out.String(), err
}

// parse runs vessel with args but replaces the verb's action: it returns the parsed
// context of the verb.
func parse(t *testing.T, args ...string) *cli.Context {
	t.Helper()
	app := App()
	app.Writer, app.ErrWriter = &bytes.Buffer{}, &bytes.Buffer{}
	var got *cli.Context
	for _, cmd := range app.Commands {
		cmd.Action = func(c *cli.Context) error { got = c; return nil }
	}
	if err := app.RunContext(context.Background(), append([]string{"vessel"}, args...)); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	if got == nil {
		t.Fatalf("parse %v: no verb ran", args)
	}
	return got
}

func TestFlags(t *testing.T) {
	// Command lines as conmon, podman and runc's users write them.
	c := parse(t, "--root", "/r", "--log", "/l", "--log-format", "json", "--debug", "--systemd-cgroup",
		"create", "--bundle", "/b", "--console-socket", "/cs", "--pid-file", "/p", "--no-pivot", "--no-new-keyring", "id1")
	for name, want := range map[string]string{"root": "/r", "log": "/l", "log-format": "json", "bundle": "/b", "console-socket": "/cs", "pid-file": "/p"} {
		if got := c.String(name); got != want {
			t.Errorf("create --%s: got %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"debug", "systemd-cgroup", "no-pivot", "no-new-keyring"} {
		if !c.Bool(name) {
			t.Errorf("create --%s not set", name)
		}
	}
	if c.Args().First() != "id1" {
		t.Errorf("create id: %v", c.Args().Slice())
	}

	// runc takes single-dash long flags too, and -b for --bundle.
	c = parse(t, "-root", "/r2", "create", "-b", "/b2", "-pid-file", "/p2", "id2")
	if c.String("root") != "/r2" || c.String("bundle") != "/b2" || c.String("pid-file") != "/p2" {
		t.Errorf("single-dash flags: root %q bundle %q pid-file %q", c.String("root"), c.String("bundle"), c.String("pid-file"))
	}
	if rl, _ := rootless.Detect(); !rl {
		if root, err := stateRoot(parse(t, "state", "x")); err != nil || root != DefaultRoot {
			t.Errorf("default root: %q %v, want %s", root, err, DefaultRoot)
		}
	}

	c = parse(t, "exec", "--pid-file", "/p", "--process", "/proc.json", "--detach", "--tty", "--console-socket", "/cs",
		"-e", "A=1,2", "-e", "B=3", "--cwd", "/w", "-u", "1000:1000", "-g", "5", "--cap", "CAP_NET_ADMIN", "cid")
	if got := c.StringSlice("env"); strings.Join(got, "|") != "A=1,2|B=3" {
		t.Errorf("exec --env keeps commas: got %q", got)
	}
	if !c.Bool("detach") || !c.Bool("tty") || c.String("process") != "/proc.json" || c.String("user") != "1000:1000" {
		t.Errorf("exec flags: detach %v tty %v process %q user %q", c.Bool("detach"), c.Bool("tty"), c.String("process"), c.String("user"))
	}

	c = parse(t, "run", "-d", "--rm", "--keep", "--bundle", "/b", "id3", "sh", "-c", "echo hi")
	if !c.Bool("detach") || !c.Bool("rm") || !c.Bool("keep") || strings.Join(c.Args().Slice(), " ") != "id3 sh -c echo hi" {
		t.Errorf("run: detach %v rm %v keep %v args %q", c.Bool("detach"), c.Bool("rm"), c.Bool("keep"), c.Args().Slice())
	}
	if c := parse(t, "kill", "--all", "cid", "KILL"); !c.Bool("all") || c.Args().Get(1) != "KILL" {
		t.Errorf("kill: all %v args %v", c.Bool("all"), c.Args().Slice())
	}
	if c := parse(t, "delete", "--force", "cid"); !c.Bool("force") {
		t.Error("delete --force not set")
	}
	if c := parse(t, "delete", "-f", "cid"); !c.Bool("force") {
		t.Error("delete -f not set")
	}
	if c := parse(t, "list", "--format", "json", "-q"); c.String("format") != "json" || !c.Bool("quiet") {
		t.Errorf("list: format %q quiet %v", c.String("format"), c.Bool("quiet"))
	}
	if c := parse(t, "ps", "-f", "json", "cid"); c.String("format") != "json" {
		t.Errorf("ps: format %q", c.String("format"))
	}
	if c := parse(t, "events", "--stats", "--interval", "2s", "cid"); !c.Bool("stats") || c.Duration("interval") != 2*time.Second {
		t.Errorf("events: stats %v interval %v", c.Bool("stats"), c.Duration("interval"))
	}
	if c := parse(t, "update", "-r", "-", "--memory", "64m", "cid"); c.String("resources") != "-" || c.String("memory") != "64m" {
		t.Errorf("update: resources %q memory %q", c.String("resources"), c.String("memory"))
	}
}

func TestHelpAndVersion(t *testing.T) {
	app := App()
	for _, cmd := range app.Commands {
		if len(cmd.Subcommands) > 0 {
			continue // admin verb groups describe their subcommands
		}
		if cmd.Usage == "" || cmd.Description == "" {
			t.Errorf("%s: needs Usage and Description for --help", cmd.Name)
		}
		out, err := runApp(t, cmd.Name, "--help")
		if err != nil || !strings.Contains(out, cmd.Usage) {
			t.Errorf("%s --help: %v\n%s", cmd.Name, err, out)
		}
	}
	out, err := runApp(t, "--version")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"vessel version ", "\nspec: " + specs.Version, "\ngo: go"} {
		if !strings.Contains(out, want) {
			t.Errorf("--version %q lacks %q", out, want)
		}
	}
}

func TestStateJSON(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	ctr := &store.Container{ID: "c1", Bundle: "/b", Rootfs: "/b/rootfs", Created: created, Spec: &specs.Spec{Annotations: map[string]string{"k": "v"}}}
	for _, tc := range []struct {
		status  specs.ContainerState
		pid     int
		wantPid int
	}{
		{specs.StateCreating, 7, 7},
		{specs.StateCreated, 7, 7},
		{specs.StateRunning, 7, 7},
		{"paused", 7, 7},
		{specs.StateStopped, 7, 0},
	} {
		s := ociState(ctr, tc.status, tc.pid)
		cs := containerState{OCIVersion: s.Version, ID: ctr.ID, Pid: s.Pid, Status: string(s.Status), Bundle: ctr.Bundle,
			Rootfs: ctr.Rootfs, Created: ctr.Created, Annotations: s.Annotations, Owner: "root"}
		data, err := json.Marshal(cs)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"ociVersion": specs.Version, "id": "c1", "pid": float64(tc.wantPid), "status": string(tc.status),
			"bundle": "/b", "rootfs": "/b/rootfs", "created": "2026-01-02T03:04:05.000000006Z",
			"annotations": map[string]any{"k": "v"}, "owner": "root",
		}
		if g, w := string(mustMarshal(t, got)), string(mustMarshal(t, want)); g != w {
			t.Errorf("%s: got %s, want %s", tc.status, g, w)
		}
		// What podman decodes: the OCI state.
		var oci specs.State
		if err := json.Unmarshal(data, &oci); err != nil || oci.Status != tc.status || oci.Pid != tc.wantPid {
			t.Errorf("%s: decodes as OCI state %+v, %v", tc.status, oci, err)
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWriteList(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	states := []containerState{
		{OCIVersion: "1.3.0", ID: "alpha", Pid: 42, Status: "running", Bundle: "/b/alpha", Created: created, Owner: "root"},
		{OCIVersion: "1.3.0", ID: "b", Status: "stopped", Bundle: "/b/b", Created: created, Owner: "#1000"},
	}
	var buf bytes.Buffer
	if err := writeList(&buf, states, "table", false); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID          PID         STATUS      BUNDLE      CREATED                OWNER\n" +
		"alpha       42          running     /b/alpha    2026-01-02T03:04:05Z   root\n" +
		"b           0           stopped     /b/b        2026-01-02T03:04:05Z   #1000\n"
	if buf.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", buf.String(), want)
	}
	buf.Reset()
	if err := writeList(&buf, states, "json", false); err != nil {
		t.Fatal(err)
	}
	var got []containerState
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil || len(got) != 2 || got[0].ID != "alpha" || got[0].Pid != 42 {
		t.Errorf("json: %s (%v)", buf.String(), err)
	}
	buf.Reset()
	if err := writeList(&buf, nil, "json", false); err != nil || strings.TrimSpace(buf.String()) != "null" {
		t.Errorf("json of none: %q", buf.String())
	}
	buf.Reset()
	if err := writeList(&buf, states, "table", true); err != nil || buf.String() != "alpha\nb\n" {
		t.Errorf("quiet: %q", buf.String())
	}
}

func TestListEmptyRoot(t *testing.T) {
	root := t.TempDir()
	out, err := runApp(t, "--root", root, "list")
	if err != nil || out != "ID          PID         STATUS      BUNDLE      CREATED     OWNER\n" {
		t.Errorf("list: %q %v", out, err)
	}
	out, err = runApp(t, "--root", root, "list", "--format", "json")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("list json: %q %v", out, err)
	}
	if _, err := runApp(t, "--root", root, "list", "--format", "yaml"); err == nil {
		t.Error("list --format yaml: no error")
	}
	for _, verb := range []string{"state", "kill", "start", "pause", "resume", "ps", "events"} {
		if _, err := runApp(t, "--root", root, verb, "ghost"); err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("%s of a missing container: %v, want \"does not exist\"", verb, err)
		}
	}
	if _, err := runApp(t, "--root", root, "delete", "ghost"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("delete of a missing container: %v", err)
	}
	if _, err := runApp(t, "--root", root, "delete", "--force", "ghost"); err != nil {
		t.Errorf("delete --force of a missing container: %v", err)
	}
}

func TestWritePs(t *testing.T) {
	procs := []shimproto.Process{{Pid: 1}, {Pid: 12}}
	var buf bytes.Buffer
	if err := writePs(&buf, procs); err != nil || buf.String() != "[1,12]\n" {
		t.Errorf("json: %q %v", buf.String(), err)
	}
	buf.Reset()
	if err := writePs(&buf, nil); err != nil || buf.String() != "[]\n" {
		t.Errorf("json of none: %q %v", buf.String(), err)
	}
}

func TestParsePsOptions(t *testing.T) {
	for _, tc := range []struct {
		opts    []string
		want    psColumns
		wantErr string
	}{
		{nil, psFull, ""},
		{[]string{"-ef"}, psFull, ""},
		{[]string{"-e", "-f"}, psFull, ""},
		{[]string{"-e"}, psPlain, ""},
		{[]string{"-A"}, psPlain, ""},
		{[]string{"-e", "-x"}, psBSD, ""},
		{[]string{"x"}, psBSD, ""},
		{[]string{"-efx"}, psBSD, ""},
		{[]string{"-o", "pid"}, 0, `"-o"`},
		{[]string{"--forest"}, 0, `"--forest"`},
		{[]string{"-"}, 0, `"-"`},
	} {
		got, err := parsePsOptions(tc.opts)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: %v, want an error naming %s", tc.opts, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %v %v, want %v", tc.opts, got, err, tc.want)
		}
	}
}

func TestWritePsTable(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.Local)
	procs := []shimproto.Process{
		{Pid: 1, Cmdline: "sleep 1000", Comm: "sleep", UID: 0, TTY: "?", Stat: "Ss",
			CPUTimeMs: 61500, StartUnixMs: now.Add(-2 * time.Minute).UnixMilli()},
		{Pid: 7, PPid: 1, Comm: "kworker", UID: 4242424, TTY: "pts/0", Stat: "R+",
			CPUTimeMs: 90061000, StartUnixMs: time.Date(2026, 3, 1, 8, 0, 0, 0, time.Local).UnixMilli()},
	}
	for _, tc := range []struct {
		cols psColumns
		want string
	}{
		{psFull, "UID        PID  PPID  C STIME TTY          TIME CMD\n" +
			"root         1     0 51 11:58 ?        00:01:01 sleep 1000\n" +
			"4242424      7     1  0 Mar01 pts/0    1-01:01:01 [kworker]\n"},
		{psBSD, "  PID TTY      STAT   TIME COMMAND\n" +
			"    1 ?        Ss     1:01 sleep 1000\n" +
			"    7 pts/0    R+     1501:01 [kworker]\n"},
		{psPlain, "  PID TTY          TIME CMD\n" +
			"    1 ?        00:01:01 sleep\n" +
			"    7 pts/0    1-01:01:01 kworker\n"},
	} {
		var buf bytes.Buffer
		if err := writePsTable(&buf, tc.cols, procs, now); err != nil {
			t.Fatal(err)
		}
		if buf.String() != tc.want {
			t.Errorf("columns %d:\n%s\nwant\n%s", tc.cols, buf.String(), tc.want)
		}
	}
}

func TestSpec(t *testing.T) {
	dir := t.TempDir()
	if _, err := runApp(t, "spec", "--bundle", dir); err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatalf("config.json is not a spec: %v", err)
	}
	if spec.Version != specs.Version || spec.Root.Path != "rootfs" || strings.Join(spec.Process.Args, " ") != "sh" || !spec.Process.Terminal {
		t.Errorf("spec: version %q root %q args %v terminal %v", spec.Version, spec.Root.Path, spec.Process.Args, spec.Process.Terminal)
	}
	if _, err := runApp(t, "spec", "--bundle", dir); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("second spec: %v, want a refusal", err)
	}

	rootless := t.TempDir()
	if _, err := runApp(t, "spec", "--rootless", "-b", rootless); err != nil {
		t.Fatal(err)
	}
	data, err = os.ReadFile(filepath.Join(rootless, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	spec = specs.Spec{}
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	var userNS bool
	for _, ns := range spec.Linux.Namespaces {
		userNS = userNS || ns.Type == specs.UserNamespace
	}
	if !userNS || len(spec.Linux.UIDMappings) != 1 || spec.Linux.UIDMappings[0].HostID != uint32(os.Geteuid()) || len(spec.Linux.GIDMappings) != 1 {
		t.Errorf("rootless: userns %v uid maps %v gid maps %v", userNS, spec.Linux.UIDMappings, spec.Linux.GIDMappings)
	}
	if spec.Linux.Resources != nil {
		t.Errorf("rootless keeps resources %+v", spec.Linux.Resources)
	}
	for _, m := range spec.Mounts {
		for _, o := range m.Options {
			if strings.HasPrefix(o, "gid=") || strings.HasPrefix(o, "uid=") {
				t.Errorf("rootless mount %s keeps %s", m.Destination, o)
			}
		}
	}
}

// TestFeatures runs `vessel features` with a shim built from this tree: it prints what the
// shim binary reports, which reflects the build.
func TestFeatures(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the shim binary")
	}
	t.Setenv("PATH", testutil.BuildShim(t, shimproto.Options{})+":"+os.Getenv("PATH"))
	out, err := runApp(t, "features")
	if err != nil {
		t.Fatal(err)
	}
	var f features.Features
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatalf("features is not JSON: %v\n%s", err, out)
	}
	if f.OCIVersionMax != specs.Version || f.OCIVersionMin != "1.0.0" {
		t.Errorf("versions %q-%q", f.OCIVersionMin, f.OCIVersionMax)
	}
	if strings.Join(f.Hooks, ",") != "prestart,createRuntime,createContainer,startContainer,poststart,poststop" {
		t.Errorf("hooks %v", f.Hooks)
	}
	if f.Linux == nil || f.Linux.Cgroup == nil || !*f.Linux.Cgroup.V2 || *f.Linux.Cgroup.V1 || len(f.Linux.Capabilities) < 40 {
		t.Errorf("linux features %+v", f.Linux)
	}
	if !slices.Equal(f.MountOptions, known.MountOptions()) || !slices.Equal(f.Linux.Namespaces, known.Namespaces()) {
		t.Errorf("mount options %q and namespaces %q: want the guest libcontainer's %q and %q",
			f.MountOptions, f.Linux.Namespaces, known.MountOptions(), known.Namespaces())
	}
	// The shim binary's drivers (cmd/containerd-shim-vessel-v2/builtins_linux.go).
	if f.Annotations["io.vessel.isolation"] != "vm" || f.Annotations["io.vessel.hypervisors"] != "qemu" {
		t.Errorf("annotations %v", f.Annotations)
	}
	if want := config.PrefixVessel + "hypervisor.default_vcpus"; !slices.Contains(f.PotentiallyUnsafeConfigAnnotations, want) {
		t.Errorf("configuration annotations %q lack %s", f.PotentiallyUnsafeConfigAnnotations, want)
	}
}

func TestExecProcess(t *testing.T) {
	base := &specs.Process{
		Args: []string{"sleep", "1000"}, Env: []string{"PATH=/bin"}, Cwd: "/", Terminal: true,
		User:         specs.User{UID: 0, GID: 0},
		Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}},
	}
	c := parse(t, "exec", "-e", "A=1", "--cwd", "/tmp", "-u", "1000", "-g", "10", "-g", "11", "--cap", "net_admin", "--no-new-privs", "cid", "sh", "-c", "id")
	p, err := execProcess(c, base)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.Args, " ") != "sh -c id" || p.Cwd != "/tmp" || p.Terminal || !p.NoNewPrivileges {
		t.Errorf("process %+v", p)
	}
	if strings.Join(p.Env, " ") != "PATH=/bin A=1" {
		t.Errorf("env %v", p.Env)
	}
	if p.User.UID != 1000 || p.User.GID != 0 || len(p.User.AdditionalGids) != 2 {
		t.Errorf("user %+v", p.User)
	}
	if strings.Join(p.Capabilities.Bounding, " ") != "CAP_KILL CAP_NET_ADMIN" || len(p.Capabilities.Effective) != 1 {
		t.Errorf("caps %+v", p.Capabilities)
	}
	if base.Cwd != "/" || len(base.Env) != 1 {
		t.Errorf("the container's process changed: %+v", base)
	}

	path := filepath.Join(t.TempDir(), "process.json")
	if err := os.WriteFile(path, []byte(`{"args":["true"],"cwd":"/","terminal":true,"user":{"uid":5,"gid":6}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err = execProcess(parse(t, "exec", "-p", path, "cid"), base)
	if err != nil || strings.Join(p.Args, " ") != "true" || !p.Terminal || p.User.UID != 5 {
		t.Errorf("--process: %+v %v", p, err)
	}
	if _, err := execProcess(parse(t, "exec", "cid"), base); err == nil {
		t.Error("exec without args: no error")
	}
	if _, err := execProcess(parse(t, "exec", "-u", "root", "cid", "true"), base); err == nil {
		t.Error("exec -u root: no error (runc wants numbers)")
	}
}

func TestResources(t *testing.T) {
	c := parse(t, "update", "--memory", "64m", "--memory-swap", "-1", "--cpu-quota", "50000", "--cpu-period", "100000",
		"--cpuset-cpus", "0", "--pids-limit", "100", "--blkio-weight", "300", "cid")
	res, err := resourcesOf(c)
	if err != nil {
		t.Fatal(err)
	}
	if *res.Memory.Limit != 64<<20 || *res.Memory.Swap != -1 || res.Memory.Reservation != nil {
		t.Errorf("memory %+v", res.Memory)
	}
	if *res.CPU.Quota != 50000 || *res.CPU.Period != 100000 || res.CPU.Cpus != "0" || res.CPU.Shares != nil {
		t.Errorf("cpu %+v", res.CPU)
	}
	if *res.Pids.Limit != 100 || *res.BlockIO.Weight != 300 {
		t.Errorf("pids %+v blkio %+v", res.Pids, res.BlockIO)
	}
	res, err = resourcesOf(parse(t, "update", "--memory", "1g", "cid"))
	if err != nil || res.CPU != nil || res.Pids != nil || *res.Memory.Limit != 1<<30 {
		t.Errorf("only memory: %+v %v", res, err)
	}
	if _, err := resourcesOf(parse(t, "update", "--memory", "lots", "cid")); err == nil {
		t.Error("--memory lots: no error")
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := os.WriteFile(path, []byte(`{"memory":{"limit":1048576},"pids":{"limit":5}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err = resourcesOf(parse(t, "update", "-r", path, "cid"))
	if err != nil || *res.Memory.Limit != 1<<20 || *res.Pids.Limit != 5 {
		t.Errorf("--resources: %+v %v", res, err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"100": 100, "1k": 1024, "1KB": 1024, "1.5m": 3 << 19, "2g": 2 << 30, "1t": 1 << 40, "-1": -1, "7b": 7} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%q: got %d %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-2", "1q", "k"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("%q: got %d, want an error", in, got)
		}
	}
}

func TestCheckCgroupsPath(t *testing.T) {
	spec := func(p string) *specs.Spec { return &specs.Spec{Linux: &specs.Linux{CgroupsPath: p}} }
	for _, tc := range []struct {
		path    string
		systemd bool
		ok      bool
	}{
		{"", false, true},
		{"", true, true},
		{"/libpod_parent/libpod-abc", false, true},
		{"machine.slice:libpod:abc", true, true},
		{"/libpod_parent/libpod-abc", true, false},
		{"machine.slice:libpod:abc", false, false},
	} {
		if err := checkCgroupsPath(spec(tc.path), tc.systemd, true); (err == nil) != tc.ok {
			t.Errorf("%q systemd=%v: %v", tc.path, tc.systemd, err)
		}
	}
	// As runc: the systemd driver on a host without systemd is refused.
	if err := checkCgroupsPath(spec("machine.slice:libpod:abc"), true, false); err == nil || !strings.Contains(err.Error(), "systemd not running") {
		t.Errorf("--systemd-cgroup without systemd: %v", err)
	}
}

// TestCheckpointRefused: checkpoint and restore, with runc's flags, fail naming why.
func TestCheckpointRefused(t *testing.T) {
	for _, args := range [][]string{
		{"checkpoint", "--image-path", "/tmp/img", "--leave-running", "c1"},
		{"restore", "--image-path", "/tmp/img", "--bundle", "/b", "c1"},
	} {
		_, err := runApp(t, args...)
		if err == nil || !strings.Contains(err.Error(), args[0]+": checkpoint and restore are not supported") {
			t.Errorf("%v: got %v, want a refusal that says so", args, err)
		}
	}
}

func TestCheckCgroupNotFrozen(t *testing.T) {
	spec := &specs.Spec{Linux: &specs.Linux{CgroupsPath: "/pods/c1"}}
	write := func(t *testing.T, root, rel, content string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, file, content string
		frozen              bool
	}{
		{"v1 frozen", "freezer/pods/c1/freezer.state", "FROZEN\n", true},
		{"v1 freezing", "freezer/pods/c1/freezer.state", "FREEZING\n", true},
		{"v1 thawed", "freezer/pods/c1/freezer.state", "THAWED\n", false},
		{"v2 frozen", "pods/c1/cgroup.events", "populated 0\nfrozen 1\n", true},
		{"v2 thawed", "pods/c1/cgroup.events", "populated 0\nfrozen 0\n", false},
		{"no such cgroup yet", "other/x", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root, tc.file, tc.content)
			err := checkCgroupNotFrozen(spec, false, root)
			if got := err != nil; got != tc.frozen {
				t.Fatalf("checkCgroupNotFrozen = %v, want frozen %v", err, tc.frozen)
			}
			if err != nil && !strings.Contains(err.Error(), "container's cgroup unexpectedly frozen") {
				t.Errorf("error %q lacks runc's wording", err)
			}
		})
	}
	// The systemd driver names a unit, not a path: not checked here.
	root := t.TempDir()
	write(t, root, "freezer/pods/c1/freezer.state", "FROZEN\n")
	if err := checkCgroupNotFrozen(spec, true, root); err != nil {
		t.Errorf("systemd driver: %v", err)
	}
}
