package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/store"
)

// psColumns is the layout ps options select.
type psColumns int

const (
	// psPlain is ps without options: PID TTY TIME CMD.
	psPlain psColumns = iota
	// psFull is -f: UID PID PPID C STIME TTY TIME CMD.
	psFull
	// psBSD is x: PID TTY STAT TIME COMMAND (it wins over -f, as with procps).
	psBSD
)

// parsePsOptions reads ps(1) options as runc passes them to ps: none means "-ef". Known
// letters are e and A (every process: the container's are all there is to list), f and x,
// with or without a leading dash, alone or combined.
func parsePsOptions(opts []string) (psColumns, error) {
	if len(opts) == 0 {
		opts = []string{"-ef"}
	}
	full, bsd := false, false
	for _, o := range opts {
		letters := strings.TrimPrefix(o, "-")
		if letters == "" || strings.HasPrefix(letters, "-") {
			return 0, fmt.Errorf("ps option %q is not supported: vessel formats the guest's processes itself and knows -e, -A, -f and x", o)
		}
		for _, l := range letters {
			switch l {
			case 'e', 'A':
			case 'f':
				full = true
			case 'x':
				bsd = true
			default:
				return 0, fmt.Errorf("ps option %q is not supported: vessel formats the guest's processes itself and knows -e, -A, -f and x", o)
			}
		}
	}
	switch {
	case bsd:
		return psBSD, nil
	case full:
		return psFull, nil
	}
	return psPlain, nil
}

// writePsTable prints procs as ps prints the columns cols; now is the time STIME and C
// are reckoned against.
func writePsTable(w io.Writer, cols psColumns, procs []shimproto.Process, now time.Time) error {
	var b strings.Builder
	switch cols {
	case psFull:
		fmt.Fprintf(&b, "%-8s %5s %5s %2s %5s %-8s %8s %s\n", "UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD")
	case psBSD:
		fmt.Fprintf(&b, "%5s %-8s %-6s %4s %s\n", "PID", "TTY", "STAT", "TIME", "COMMAND")
	default:
		fmt.Fprintf(&b, "%5s %-8s %8s %s\n", "PID", "TTY", "TIME", "CMD")
	}
	names := map[uint32]string{}
	for _, p := range procs {
		cpu := time.Duration(p.CPUTimeMs) * time.Millisecond
		args := p.Cmdline
		if args == "" {
			args = "[" + p.Comm + "]"
		}
		switch cols {
		case psFull:
			name, ok := names[p.UID]
			if !ok {
				name = userName(p.UID)
				names[p.UID] = name
			}
			start := time.UnixMilli(p.StartUnixMs)
			fmt.Fprintf(&b, "%-8s %5d %5d %2d %5s %-8s %8s %s\n", name, p.Pid, p.PPid, cpuPercent(cpu, now.Sub(start)),
				startTime(start, now), p.TTY, clockTime(cpu), args)
		case psBSD:
			fmt.Fprintf(&b, "%5d %-8s %-6s %4s %s\n", p.Pid, p.TTY, p.Stat, bsdTime(cpu), args)
		default:
			fmt.Fprintf(&b, "%5d %-8s %8s %s\n", p.Pid, p.TTY, clockTime(cpu), p.Comm)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// userName is uid's name in the host's user database, as ps on the host shows it, or the
// number.
func userName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return id
}

// cpuPercent is ps's C column: CPU time over time since start, in percent, at most 99.
func cpuPercent(cpu, elapsed time.Duration) int {
	if elapsed <= 0 {
		return 0
	}
	return min(int(cpu*100/elapsed), 99)
}

// startTime is ps's STIME: the time of day for a process started in the last 24 hours,
// else month and day within the year, else the year.
func startTime(start, now time.Time) string {
	switch {
	case now.Sub(start) < 24*time.Hour:
		return start.Format("15:04")
	case start.Year() == now.Year():
		return start.Format("Jan02")
	}
	return start.Format("2006")
}

// clockTime is ps's TIME: [DD-]HH:MM:SS.
func clockTime(d time.Duration) string {
	s := int64(d / time.Second)
	days, h, m := s/86400, s/3600%24, s/60%60
	if days > 0 {
		return fmt.Sprintf("%d-%02d:%02d:%02d", days, h, m, s%60)
	}
	return fmt.Sprintf("%02d:%02d:%02d", h, m, s%60)
}

// bsdTime is ps's BSD TIME: M:SS, the minutes unbounded.
func bsdTime(d time.Duration) string {
	s := int64(d / time.Second)
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// guestProcesses asks the shim of ctr's sandbox, on its metrics socket, for the
// container's processes with what ps shows of them.
func (r *ociRuntime) guestProcesses(ctx context.Context, ctr *store.Container) ([]shimproto.Process, error) {
	var procs []shimproto.Process
	q := url.Values{shimproto.ContainerQuery: {ctr.ID}}
	if err := r.askShim(ctx, ctr.SandboxID, shimproto.ProcessesPath, q, &procs); err != nil {
		return nil, fmt.Errorf("list processes of %s: %w", ctr.ID, err)
	}
	return procs, nil
}

// askShim GETs path with query q from the shim of sandbox sandboxID, on its metrics
// socket, and decodes its JSON answer into out.
func (r *ociRuntime) askShim(ctx context.Context, sandboxID, path string, q url.Values, out any) error {
	sock := filepath.Join(r.root, "sandboxes", sandboxID, shimproto.MetricsSocket)
	client := &http.Client{
		Timeout: shimTimeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://shim"+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return fmt.Errorf("sandbox %s does not answer at %s: %w", sandboxID, sock, errdefs.ErrUnavailable)
		}
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %w", strings.TrimSpace(string(body)), errOfStatus(resp.StatusCode))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("shim's answer: %w", err)
	}
	return nil
}
