package qemu

import (
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

func TestConsoleLines(t *testing.T) {
	logger, hook := test.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	l := consoleLines{logger: logrus.NewEntry(logger).WithField("vm", "sb")}
	long := strings.Repeat("x", maxConsoleLine+10)
	for _, chunk := range []string{"[    0.1] Linux ver", "sion 6.1\r\n", "\n", "agent ready\nsecond", " line\n", long, "\n", "tail"} {
		l.write([]byte(chunk))
	}
	l.flush()
	var got []string
	for _, e := range hook.AllEntries() {
		if e.Data["vm"] != "sb" || e.Level != logrus.DebugLevel {
			t.Errorf("entry %+v: want debug with the vm field", e)
		}
		got = append(got, e.Data["guest"].(string))
	}
	want := []string{"[    0.1] Linux version 6.1", "agent ready", "second line", long[:maxConsoleLine], "xxxxxxxxxx", "tail"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("forwarded lines:\n%q\nwant\n%q", got, want)
	}

	// Above debug level nothing is forwarded.
	hook.Reset()
	logger.SetLevel(logrus.InfoLevel)
	l = consoleLines{logger: logrus.NewEntry(logger)}
	l.write([]byte("quiet\n"))
	if n := len(hook.AllEntries()); n != 0 {
		t.Fatalf("%d entries at info level", n)
	}
}
