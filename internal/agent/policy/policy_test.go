package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`deny = ["NoSuchRequest"]`, `"NoSuchRequest" is not an agent request`},
		{`denny = ["ExecProcess"]`, "unknown keys denny"},
		{"[exec]\nallowed = [[\"sh\"]]", "unknown keys exec.allowed"},
		{"[exec]\nallowed_commands = [[]]", "exec.allowed_commands[0] is empty"},
		{"[copy_file]\nallowed_paths = [\"run/x\"]", `"run/x" is not a clean absolute path`},
		{"[copy_file]\nallowed_paths = [\"/run/../etc\"]", "not a clean absolute path"},
		{`deny = "ExecProcess"`, "agent policy"},
	} {
		_, err := Parse([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errdefs.IsInvalidArgument(err) {
			t.Errorf("Parse(%q) = %v, want an invalid-argument error containing %q", tc.doc, err, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	p, err := Parse([]byte(`
deny = ["SetPolicy", "PauseContainer", "PortForwardCloseWrite"]
[exec]
allowed_commands = [["cat", "/etc/hostname"]]
[copy_file]
allowed_paths = ["/run/vessel/shared/cm"]
[port_forward]
allowed_ports = [8080]
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Digest()) != 64 {
		t.Fatalf("digest %q", p.Digest())
	}
	exec := func(args ...string) *agentv1.ExecProcessRequest {
		return &agentv1.ExecProcessRequest{Process: &agentv1.Process{Args: args}}
	}
	copyTo := func(path string) *agentv1.CopyFileRequest { return &agentv1.CopyFileRequest{Path: path} }
	for _, tc := range []struct {
		method string
		req    any
		allow  bool
	}{
		{"SetPolicy", &agentv1.SetPolicyRequest{}, false},
		{"PauseContainer", nil, false},
		{"StartContainer", &agentv1.StartContainerRequest{}, true},
		{"ExecProcess", exec("cat", "/etc/hostname"), true},
		{"ExecProcess", exec("cat", "/etc/shadow"), false},
		{"ExecProcess", exec("cat"), false},
		// The full OCI process takes precedence over the plain arguments.
		{"ExecProcess", &agentv1.ExecProcessRequest{Process: &agentv1.Process{Args: []string{"cat", "/etc/hostname"}, OciProcess: []byte(`{"args":["sh"]}`)}}, false},
		{"ExecProcess", &agentv1.ExecProcessRequest{Process: &agentv1.Process{OciProcess: []byte(`{"args":["cat","/etc/hostname"]}`)}}, true},
		{"CopyFile", copyTo("/run/vessel/shared/cm"), true},
		{"CopyFile", copyTo("/run/vessel/shared/cm/a/b"), true},
		{"CopyFile", copyTo("/run/vessel/shared/cm/../../../etc/passwd"), false},
		{"CopyFile", copyTo("/run/vessel/shared/cmx"), false},
		{"CopyFile", copyTo("run/vessel/shared/cm/a"), false},
		{"RemovePath", &agentv1.RemovePathRequest{Path: "/run/vessel/shared/cm/a"}, true},
		{"RemovePath", &agentv1.RemovePathRequest{Path: "/run/vessel/shared/cm/../x"}, false},
		{"PortForwardOpen", &agentv1.PortForwardOpenRequest{Id: "a", Port: 8080}, true},
		{"PortForwardOpen", &agentv1.PortForwardOpenRequest{Id: "a", Port: 22}, false},
		{"PortForwardOpen", &agentv1.PortForwardOpenRequest{Id: "a", Port: 8080 + 65536}, false},
		{"PortForwardRead", &agentv1.PortForwardReadRequest{Id: "a"}, true},
		{"PortForwardCloseWrite", &agentv1.PortForwardRequest{Id: "a"}, false},
	} {
		err := p.Check(tc.method, tc.req)
		if tc.allow && err != nil {
			t.Errorf("%s %v: denied: %v", tc.method, tc.req, err)
		}
		if !tc.allow && (err == nil || !errdefs.IsPermissionDenied(err)) {
			t.Errorf("%s %v: got %v, want permission denied", tc.method, tc.req, err)
		}
	}
}

func TestNoPolicyAllowsAll(t *testing.T) {
	var g *Gate
	if g.Policy() != nil || g.Policy().Digest() != "" || g.Policy().Denied("ExecProcess") {
		t.Fatal("a nil gate has a policy")
	}
	if err := g.Policy().Check("ExecProcess", &agentv1.ExecProcessRequest{}); err != nil {
		t.Fatal(err)
	}
	p, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check("CopyFile", &agentv1.CopyFileRequest{Path: "/etc/passwd"}); err != nil {
		t.Fatalf("an empty policy denies: %v", err)
	}
}

// The shipped example policies parse.
func TestExamplesParse(t *testing.T) {
	for _, name := range []string{"allow-all.toml", "strict.toml"} {
		data, err := os.ReadFile(filepath.Join("examples", name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(data); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Every request the agent serves can be named, among them those of the services that
// resize the VM and relay the setup log.
func TestMethodsCoverEveryService(t *testing.T) {
	names := Methods()
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			t.Errorf("request name %s appears twice: a policy could not tell them apart", n)
		}
		seen[n] = true
	}
	for _, want := range []string{"CreateContainer", "CopyFile", "DebugStart", "PortForwardOpen", "OfflineCPUs", "OfflineMemory", "TakeInitLog", "CollectSpans"} {
		if !seen[want] {
			t.Errorf("Methods() lacks %s", want)
		}
	}
	p, err := Parse([]byte(`deny = ["OfflineMemory"]`))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Denied("OfflineMemory") {
		t.Error("a policy denying OfflineMemory does not deny it")
	}
}
