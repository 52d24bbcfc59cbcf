// Package shimproto is the contract between containerd-shim-vessel-v2 and the programs that
// run it (containerd, the vessel CLI and vessel-monitor): the runtime and binary names, the
// flags the shim binary takes, the command lines of its start and delete actions, and the
// socket its metrics are read from.
//
// The shim takes containerd's flags (parsed by containerd's shim package) and five of its
// own, which containerd never passes: a shim started by containerd keeps its state under
// the default sandbox root, serves in containerd's socket directory, logs to containerd's
// log FIFO, reads direct-assigned volumes from the default root and runs the spec's OCI
// hooks. The CLI passes all five, so its shims keep everything under its --root and leave
// the hooks to the CLI, which runs them at its own verbs as runc does.
// Nothing depends on the namespace's name or on environment variables.
package shimproto

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// RuntimeName is the runtime type containerd knows Vessel by.
const RuntimeName = "io.containerd.vessel.v2"

// BinaryName is the shim's executable name, which containerd derives from RuntimeName.
const BinaryName = "containerd-shim-vessel-v2"

// Actions of the shim binary: start finds or starts the shim serving a container's sandbox
// and prints its address; delete cleans up behind a shim that died.
const (
	ActionStart  = "start"
	ActionDelete = "delete"
)

// MetricsSocket is the unix socket, in a sandbox's state directory, on which the sandbox's
// shim serves its metrics and the guest's as Prometheus text at /metrics, over HTTP, while
// the sandbox runs; vessel-monitor reads it (docs/observability.md). It also answers
// DirectVolumeStatsPath, DirectVolumeResizePath and ProcessesPath.
const MetricsSocket = "shim-metrics.sock"

// DirectVolumeStatsPath is the HTTP path on MetricsSocket that answers the usage of a
// direct-assigned volume the sandbox holds, as JSON (the agent's VolumeStatsResponse);
// the volume path is the query parameter DirectVolumeQuery. `vessel direct-volume stats`
// asks it. DirectVolumeResizePath, POSTed, grows the volume's disk in the VM and its
// file system in the guest to DirectVolumeSizeQuery bytes; `vessel direct-volume resize`
// asks it. Both are under DirectVolumePrefix.
const (
	DirectVolumePrefix     = "/direct-volume/"
	DirectVolumeStatsPath  = DirectVolumePrefix + "stats"
	DirectVolumeResizePath = DirectVolumePrefix + "resize"
	DirectVolumeQuery      = "path"
	DirectVolumeSizeQuery  = "size"
)

// ProcessesPath is the HTTP path on MetricsSocket that answers, as a JSON array of
// Process, the processes of the container named by the query parameter ContainerQuery,
// with what ps(1) shows of them; `vessel ps` asks it.
const (
	ProcessesPath  = "/processes"
	ContainerQuery = "container"
)

// Process is one process of a container, as the guest's /proc describes it.
type Process struct {
	Pid uint32 `json:"pid"`
	// ExecID is the exec the process belongs to, empty for the container's init.
	ExecID  string `json:"exec_id,omitempty"`
	Cmdline string `json:"cmdline"`
	// Comm is the command name, shown for a process without a command line.
	Comm string `json:"comm"`
	// UID is the effective uid in the guest.
	UID  uint32 `json:"uid"`
	PPid uint32 `json:"ppid"`
	// TTY is the controlling terminal as ps names it ("pts/0"), or "?".
	TTY string `json:"tty"`
	// Stat is ps's BSD STAT column (state letter and flags).
	Stat      string `json:"stat"`
	CPUTimeMs uint64 `json:"cpu_time_ms"`
	// StartUnixMs is when the process started, on the guest's clock.
	StartUnixMs int64 `json:"start_unix_ms"`
}

// InitLogPath is the HTTP path on MetricsSocket that answers, as a JSON array of LogEntry,
// what libcontainer logged in the guest while it set up a process whose Create or Exec
// call carried MetadataInitLog: the process of the container named by ContainerQuery whose
// exec id is ExecQuery (empty for the container's init). The guest forgets the log once
// it is answered; `vessel --debug` asks it.
const (
	InitLogPath = "/init-log"
	ExecQuery   = "exec"
)

// LogEntry is one line of libcontainer's log in the guest.
type LogEntry struct {
	// Time is when the agent received the line, on the guest's clock.
	Time time.Time `json:"time"`
	// Level is logrus's level name ("debug", "info", "warning", ...).
	Level string `json:"level"`
	Msg   string `json:"msg"`
}

// Request metadata (ttrpc metadata) that the CLI sets on task API calls, for runc options
// that the task API has no field for. containerd sets none of them. A key is set with the
// value MetadataOn; any other value or none means off.
const (
	// MetadataInitLog on Create, or on Exec, has the guest record libcontainer's debug log
	// of the process's setup ("runc init" and nsexec, run with debug logging), which
	// InitLogPath answers (vessel --debug).
	MetadataInitLog = "io.vessel.init-log"
	// MetadataIgnorePaused on Exec lets the exec into a paused container wait: Start
	// returns once the container is resumed and the process started (vessel exec
	// --ignore-paused). Without it Start refuses an exec into a paused container.
	MetadataIgnorePaused = "io.vessel.ignore-paused"
	MetadataOn           = "1"
)

// Names of containerd's shim flags, which containerd's shim package defines and parses.
const (
	FlagNamespace = "namespace"
	FlagID        = "id"
	FlagAddress   = "address"
	FlagBundle    = "bundle"
	FlagDebug     = "debug"
	// FlagInfo makes the binary print the runtime's info (name, version, features) as
	// protobuf and exit.
	FlagInfo = "info"
)

