// Package hooks runs OCI runtime hooks (prestart, createRuntime, createContainer,
// poststart, poststop) on the host, as runc does: each hook is executed with its args and
// env, the container's state as JSON on its stdin, and killed when its timeout passes. For
// a VM runtime these hooks run on the host, createContainer too, although the spec
// executes it in the container's namespaces: its path resolves in the runtime's. The
// startContainer hooks, whose path resolves in the container, run in the guest, from the
// container's init (oci.GuestSpec); Of still returns them.
package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Kind names a point of the container lifecycle where hooks run.
type Kind string

// The hook points of the runtime spec, in lifecycle order.
const (
	Prestart        Kind = "prestart"
	CreateRuntime   Kind = "createRuntime"
	CreateContainer Kind = "createContainer"
	StartContainer  Kind = "startContainer"
	Poststart       Kind = "poststart"
	Poststop        Kind = "poststop"
)

// Kinds lists every hook point, in lifecycle order.
var Kinds = []Kind{Prestart, CreateRuntime, CreateContainer, StartContainer, Poststart, Poststop}

// Of returns the hooks of one kind in a spec; nil when there are none.
func Of(spec *specs.Spec, k Kind) []specs.Hook {
	if spec == nil || spec.Hooks == nil {
		return nil
	}
	h := spec.Hooks
	switch k {
	case Prestart:
		return h.Prestart //nolint:staticcheck // deprecated by the spec, still honoured as runc does
	case CreateRuntime:
		return h.CreateRuntime
	case CreateContainer:
		return h.CreateContainer
	case StartContainer:
		return h.StartContainer
	case Poststart:
		return h.Poststart
	case Poststop:
		return h.Poststop
	}
	return nil
}

// Run runs the hooks in order and stops at the first that fails. The error names the hook
// and carries what it wrote to stderr. Whether a failure is fatal is the caller's choice:
// the spec makes poststart and poststop failures warnings.
func Run(ctx context.Context, k Kind, hs []specs.Hook, state specs.State) error {
	if len(hs) == 0 {
		return nil
	}
	data, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("%s hooks: encode state: %w", k, err)
	}
	for i, h := range hs {
		if err := run(ctx, h, data); err != nil {
			return fmt.Errorf("%s hook #%d (%s): %w", k, i, h.Path, err)
		}
		log.G(ctx).WithField("hook", h.Path).Debugf("%s hook #%d ran", k, i)
	}
	return nil
}

// maxOutput bounds how much of a hook's output an error quotes.
const maxOutput = 4096

func run(ctx context.Context, h specs.Hook, state []byte) error {
	if h.Timeout != nil {
		if *h.Timeout <= 0 {
			return fmt.Errorf("timeout %d: must be a positive number of seconds", *h.Timeout)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*h.Timeout)*time.Second)
		defer cancel()
	}
	var out bytes.Buffer
	// Path is the executable; Args are the full argv, argv[0] included (as for execve). A
	// nil Env passes vessel's own environment on, as runc does.
	cmd := exec.CommandContext(ctx, h.Path)
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	}
	cmd.Env = h.Env
	cmd.Stdin = bytes.NewReader(state)
	cmd.Stdout, cmd.Stderr = &out, &out
	// A hook that leaves children holding its output must not keep us waiting.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %ds: %w", *h.Timeout, err)
	}
	if msg := quote(out.Bytes()); msg != "" {
		return fmt.Errorf("%w, output: %s", err, msg)
	}
	return err
}

func quote(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > maxOutput {
		s = s[:maxOutput] + "..."
	}
	return s
}
