//go:build linux

package libct

import (
	"bytes"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/sirupsen/logrus"
)

// TestLogRouting: libcontainer's log (logrus's standard logger) reaches the console at the
// console level only, and a recording start gets every entry, at any level, while it runs,
// with the other starts held off meanwhile.
func TestLogRouting(t *testing.T) {
	var console bytes.Buffer
	SetupLog(&console, &logrus.TextFormatter{DisableTimestamp: true}, logrus.InfoLevel)
	r := router.Load()
	if r == nil {
		t.Fatal("SetupLog installed no router")
	}

	logrus.Debug("before-debug")
	logrus.Warn("before-warn")
	p := &Process{p: &libcontainer.Process{}}
	stop := recordStart(p)
	if got, want := p.p.LogLevel, "5"; got != want {
		t.Errorf("recorded process's log level %q, want %q (debug)", got, want)
	}
	if r.starts.TryRLock() {
		r.starts.RUnlock()
		t.Error("another start could begin while a start records")
	}
	logrus.Debug("nsexec-0[12]: => nsexec container setup")
	logrus.WithField("k", "v").Warn("a warning")
	entries := stop()
	logrus.Debug("after-debug")

	var msgs []string
	for _, e := range entries {
		msgs = append(msgs, e.Level.String()+" "+e.Msg)
	}
	if got, want := strings.Join(msgs, "|"), "debug nsexec-0[12]: => nsexec container setup|warning a warning"; got != want {
		t.Errorf("recorded %q, want %q", got, want)
	}
	out := console.String()
	for _, want := range []string{"before-warn", "a warning"} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q: %q", want, out)
		}
	}
	for _, not := range []string{"before-debug", "nsexec", "after-debug"} {
		if strings.Contains(out, not) {
			t.Errorf("console has %q below its level: %q", not, out)
		}
	}
	if !r.starts.TryRLock() {
		t.Fatal("starts still held off after the recording start ended")
	}
	r.starts.RUnlock()

	SetLogLevel(logrus.DebugLevel)
	defer SetLogLevel(logrus.InfoLevel)
	logrus.Debug("now-shown")
	if !strings.Contains(console.String(), "now-shown") {
		t.Errorf("console at debug level lacks a debug entry: %q", console.String())
	}
}
