//go:build linux

package agent

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/libct"
)

// maxInitLogs bounds the logs kept for TakeInitLog: a host that asked for a log and never
// took it (it went away) leaves at most this many behind; the oldest goes first.
const maxInitLogs = 16

// initLogKey names a process: its container and exec id (empty for the init).
type initLogKey struct{ container, exec string }

// initLogs keeps what libcontainer logged while it set up the processes whose start asked
// for it (CreateContainerRequest.init_log, ExecProcessRequest.init_log) until the host
// takes it.
type initLogs struct {
	// mu guards logs and order.
	mu   sync.Mutex
	logs map[initLogKey][]libct.LogEntry
	// order holds the keys of logs, oldest first.
	order []initLogKey
}

// put keeps the log of a process's start, replacing an earlier one of the same process.
func (l *initLogs) put(container, exec string, entries []libct.LogEntry) {
	k := initLogKey{container, exec}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.logs == nil {
		l.logs = make(map[initLogKey][]libct.LogEntry)
	}
	if _, ok := l.logs[k]; ok {
		l.dropKey(k)
	}
	if len(l.order) == maxInitLogs {
		delete(l.logs, l.order[0])
		l.order = l.order[1:]
	}
	l.logs[k] = entries
	l.order = append(l.order, k)
}

// take returns and forgets the log of a process.
func (l *initLogs) take(container, exec string) ([]libct.LogEntry, bool) {
	k := initLogKey{container, exec}
	l.mu.Lock()
	defer l.mu.Unlock()
	entries, ok := l.logs[k]
	if ok {
		delete(l.logs, k)
		l.dropKey(k)
	}
	return entries, ok
}

// dropKey removes k from order.
//
// Preconditions: l.mu is held.
func (l *initLogs) dropKey(k initLogKey) {
	for i, o := range l.order {
		if o == k {
			l.order = append(l.order[:i], l.order[i+1:]...)
			return
		}
	}
}

var _ agentv1.InitLogService = (*Service)(nil)

// TakeInitLog returns, and forgets, libcontainer's log of a process's setup.
func (s *Service) TakeInitLog(ctx context.Context, req *agentv1.TakeInitLogRequest) (*agentv1.TakeInitLogResponse, error) {
	entries, ok := s.initLogs.take(req.GetContainerId(), req.GetExecId())
	if !ok {
		return nil, fmt.Errorf("init log of container %q exec %q: %w: none recorded (was the process started with init_log?)", req.GetContainerId(), req.GetExecId(), errdefs.ErrNotFound)
	}
	resp := &agentv1.TakeInitLogResponse{Entries: make([]*agentv1.LogEntry, 0, len(entries))}
	for _, e := range entries {
		resp.Entries = append(resp.Entries, &agentv1.LogEntry{TimeUnixNano: e.Time.UnixNano(), Level: e.Level.String(), Msg: e.Msg})
	}
	return resp, nil
}
