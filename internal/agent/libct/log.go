//go:build linux

package libct

import (
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// libcontainer logs through logrus's standard logger: its own lines, and while it starts a
// process the lines "runc init" and nsexec write to the log pipe, which it forwards there
// (nsexec at the level the process was given, debug when none). Nothing on those lines
// says which process they are about. So the agent routes that logger itself (SetupLog): the
// console gets the entries at the console level, and a start asked to record its log
// (StartOptions.Record) gets every entry logged while it runs, with the other starts held off
// meanwhile (logRouter.starts), so that the lines it gets are those of its own process's setup.

// LogEntry is one line of libcontainer's log.
type LogEntry struct {
	Time  time.Time
	Level logrus.Level
	Msg   string
}

// logRouter is the hook on logrus's standard logger that SetupLog installs.
type logRouter struct {
	// starts is held for writing by a recording start and for reading by any other.
	starts sync.RWMutex

	// mu guards console, level and record.
	mu      sync.Mutex
	console io.Writer
	level   logrus.Level
	// record, when set, receives every entry (a recording start runs).
	record *[]LogEntry
}

// router is the one hook of logrus's standard logger, a process-wide logger; nil until
// SetupLog. Without it no start records anything and libcontainer logs as logrus does by
// default.
var router atomic.Pointer[logRouter]

// SetupLog routes libcontainer's log: entries at level or more severe go to w in format f.
// Call it once in the agent (never in "runc init", whose logger libcontainer points at its
// log pipe); SetLogLevel changes the level later.
func SetupLog(w io.Writer, f logrus.Formatter, level logrus.Level) {
	r := &logRouter{console: w, level: level}
	if !router.CompareAndSwap(nil, r) {
		return
	}
	std := logrus.StandardLogger()
	std.SetFormatter(f)
	// The router writes; the logger passes every entry to it.
	std.SetOutput(io.Discard)
	std.SetLevel(logrus.TraceLevel)
	std.AddHook(r)
}

// SetLogLevel sets the level of libcontainer's entries that reach the console.
func SetLogLevel(level logrus.Level) {
	r := router.Load()
	if r == nil {
		return
	}
	r.mu.Lock()
	r.level = level
	r.mu.Unlock()
}

// Levels is every level: the router decides.
func (r *logRouter) Levels() []logrus.Level { return logrus.AllLevels }

// Fire writes e to the console at the console level and records it when a start records.
func (r *logRouter) Fire(e *logrus.Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.record != nil {
		*r.record = append(*r.record, LogEntry{Time: e.Time, Level: e.Level, Msg: e.Message})
	}
	if e.Level > r.level {
		return nil
	}
	b, err := e.Logger.Formatter.Format(e)
	if err != nil {
		return err //nolint:wrapcheck // logrus prints a hook's error as it is
	}
	_, err = r.console.Write(b)
	return err //nolint:wrapcheck // logrus prints a hook's error as it is
}

// holdStart is taken around a start that does not record: it waits for a recording start
// to end. The release is returned.
func holdStart() func() {
	r := router.Load()
	if r == nil {
		return func() {}
	}
	r.starts.RLock()
	return r.starts.RUnlock
}

// recordStart makes p log at debug level (its "runc init" and nsexec) and records
// everything libcontainer logs until the returned stop, which returns the entries.
func recordStart(p *Process) (stop func() []LogEntry) {
	p.p.LogLevel = strconv.Itoa(int(logrus.DebugLevel))
	r := router.Load()
	if r == nil {
		return func() []LogEntry { return nil }
	}
	r.starts.Lock()
	var entries []LogEntry
	r.mu.Lock()
	r.record = &entries
	r.mu.Unlock()
	return func() []LogEntry {
		r.mu.Lock()
		r.record = nil
		r.mu.Unlock()
		r.starts.Unlock()
		return entries
	}
}