// Names of the shim's own flags.
const (
	// FlagSandboxRoot is where sandboxes keep state (VM, shared-fs mounts).
	FlagSandboxRoot = "sandbox-root"
	// FlagLogFile is a file the shim logs to instead of containerd's log FIFO.
	FlagLogFile = "log-file"
	// FlagSocketDir is the directory of the shim's socket instead of containerd's.
	FlagSocketDir = "socket-dir"
	// FlagDirectVolumeRoot is where the records of direct-assigned volumes are
	// (internal/directvolume).
	FlagDirectVolumeRoot = "direct-volume-root"
	// FlagCallerRunsHooks says that the program that runs the shim runs the spec's OCI
	// hooks itself (the vessel CLI, as runc's verbs do); without it the shim runs them.
	FlagCallerRunsHooks = "caller-runs-hooks"
)

// Options are the values of the shim's own flags. An empty value is containerd's behaviour.
type Options struct {
	// SandboxRoot is where sandboxes keep state; empty is the default root.
	SandboxRoot string
	// LogFile is the file the shim process logs to; empty is containerd's log FIFO "log"
	// in the bundle.
	LogFile string
	// SocketDir is the absolute directory the shim's socket is created in; empty is
	// containerd's socket directory.
	SocketDir string
	// DirectVolumeRoot is where the records of direct-assigned volumes are; empty is
	// directvolume.DefaultRoot.
	DirectVolumeRoot string
	// CallerRunsHooks is set when the program running the shim runs the spec's OCI hooks;
	// false (containerd) makes the shim run them.
	CallerRunsHooks bool
}

// Register defines the shim's own flags on fs. The shim binary registers them on the
// standard flag set before containerd's shim package parses it; Lookup reads them back.
func Register(fs *flag.FlagSet) {
	fs.String(FlagSandboxRoot, "", "directory where sandboxes keep state (default: vessel's state directory)")
	fs.String(FlagLogFile, "", "file to log to instead of containerd's log FIFO")
	fs.String(FlagSocketDir, "", "absolute directory for the shim's socket instead of containerd's")
	fs.String(FlagDirectVolumeRoot, "", "directory of the direct-assigned volume records (default: vessel's)")
	fs.Bool(FlagCallerRunsHooks, false, "the program running the shim runs the OCI hooks; the shim does not")
}

// Lookup returns the values of the flags Register defined on fs; a flag fs lacks is empty.
func Lookup(fs *flag.FlagSet) Options {
	value := func(name string) string {
		if f := fs.Lookup(name); f != nil {
			return f.Value.String()
		}
		return ""
	}
	return Options{
		SandboxRoot:      value(FlagSandboxRoot),
		LogFile:          value(FlagLogFile),
		SocketDir:        value(FlagSocketDir),
		DirectVolumeRoot: value(FlagDirectVolumeRoot),
		CallerRunsHooks:  value(FlagCallerRunsHooks) == "true",
	}
}

// Args returns the flags that give o to a shim process; empty values are left out.
func (o Options) Args() []string {
	var args []string
	for _, f := range []struct{ name, value string }{
		{FlagSandboxRoot, o.SandboxRoot}, {FlagLogFile, o.LogFile}, {FlagSocketDir, o.SocketDir},
		{FlagDirectVolumeRoot, o.DirectVolumeRoot},
	} {
		if f.value != "" {
			args = append(args, "-"+f.name, f.value)
		}
	}
	if o.CallerRunsHooks {
		args = append(args, "-"+FlagCallerRunsHooks)
	}
	return args
}

// Invocation is one run of the shim binary: containerd's flags and the shim's own.
type Invocation struct {
	Namespace string
	ID        string
	// Address is containerd's address; empty for a shim no containerd runs.
	Address string
	// Bundle is the directory holding config.json when it is not the working directory.
	Bundle string
	Debug  bool
	Options
}

// Args returns the command line (without the program) that runs action; an empty action
// runs the shim process itself, as the start action does.
func (inv Invocation) Args(action string) []string {
	args := []string{"-" + FlagNamespace, inv.Namespace, "-" + FlagID, inv.ID}
	if inv.Address != "" {
		args = append(args, "-"+FlagAddress, inv.Address)
	}
	if inv.Bundle != "" {
		args = append(args, "-"+FlagBundle, inv.Bundle)
	}
	if inv.Debug {
		args = append(args, "-"+FlagDebug)
	}
	args = append(args, inv.Options.Args()...)
	if action != "" {
		args = append(args, action)
	}
	return args
}

// WriteWrapper writes an executable script named BinaryName in dir that runs binary with
// o's flags before the arguments it is given. containerd cannot pass a shim flags of its
// own; a containerd that finds the wrapper first on its PATH starts shims with o.
func WriteWrapper(dir, binary string, o Options) error {
	if !filepath.IsAbs(binary) {
		return fmt.Errorf("shim wrapper: binary %q is not an absolute path", binary)
	}
	quoted := []string{shellQuote(binary)}
	for _, a := range o.Args() {
		quoted = append(quoted, shellQuote(a))
	}
	script := "#!/bin/sh\nexec " + strings.Join(quoted, " ") + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, BinaryName), []byte(script), 0o755); err != nil {
		return fmt.Errorf("shim wrapper: %w", err)
	}
	return nil
}

// shellQuote quotes s for sh: inside single quotes, where a quote in s closes the quoted
// text, adds an escaped quote and opens it again.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
