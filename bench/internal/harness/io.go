package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/log"

	"github.com/vessel-containers/vessel/bench/internal/report"
	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// ioBinary is the static I/O workload (bench/cmd/vesselio) that `make build` puts next to
// the shim; the io measure bind-mounts it read-only into each container at ioMountDir.
const (
	ioBinary   = "vesselio"
	ioMountDir = "/vbio"
	// ioTimeout bounds one workload run (a slow guest on a busy host included).
	ioTimeout = 10 * time.Minute
)

// ioVariant is one runtime and storage the io measure runs the workload on.
type ioVariant struct {
	name, storage string
	rt            runtimeSpec
	// dir is the workload's directory in the container; block, when set, makes it an
	// ext4 image file mounted there with the loop option (a virtio-blk disk of the VM).
	dir   string
	block bool
}

// ioVariants are runc on its rootfs (overlay on the host's file system), Vessel's rootfs
// over virtio-9p and over virtio-fs in each cache mode, and Vessel with an ext4 image
// volume that it attaches as a disk. Each Vessel variant has its configuration file in work.
func (e *env) ioVariants() ([]ioVariant, error) {
	vs := []ioVariant{{name: "runc", storage: "runc, rootfs (overlayfs on the host's file system)", rt: runcSpec, dir: "/io"}}
	write := func(name string, fs hypervisor.SharedFS, cache string) (runtimeSpec, error) {
		c := e.cfg.Clone()
		c.Hypervisor.SharedFS = fs
		if cache != "" {
			c.Hypervisor.VirtioFSCache = cache
		}
		path := filepath.Join(e.work, "io-"+name+".toml")
		if err := writeConfig(c, path); err != nil {
			return runtimeSpec{}, err
		}
		return runtimeSpec{name: name, typ: VesselRuntime, config: path}, nil
	}
	rt, err := write("vessel-9p", hypervisor.SharedFS9P, "")
	if err != nil {
		return nil, err
	}
	vs = append(vs, ioVariant{name: rt.name, storage: "Vessel, rootfs shared over virtio-9p", rt: rt, dir: "/io"})
	for _, cache := range []string{"never", "auto", "always"} {
		rt, err := write("vessel-virtio-fs-"+cache, hypervisor.SharedFSVirtioFS, cache)
		if err != nil {
			return nil, err
		}
		vs = append(vs, ioVariant{name: rt.name, storage: "Vessel, rootfs shared over virtio-fs, cache=" + cache, rt: rt, dir: "/io"})
	}
	rt, err = write("vessel-block", hypervisor.SharedFS9P, "")
	if err != nil {
		return nil, err
	}
	vs = append(vs, ioVariant{name: rt.name, storage: "Vessel, ext4 image file volume (`loop` option) attached as a virtio-blk disk", rt: rt, dir: "/data", block: true})
	return vs, nil
}

// workloadArgs is the workload's command line in the container.
func (e *env) workloadArgs(dir string) []string {
	return []string{
		ioMountDir + "/" + ioBinary, "-dir", dir,
		"-files", strconv.Itoa(e.opts.IOFiles), "-size", strconv.Itoa(e.opts.IOSizeMiB), "-rand", e.opts.IORand.String(),
	}
}

// io runs the I/O workload IORuns times in each variant, alternating the variants, each
// run in a new container (`ctr run --rm`).
func (e *env) io(ctx context.Context) error {
	vs, err := e.ioVariants()
	if err != nil {
		return err
	}
	res := &report.IO{Variants: make([]report.IOVariant, len(vs))}
	for i, v := range vs {
		res.Variants[i] = report.IOVariant{Name: v.name, Storage: v.storage}
	}
	defer func() {
		for i := range res.Variants {
			res.Variants[i].Summarize()
		}
		e.res.IO = res
	}()
	for run := range e.opts.IORuns {
		for i, v := range vs {
			r, err := e.ioRun(ctx, v, fmt.Sprintf("io-%s-%d", v.name, run))
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			res.Variants[i].Runs = append(res.Variants[i].Runs, r)
			log.G(ctx).Infof("io: %s run %d/%d: create %.0f/s, seq write %.0f MiB/s, seq read %.0f MiB/s, rand write %.0f IOPS, rand read %.0f IOPS",
				v.name, run+1, e.opts.IORuns, r.CreatePerSec, r.SeqWriteMiBs, r.SeqReadMiBs, r.RandWriteIOPS, r.RandReadIOPS)
		}
	}
	return nil
}

// ioRun runs the workload once in variant v.
func (e *env) ioRun(ctx context.Context, v ioVariant, id string) (report.IORun, error) {
	flags := []string{"--mount", "type=bind,src=" + e.opts.ShimDir + ",dst=" + ioMountDir + ",options=rbind:ro"}
	if v.block {
		img := filepath.Join(e.work, id+".ext4")
		if err := makeExt4(ctx, img, blockImageMiB(e.opts.IOSizeMiB)); err != nil {
			return report.IORun{}, err
		}
		defer os.Remove(img)
		flags = append(flags, "--mount", "type=ext4,src="+img+",dst="+v.dir+",options=loop:rw")
	}
	ctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	cmd := e.ctd.CtrCmd(ctx, e.runArgsWith(v.rt, "--rm", id, flags, e.workloadArgs(v.dir)...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return report.IORun{}, fmt.Errorf("ctr run %s: %w: %s %s", id, err, strings.TrimSpace(stdout.String()), strings.TrimSpace(stderr.String()))
	}
	return report.ParseIORun(stdout.String())
}

// blockImageMiB is the size of the block variant's image: room for the workload's file,
// its small files and ext4's own metadata.
func blockImageMiB(sizeMiB int) int {
	return max(2*sizeMiB+64, 128)
}

// makeExt4 makes a sparse file of sizeMiB at path and formats it ext4.
func makeExt4(ctx context.Context, path string, sizeMiB int) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("block image: %w", err)
	}
	err = f.Truncate(int64(sizeMiB) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("block image: %w", err)
	}
	if out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", path).CombinedOutput(); err != nil {
		os.Remove(path)
		return fmt.Errorf("mkfs.ext4 %s: %w: %s", path, err, bytes.TrimSpace(out))
	}
	return nil
}

// ioPreflight checks what the io measure needs.
func ioPreflight(opts Options) error {
	if _, err := os.Stat(filepath.Join(opts.ShimDir, ioBinary)); err != nil {
		return fmt.Errorf("the io measure's workload is missing (make build): %w", err)
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return errors.New("the io measure needs mkfs.ext4 (apt-get install e2fsprogs)")
	}
	return nil
}
