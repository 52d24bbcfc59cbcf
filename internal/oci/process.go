package oci

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Process is the validated container process.
type Process struct {
	Args []string
	// Env in spec order; names are not empty and contain no '='. Values may contain '='.
	Env []EnvVar
	// Cwd is absolute ("/" when the spec leaves it empty).
	Cwd             string
	User            User
	Capabilities    *specs.LinuxCapabilities
	NoNewPrivileges bool
	Terminal        bool
	ConsoleSize     *specs.Box
	Rlimits         []specs.POSIXRlimit
}

// EnvVar is one NAME=value pair.
type EnvVar struct {
	Name  string
	Value string
}

// String is NAME=value.
func (e EnvVar) String() string { return e.Name + "=" + e.Value }

// User is who the process runs as.
type User struct {
	UID            uint32
	GID            uint32
	AdditionalGIDs []uint32
	// Umask, when set by the spec.
	Umask *uint32
}

var (
	reCapability = regexp.MustCompile(`^CAP_[A-Z0-9_]+$`)
	reRlimit     = regexp.MustCompile(`^RLIMIT_[A-Z]+$`)
)

func processOf(p *specs.Process) (Process, error) {
	if p == nil {
		return Process{}, errors.New("process: missing")
	}
	if len(p.Args) == 0 && p.CommandLine == "" {
		return Process{}, errors.New("process.args: empty (want the command to run)")
	}
	env, err := ParseEnv(p.Env)
	if err != nil {
		return Process{}, err
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if !path.IsAbs(cwd) {
		return Process{}, fmt.Errorf("process.cwd = %q: not an absolute path", p.Cwd)
	}
	if err := checkCapabilities(p.Capabilities); err != nil {
		return Process{}, err
	}
	for i, r := range p.Rlimits {
		if !reRlimit.MatchString(r.Type) {
			return Process{}, fmt.Errorf("process.rlimits[%d].type = %q: not an RLIMIT_* name", i, r.Type)
		}
		if r.Soft > r.Hard {
			return Process{}, fmt.Errorf("process.rlimits[%d] (%s): soft %d above hard %d", i, r.Type, r.Soft, r.Hard)
		}
	}
	return Process{
		Args:            append([]string(nil), p.Args...),
		Env:             env,
		Cwd:             path.Clean(cwd),
		User:            User{UID: p.User.UID, GID: p.User.GID, AdditionalGIDs: append([]uint32(nil), p.User.AdditionalGids...), Umask: p.User.Umask},
		Capabilities:    p.Capabilities,
		NoNewPrivileges: p.NoNewPrivileges,
		Terminal:        p.Terminal,
		ConsoleSize:     p.ConsoleSize,
		Rlimits:         append([]specs.POSIXRlimit(nil), p.Rlimits...),
	}, nil
}

// ParseEnv splits KEY=VALUE entries. The name must not be empty; the value may contain '='
// and may be empty; an entry without '=' or with a NUL byte is refused.
func ParseEnv(env []string) ([]EnvVar, error) {
	out := make([]EnvVar, 0, len(env))
	for i, e := range env {
		name, value, ok := strings.Cut(e, "=")
		switch {
		case !ok:
			return nil, fmt.Errorf("process.env[%d] = %q: no '=' (want NAME=value)", i, e)
		case name == "":
			return nil, fmt.Errorf("process.env[%d] = %q: empty name (want NAME=value)", i, e)
		case strings.ContainsRune(e, 0):
			return nil, fmt.Errorf("process.env[%d] = %q: contains a NUL byte", i, e)
		}
		out = append(out, EnvVar{Name: name, Value: value})
	}
	return out, nil
}

func checkCapabilities(c *specs.LinuxCapabilities) error {
	if c == nil {
		return nil
	}
	for _, set := range []struct {
		name string
		caps []string
	}{
		{"bounding", c.Bounding}, {"effective", c.Effective}, {"inheritable", c.Inheritable},
		{"permitted", c.Permitted}, {"ambient", c.Ambient},
	} {
		for i, name := range set.caps {
			if !reCapability.MatchString(name) {
				return fmt.Errorf("process.capabilities.%s[%d] = %q: not a CAP_* name", set.name, i, name)
			}
		}
	}
	return nil
}
