package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vessel-containers/vessel/internal/imagebuilder"
)

// progressView shows a guest image build's progress. On a terminal each stage has one
// line, redrawn in place (carriage return) with a bar, the percentage, the amount done and
// the time left, and ended with the stage's duration once the next stage begins. Elsewhere
// (a pipe, a CI log) it prints one line when a stage begins and one when it ends.
type progressView struct {
	w   io.Writer
	tty bool
	// width is the terminal's width in columns; lines are cut to fit it.
	width int
	now   func() time.Time

	// mu guards the fields below: the build reports from several goroutines.
	mu sync.Mutex
	// stage is the stage running, "" before the first.
	stage string
	began time.Time
	last  imagebuilder.Event
	// pct is the percentage last drawn, -1 before any.
	pct      int
	lastDraw time.Time
}

// newProgressView shows progress on w, as a terminal when w is one.
func newProgressView(w io.Writer) *progressView {
	v := &progressView{w: w, now: time.Now, pct: -1, width: 80}
	if f, ok := w.(*os.File); ok {
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			v.tty = true
			if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
				v.width = int(ws.Col)
			}
		}
	}
	return v
}

// report takes one event of the build (imagebuilder.ProgressFunc).
func (v *progressView) report(e imagebuilder.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	if e.Stage != v.stage {
		v.endStage(now, "")
		v.stage, v.began, v.pct, v.last = e.Stage, now, -1, e
		if !v.tty {
			fmt.Fprintf(v.w, "%s%s\n", e.Stage, v.expected(e))
			return
		}
		v.draw(now)
		return
	}
	v.last = e
	if !v.tty {
		return
	}
	// Redraw when the percentage moves, and every second for the time left.
	if percent(e) != v.pct || now.Sub(v.lastDraw) >= time.Second {
		v.draw(now)
	}
}

// finish ends the last stage; err, when the build failed, is said on its line.
func (v *progressView) finish(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	note := ""
	if err != nil {
		note = "failed"
	}
	v.endStage(v.now(), note)
	v.stage = ""
}

// expected says how much work a stage has, for its first plain line.
func (v *progressView) expected(e imagebuilder.Event) string {
	if e.Total <= 0 {
		return ""
	}
	about := ""
	if e.Estimated {
		about = "about "
	}
	return fmt.Sprintf(" (%s%s)", about, amount(e.Total, e.Unit))
}

// endStage prints the current stage's last line, with note ("failed") or its duration.
//
// Preconditions: v.mu is held.
func (v *progressView) endStage(now time.Time, note string) {
	if v.stage == "" {
		return
	}
	if note == "" {
		note = "done in " + roundDuration(now.Sub(v.began))
		if v.last.Done > 0 {
			note += ", " + amount(v.last.Done, v.last.Unit)
		}
	}
	if v.tty {
		fmt.Fprintf(v.w, "\r%s\x1b[K\n", v.fit(v.stage+": "+note))
		return
	}
	fmt.Fprintf(v.w, "%s: %s\n", v.stage, note)
}

// draw redraws the current stage's line.
//
// Preconditions: v.mu is held.
func (v *progressView) draw(now time.Time) {
	e := v.last
	v.lastDraw = now
	elapsed := now.Sub(v.began)
	if e.Total <= 0 {
		fmt.Fprintf(v.w, "\r%s\x1b[K", v.fit(fmt.Sprintf("%s ... %s", v.stage, roundDuration(elapsed))))
		return
	}
	pct := percent(e)
	v.pct = pct
	const barWidth = 24
	filled := pct * barWidth / 100
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", barWidth-filled)
	if filled > 0 && filled < barWidth {
		bar = strings.Repeat("=", filled-1) + ">" + strings.Repeat(" ", barWidth-filled)
	}
	total := amount(e.Total, e.Unit)
	if e.Estimated {
		total = "~" + total
	}
	line := fmt.Sprintf("%s [%s] %3d%% %s/%s", v.stage, bar, pct, amountNumber(e.Done, e.Unit), total)
	if left := timeLeft(e, elapsed); left != "" {
		line += ", " + left
	}
	fmt.Fprintf(v.w, "\r%s\x1b[K", v.fit(line))
}

// fit cuts line to the terminal's width (a line that wraps cannot be redrawn in place).
func (v *progressView) fit(line string) string {
	if !v.tty || len(line) < v.width {
		return line
	}
	return line[:max(v.width-1, 0)]
}

// percent is how far a counted stage is, 0-100; an estimated total that is reached shows
// 99 until the stage ends.
func percent(e imagebuilder.Event) int {
	if e.Total <= 0 {
		return 0
	}
	p := int(e.Done * 100 / e.Total)
	if p >= 100 {
		p = 100
		if e.Estimated {
			p = 99
		}
	}
	return p
}

// timeLeft estimates the rest of a stage from its pace so far; "" until there is a pace.
func timeLeft(e imagebuilder.Event, elapsed time.Duration) string {
	if e.Done <= 0 || elapsed < 2*time.Second {
		return ""
	}
	if e.Done >= e.Total {
		return "almost done"
	}
	left := time.Duration(float64(elapsed) * float64(e.Total-e.Done) / float64(e.Done))
	return "about " + roundDuration(left) + " left"
}

// roundDuration prints d to the second (to the tenth under 10 s).
func roundDuration(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// amount prints n units: bytes in MiB, anything else as a count.
func amount(n int64, unit string) string {
	if unit == "bytes" {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d %s", n, unit)
}

// amountNumber is amount without the unit.
func amountNumber(n int64, unit string) string {
	if unit == "bytes" {
		return fmt.Sprintf("%.1f", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d", n)
}
