package sandbox

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vessel-containers/vessel/internal/config"
	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// ioScript times, in the guest, streaming writes and reads of a 64 MiB file and the
// creation, listing and removal of 500 small files in the volume, and prints one
// "name seconds" line each (busybox time, 10 ms resolution). The guest's page cache is
// dropped before the read, so it goes through the shared file system.
const ioScript = `set -e
t() { n=$1; shift; time -p -o /tmp/t "$@" >/dev/null 2>&1; echo "$n $(sed -n 's/^real //p' /tmp/t)"; }
t write dd if=/dev/zero of=/vol/big bs=1M count=64 conv=fsync
sync; echo 3 > /proc/sys/vm/drop_caches
t read dd if=/vol/big of=/dev/null bs=1M
t files sh -c 'mkdir /vol/m; i=0; while [ $i -lt 500 ]; do echo $i > /vol/m/f$i; i=$((i+1)); done'
sync; echo 3 > /proc/sys/vm/drop_caches
t list sh -c 'ls -lR /vol/m >/dev/null; find /vol/m -type f | wc -l'
t remove rm -r /vol/m /vol/big
`

// TestMeasureSharedFS compares 9p and virtio-fs (each cache mode) on this host: the time
// to create a sandbox and run a first container, and the guest's timings of ioScript in
// a bind volume. It only measures (results in the log, docs/shared-fs.md); run it with
// VESSEL_MEASURE_SHAREDFS=<runs>.
func TestMeasureSharedFS(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("VESSEL_MEASURE_SHAREDFS"))
	if runs <= 0 {
		t.Skip("measurement: set VESSEL_MEASURE_SHAREDFS=<runs>")
	}
	g := testutil.RequiresVM(t)
	type variant struct {
		name  string
		fs    hypervisor.SharedFS
		cache string
	}
	variants := []variant{
		{"virtio-9p", hypervisor.SharedFS9P, ""},
		{"virtio-fs cache=auto", hypervisor.SharedFSVirtioFS, "auto"},
		{"virtio-fs cache=always", hypervisor.SharedFSVirtioFS, "always"},
		{"virtio-fs cache=never", hypervisor.SharedFSVirtioFS, "never"},
	}
	results := map[string]map[string][]float64{}
	for run := 0; run < runs; run++ {
		for _, v := range variants { // interleaved, so that load changes hit every variant
			eff := config.Default()
			if v.cache != "" {
				eff.Hypervisor.VirtioFSCache = v.cache
			}
			root, err := os.MkdirTemp("", "vsm")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			begin := time.Now()
			sb, err := Create(ctx, Config{
				ID: "sb", Root: root, Effective: eff,
				VM: hypervisor.Config{Kernel: g.Kernel, Initrd: g.Initrd, VCPUs: 1, MemoryMiB: 256, SharedFS: v.fs},
			})
			if err != nil {
				cancel()
				os.RemoveAll(root)
				t.Fatalf("%s: create: %v", v.name, err)
			}
			created := time.Since(begin)
			e := &env{t: t, sb: sb, root: root}
			vol := t.TempDir()
			c := e.container("first", []string{"true"}, nil)
			if code, out, errs := e.run(c, nil); code != 0 {
				t.Fatalf("%s: first container: exit %d %s %s", v.name, code, out, errs)
			}
			first := time.Since(begin)
			c = e.container("io", []string{"sh", "-c", ioScript}, func(s *specs.Spec) {
				privilegedNoPidNS(s)
				s.Mounts = append(s.Mounts, volume("/vol", vol, "rbind", "rw"))
			})
			code, out, errs := e.run(c, nil)
			if code != 0 {
				t.Fatalf("%s: io: exit %d %s %s", v.name, code, out, errs)
			}
			r := results[v.name]
			if r == nil {
				r = map[string][]float64{}
				results[v.name] = r
			}
			r["sandbox"] = append(r["sandbox"], created.Seconds())
			r["first"] = append(r["first"], first.Seconds())
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				f := strings.Fields(l)
				if len(f) == 2 {
					if x, err := strconv.ParseFloat(f[1], 64); err == nil {
						r[f[0]] = append(r[f[0]], x)
					}
				}
			}
			if err := sb.Delete(context.Background()); err != nil {
				t.Errorf("%s: delete: %v", v.name, err)
			}
			cancel()
			os.RemoveAll(root)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "median of %d runs, seconds (min-max)\n| variant | sandbox create | + first container | write 64 MiB | read 64 MiB | create 500 files | list | remove |\n", runs)
	for _, v := range variants {
		r := results[v.name]
		fmt.Fprintf(&b, "| %s |", v.name)
		for _, k := range []string{"sandbox", "first", "write", "read", "files", "list", "remove"} {
			fmt.Fprintf(&b, " %s |", stats(r[k]))
		}
		b.WriteString("\n")
	}
	t.Logf("\n%s", b.String())
}

// stats formats the median and range of xs.
func stats(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return fmt.Sprintf("%.2f (%.2f-%.2f)", s[len(s)/2], s[0], s[len(s)-1])
}
