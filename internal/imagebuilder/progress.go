package imagebuilder

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// Event is one report of a build's progress. An event with a new Stage begins that stage
// (the previous one is then done); later events of the same stage count its work.
type Event struct {
	// Stage names what runs: "kernel: extract source", "kernel: make vmlinux",
	// "initramfs", ...
	Stage string
	// Done and Total count the stage's work in Unit; Total 0 means it is not counted.
	Done, Total int64
	// Unit is what Done and Total count ("bytes", "objects").
	Unit string
	// Estimated marks a Total that is an estimate: Done may pass it.
	Estimated bool
}

// ProgressFunc receives a build's events. It may be called from several goroutines, one
// at a time, and must not block for long: the build waits for it.
type ProgressFunc func(Event)

// report calls f, when set; it is safe on a nil ProgressFunc.
func (f ProgressFunc) report(e Event) {
	if f != nil {
		f(e)
	}
}

// stage reports the start of a stage.
func (f ProgressFunc) stage(name string) { f.report(Event{Stage: name}) }

// DefaultKernelSteps is the number of steps (kbuild's quiet lines: CC, LD, AR, GEN, ...)
// that `make vmlinux` printed for the project kernel configuration over linux-source 6.1.
// It is the estimate of a first build; later builds use the count of the last one logged
// in the cache (kernelStepEstimate).
const DefaultKernelSteps = 2152

// kbuildStep matches a line of kbuild's quiet output: two spaces, a command tag in capitals
// and its target, as in "  CC      kernel/fork.o".
var kbuildStep = regexp.MustCompile(`^  [A-Z][A-Z0-9_-]*\s+\S`)

// makeVmlinuxMarker opens the `make vmlinux` section of a build log (kbuild.run writes it).
const makeVmlinuxMarker = "==> make vmlinux\n"

// countKbuildSteps counts the kbuild step lines of the `make vmlinux` section of a build
// log, 0 when it has none.
func countKbuildSteps(log []byte) int64 {
	i := bytes.LastIndex(log, []byte(makeVmlinuxMarker))
	if i < 0 {
		return 0
	}
	var n int64
	sc := bufio.NewScanner(bytes.NewReader(log[i+len(makeVmlinuxMarker):]))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "==> ") {
			break
		}
		if kbuildStep.MatchString(line) {
			n++
		}
	}
	return n
}

// kernelStepEstimate is how many steps a `make vmlinux` is expected to print: the count of
// the newest build log in kdir whose vmlinux step completed, or DefaultKernelSteps.
func kernelStepEstimate(kdir string) int64 {
	logs, _ := filepath.Glob(filepath.Join(kdir, "*.build.log"))
	var (
		best    int64
		newest  int64
		bestSet bool
	)
	for _, p := range logs {
		fi, err := os.Stat(p)
		if err != nil || (bestSet && fi.ModTime().UnixNano() <= newest) {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(data, []byte("==> make vmlinux done")) {
			continue
		}
		if n := countKbuildSteps(data); n > 0 {
			best, newest, bestSet = n, fi.ModTime().UnixNano(), true
		}
	}
	if !bestSet {
		return DefaultKernelSteps
	}
	return best
}

// lineWriter calls fn with each complete line written to it (without the newline).
type lineWriter struct {
	fn func(line string)
	// buf holds a line not yet ended.
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			break
		}
		if len(w.buf) > 0 {
			w.buf = append(w.buf, p[:i]...)
			w.fn(string(w.buf))
			w.buf = w.buf[:0]
		} else {
			w.fn(string(p[:i]))
		}
		p = p[i+1:]
	}
	if len(w.buf)+len(p) <= 64*1024 { // a longer line is not a kbuild step: drop it
		w.buf = append(w.buf, p...)
	}
	return n, nil
}

// countingReader reports the bytes read through it.
type countingReader struct {
	r    io.Reader
	n    int64
	each func(n int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if n > 0 {
		c.each(c.n)
	}
	return n, err
}

// countingWriter reports the bytes written through it.
type countingWriter struct {
	w    io.Writer
	n    int64
	each func(n int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if n > 0 {
		c.each(c.n)
	}
	return n, err
}

// stepCounter counts kbuild step lines and reports them as the progress of a stage.
type stepCounter struct {
	progress ProgressFunc
	stage    string
	total    int64

	// mu guards done (make's output is read by one goroutine, but be safe against two).
	mu   sync.Mutex
	done int64
}

func (s *stepCounter) line(line string) {
	if !kbuildStep.MatchString(line) {
		return
	}
	s.mu.Lock()
	s.done++
	done := s.done
	s.mu.Unlock()
	s.progress.report(Event{Stage: s.stage, Done: done, Total: s.total, Unit: "objects", Estimated: true})
}
