// Package policy is the agent policy: a declarative TOML document that says which agent
// requests the guest accepts from the host. It protects the guest from a host it does not
// trust (the confidential-computing model): the agent checks every request against the
// policy in force before doing any work, and answers a denied one with PermissionDenied.
//
// A policy document:
//
//	# Requests refused whatever they carry, by their agent API name.
//	deny = ["SetPolicy", "CopyFile"]
//
//	[exec]
//	# When set, ExecProcess runs only these exact argument lists.
//	allowed_commands = [["cat", "/etc/hostname"], ["sh", "-c", "ps"]]
//
//	[copy_file]
//	# When set, CopyFile writes (and RemovePath removes) only at or below these guest paths.
//	allowed_paths = ["/run/vessel/shared/configmaps"]
//
//	[port_forward]
//	# When set, PortForwardOpen connects only to these loopback ports of the pod.
//	allowed_ports = [8080]
//
// Unknown keys and request names are refused when the document is parsed, on the host
// (configuration load) and in the guest alike. No policy, or an empty one, allows all.
package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/BurntSushi/toml"
	"github.com/containerd/errdefs"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
)

// Policy is a parsed policy document.
type Policy struct {
	// Deny lists request names that are always refused.
	Deny []string `toml:"deny"`
	Exec struct {
		// AllowedCommands, when not empty, are the only argument lists ExecProcess runs.
		AllowedCommands [][]string `toml:"allowed_commands"`
	} `toml:"exec"`
	CopyFile struct {
		// AllowedPaths, when not empty, are the absolute guest paths at or below which
		// CopyFile writes.
		AllowedPaths []string `toml:"allowed_paths"`
	} `toml:"copy_file"`
	PortForward struct {
		// AllowedPorts, when not empty, are the only ports PortForwardOpen connects to.
		AllowedPorts []uint16 `toml:"allowed_ports"`
	} `toml:"port_forward"`

	digest string
}

// Methods are the agent API's request names, of every service the agent serves, the
// names a policy may use. Request names are unique across the services.
func Methods() []string {
	var names []string
	svcs := agentv1.File_agent_proto.Services()
	for i := range svcs.Len() {
		ms := svcs.Get(i).Methods()
		for j := range ms.Len() {
			names = append(names, string(ms.Get(j).Name()))
		}
	}
	return names
}

// Parse reads a policy document. Errors name what is wrong.
func Parse(doc []byte) (*Policy, error) {
	var p Policy
	md, err := toml.NewDecoder(bytes.NewReader(doc)).Decode(&p)
	if err != nil {
		return nil, fmt.Errorf("agent policy: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("agent policy: unknown keys %s: %w", strings.Join(keys, ", "), errdefs.ErrInvalidArgument)
	}
	methods := Methods()
	for _, name := range p.Deny {
		if !slices.Contains(methods, name) {
			return nil, fmt.Errorf("agent policy: deny: %q is not an agent request (known: %s): %w", name, strings.Join(methods, ", "), errdefs.ErrInvalidArgument)
		}
	}
	for i, args := range p.Exec.AllowedCommands {
		if len(args) == 0 {
			return nil, fmt.Errorf("agent policy: exec.allowed_commands[%d] is empty: %w", i, errdefs.ErrInvalidArgument)
		}
	}
	for _, dir := range p.CopyFile.AllowedPaths {
		if !path.IsAbs(dir) || path.Clean(dir) != dir {
			return nil, fmt.Errorf("agent policy: copy_file.allowed_paths: %q is not a clean absolute path: %w", dir, errdefs.ErrInvalidArgument)
		}
	}
	sum := sha256.Sum256(doc)
	p.digest = hex.EncodeToString(sum[:])
	return &p, nil
}

// Digest is the sha256 of the document the policy was parsed from (hex); "" for a nil
// policy.
func (p *Policy) Digest() string {
	if p == nil {
		return ""
	}
	return p.digest
}

// Denied reports whether the policy refuses every request called method, whatever it
// carries. A nil policy refuses nothing.
func (p *Policy) Denied(method string) bool {
	return p != nil && slices.Contains(p.Deny, method)
}

// Check decides on a decoded request: nil when allowed, an errdefs.ErrPermissionDenied
// error naming the reason otherwise. A nil policy allows everything.
func (p *Policy) Check(method string, req any) error {
	if p == nil {
		return nil
	}
	if p.Denied(method) {
		return denied("%s is denied by the agent policy", method)
	}
	switch r := req.(type) {
	case *agentv1.ExecProcessRequest:
		if len(p.Exec.AllowedCommands) == 0 {
			return nil
		}
		args, err := execArgs(r.GetProcess())
		if err != nil {
			return err
		}
		for _, allowed := range p.Exec.AllowedCommands {
			if slices.Equal(allowed, args) {
				return nil
			}
		}
		return denied("ExecProcess of %q is not among the agent policy's exec.allowed_commands", args)
	case *agentv1.CopyFileRequest:
		if p.copyAllowed(r.GetPath()) {
			return nil
		}
		return denied("CopyFile to %q is outside the agent policy's copy_file.allowed_paths", r.GetPath())
	case *agentv1.RemovePathRequest:
		if p.copyAllowed(r.GetPath()) {
			return nil
		}
		return denied("RemovePath of %q is outside the agent policy's copy_file.allowed_paths", r.GetPath())
	case *agentv1.PortForwardOpenRequest:
		if len(p.PortForward.AllowedPorts) == 0 || slices.ContainsFunc(p.PortForward.AllowedPorts, func(port uint16) bool { return uint32(port) == r.GetPort() }) {
			return nil
		}
		return denied("PortForwardOpen to port %d is not among the agent policy's port_forward.allowed_ports", r.GetPort())
	}
	return nil
}

// copyAllowed reports whether copy_file.allowed_paths lets CopyFile write, and RemovePath
// remove, at target.
func (p *Policy) copyAllowed(target string) bool {
	if len(p.CopyFile.AllowedPaths) == 0 {
		return true
	}
	if !path.IsAbs(target) {
		return false
	}
	target = path.Clean(target)
	for _, dir := range p.CopyFile.AllowedPaths {
		if target == dir || strings.HasPrefix(target, strings.TrimSuffix(dir, "/")+"/") {
			return true
		}
	}
	return false
}

// execArgs are the arguments an ExecProcess runs: the full OCI process's when the host
// sent one (it takes precedence), else the plain field.
func execArgs(p *agentv1.Process) ([]string, error) {
	if raw := p.GetOciProcess(); len(raw) > 0 {
		var full struct {
			Args []string `json:"args"`
		}
		if err := json.Unmarshal(raw, &full); err != nil {
			return nil, fmt.Errorf("%w: ExecProcess: oci_process: %w", errdefs.ErrInvalidArgument, err)
		}
		return full.Args, nil
	}
	return p.GetArgs(), nil
}

func denied(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errdefs.ErrPermissionDenied}, args...)...)
}

// Gate holds the policy in force for a server; safe for concurrent use. The zero Gate
// (and a nil one) has no policy: everything is allowed.
type Gate struct {
	p atomic.Pointer[Policy]
}

// Policy is the policy in force, nil when none.
func (g *Gate) Policy() *Policy {
	if g == nil {
		return nil
	}
	return g.p.Load()
}

// Set puts p in force.
func (g *Gate) Set(p *Policy) { g.p.Store(p) }
