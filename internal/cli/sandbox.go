package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/containerd/errdefs"
	"github.com/prometheus/procfs"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/persist"
	"github.com/vessel-containers/vessel/internal/procid"
	"github.com/vessel-containers/vessel/internal/sharefs"
)

func sandboxCommand() *cli.Command {
	return &cli.Command{
		Name:  "sandbox",
		Usage: "list and inspect the sandboxes (VMs) from their state directories",
		Description: `Reads each sandbox's persisted state (state.json under --sandbox-root) and looks at
its host processes and mounts; the guest is not asked. Works for the sandboxes of
containerd's shims (the default root) and of vessel's own.`,
		Subcommands: []*cli.Command{
			{
				Name:  "ls",
				Usage: "list the sandboxes",
				Flags: []cli.Flag{
					sandboxRootFlag,
					&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "table or json"},
				},
				Action: sandboxList,
			},
			{
				Name:      "inspect",
				Usage:     "a sandbox's state, VM process, size, containers with their mounts and devices, and host mounts, as JSON",
				ArgsUsage: "SANDBOX",
				Flags:     []cli.Flag{sandboxRootFlag},
				Action:    sandboxInspect,
			},
		},
	}
}

// sandboxInfo is what ls and inspect report of one sandbox: its persisted state and what
// the host shows of it now.
type sandboxInfo struct {
	*persist.Sandbox
	// StateDir is the sandbox's state directory.
	StateDir string `json:"state_dir"`
	// VMRunning tells whether the recorded VMM process (pid and start time) still runs.
	VMRunning bool `json:"vm_running"`
	// VMRSSBytes is the VMM's resident memory, when it runs.
	VMRSSBytes uint64 `json:"vm_rss_bytes,omitempty"`
	// DebugSocket is the debug console's socket, when the sandbox serves one.
	DebugSocket string `json:"debug_socket,omitempty"`
	// HostMounts are the mounts under the state directory: what the host shares with the
	// guest.
	HostMounts []string `json:"host_mounts,omitempty"`
}

// loadSandbox reads sandbox id under root and looks at its host side.
func loadSandbox(root, id string) (*sandboxInfo, error) {
	dir := filepath.Join(root, id)
	st, err := persist.Load(dir)
	if err != nil {
		return nil, err
	}
	info := &sandboxInfo{Sandbox: st, StateDir: dir}
	if st.VMPid > 0 && st.VMStartTime != 0 {
		if now, err := procid.Of(st.VMPid); err == nil && now == (procid.ID{Pid: st.VMPid, StartTime: st.VMStartTime}) {
			info.VMRunning = true
			if p, err := procfs.NewProc(st.VMPid); err == nil {
				if stat, err := p.Stat(); err == nil {
					info.VMRSSBytes = uint64(stat.ResidentMemory())
				}
			}
		}
	}
	if st.DebugConsole {
		info.DebugSocket = filepath.Join(dir, persist.DebugSocketName)
	}
	if mounts, err := sharefs.MountsUnder(dir); err == nil {
		info.HostMounts = mounts
	}
	return info, nil
}

// listSandboxes reads every sandbox under root, sorted by id. Directories without a state
// (a sandbox being created or deleted) are left out; unreadable states are returned as
// errors, after the readable ones.
func listSandboxes(root string) ([]*sandboxInfo, []error, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox root: %w", err)
	}
	var out []*sandboxInfo
	var bad []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		info, err := loadSandbox(root, e.Name())
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			bad = append(bad, err)
			continue
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, bad, nil
}

func sandboxList(c *cli.Context) error {
	root, err := sandboxRoot(c)
	if err != nil {
		return err
	}
	all, bad, err := listSandboxes(root)
	if err != nil {
		return err
	}
	switch c.String("format") {
	case "json":
		if all == nil {
			all = []*sandboxInfo{}
		}
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(all); err != nil {
			return err
		}
	case "table":
		writeSandboxTable(c.App.Writer, all)
	default:
		return fmt.Errorf("--format %q: want table or json: %w", c.String("format"), errdefs.ErrInvalidArgument)
	}
	return errors.Join(bad...)
}

// writeSandboxTable writes one line per sandbox.
func writeSandboxTable(w io.Writer, all []*sandboxInfo) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tVM PID\tVCPUS\tMEMORY\tCONTAINERS\tCREATED\tERROR")
	for _, s := range all {
		pid := fmt.Sprint(s.VMPid)
		if !s.VMRunning {
			pid += " (gone)"
		}
		mem := "-"
		if s.MemoryMiB > 0 {
			mem = fmt.Sprintf("%dMiB", s.MemoryMiB)
		}
		errText := "-"
		if s.Error != "" {
			errText, _, _ = strings.Cut(s.Error, "\n")
			if len(errText) > 80 {
				errText = errText[:77] + "..."
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", s.ID, s.State, pid, s.VCPUs, mem, len(s.Containers),
			s.Created.Local().Format(time.RFC3339), errText)
	}
	_ = tw.Flush()
}

func sandboxInspect(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("sandbox inspect: want exactly one SANDBOX argument: %w", errdefs.ErrInvalidArgument)
	}
	root, err := sandboxRoot(c)
	if err != nil {
		return err
	}
	id := c.Args().First()
	info, err := loadSandbox(root, id)
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("sandbox %s: no state under %s: %w", id, root, errdefs.ErrNotFound)
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	return enc.Encode(info)
}
