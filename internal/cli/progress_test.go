package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/vessel-containers/vessel/internal/imagebuilder"
)

func TestProgressViewTimeLeft(t *testing.T) {
	var out bytes.Buffer
	v := newProgressView(&out)
	v.tty, v.width = true, 100 // a buffer is no terminal: draw as on one
	now := time.Unix(1000, 0)
	v.now = func() time.Time { return now }
	stage := "kernel: make vmlinux"
	v.report(imagebuilder.Event{Stage: stage, Total: 400, Unit: "objects", Estimated: true})
	now = now.Add(10 * time.Second)
	v.report(imagebuilder.Event{Stage: stage, Done: 100, Total: 400, Unit: "objects", Estimated: true})
	if want := " 25% 100/~400 objects, about 30s left"; !strings.Contains(out.String(), want) {
		t.Errorf("output %q lacks %q", out.String(), want)
	}
	// Past an estimated total: 99% until the stage ends.
	now = now.Add(40 * time.Second)
	v.report(imagebuilder.Event{Stage: stage, Done: 420, Total: 400, Unit: "objects", Estimated: true})
	if want := " 99% 420/~400 objects, almost done"; !strings.Contains(out.String(), want) {
		t.Errorf("output %q lacks %q", out.String(), want)
	}
	now = now.Add(time.Second)
	v.finish(nil)
	if want := "\rkernel: make vmlinux: done in 51s, 420 objects\x1b[K\n"; !strings.HasSuffix(out.String(), want) {
		t.Errorf("output %q does not end with %q", out.String(), want)
	}

	// An uncounted stage (a wait for another build's lock) redraws its elapsed time.
	out.Reset()
	lock := "kernel: waiting for another build (/var/cache/vessel/kernel/.lock)"
	v.report(imagebuilder.Event{Stage: lock})
	now = now.Add(90 * time.Second)
	v.report(imagebuilder.Event{Stage: lock})
	if want := "\r" + lock + " ... 1m30s\x1b[K"; !strings.HasSuffix(out.String(), want) {
		t.Errorf("output %q does not end with %q", out.String(), want)
	}

	v.finish(nil)

	// A line longer than the terminal is cut: a wrapped line cannot be redrawn in place.
	out.Reset()
	v.width = 30
	v.report(imagebuilder.Event{Stage: "initramfs", Total: 1 << 20, Unit: "bytes"})
	v.report(imagebuilder.Event{Stage: "initramfs", Done: 1 << 19, Total: 1 << 20, Unit: "bytes"})
	for _, line := range strings.Split(out.String(), "\r") {
		if l := len(strings.TrimSuffix(line, "\x1b[K")); l >= 30 {
			t.Errorf("line %q is %d columns on a 30-column terminal", line, l)
		}
	}
	v.finish(nil)
}
