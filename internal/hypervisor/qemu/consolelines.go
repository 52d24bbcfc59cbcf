package qemu

import (
	"bytes"
	"strings"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// maxConsoleLine bounds a forwarded console line: a longer one is forwarded in pieces.
const maxConsoleLine = 4096

// consoleLines forwards the guest's console to the VM owner's log, one debug entry per
// line (field "guest"), so the guest kernel's messages and the agent's log appear in the
// shim's log (containerd's, at debug level) next to the host's, tagged with the VM. It
// costs nothing when the logger is above debug level. Used by the console reader alone.
type consoleLines struct {
	logger  *log.Entry
	partial []byte
}

func (l *consoleLines) write(p []byte) {
	if !l.logger.Logger.IsLevelEnabled(logrus.DebugLevel) {
		return
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.partial = append(l.partial, p...)
			for len(l.partial) >= maxConsoleLine {
				l.emit(l.partial[:maxConsoleLine])
				l.partial = append(l.partial[:0], l.partial[maxConsoleLine:]...)
			}
			return
		}
		l.partial = append(l.partial, p[:i]...)
		l.flush()
		p = p[i+1:]
	}
}

// flush forwards what is left of the current line.
func (l *consoleLines) flush() {
	for len(l.partial) > maxConsoleLine {
		l.emit(l.partial[:maxConsoleLine])
		l.partial = l.partial[maxConsoleLine:]
	}
	l.emit(l.partial)
	l.partial = l.partial[:0]
}

func (l *consoleLines) emit(line []byte) {
	s := strings.TrimRight(string(line), "\r")
	if s == "" {
		return
	}
	l.logger.WithField("guest", s).Debug("guest console")
}
