package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/imagebuilder"
)

// ImageCommand is `vessel image`, with the subcommand `build`.
func ImageCommand() *cli.Command {
	return &cli.Command{
		Name:        "image",
		Usage:       "manage the guest image (kernel and initramfs)",
		Subcommands: []*cli.Command{imageBuildCommand()},
	}
}

func imageBuildCommand() *cli.Command {
	return &cli.Command{
		Name:      "build",
		Usage:     "build the guest kernel and initramfs",
		ArgsUsage: " ",
		Description: `Writes into the --output directory DIR: DIR/vmlinux (DIR/vmlinuz with
--kernel debian), DIR/initramfs.img and DIR/manifest.json (kernel source and version, sizes,
sha256 of each file, build time). Each file is replaced atomically; the manifest is written
last.

--kernel build (the default) compiles Debian's linux-source-6.1 (apt-get install
linux-source-6.1) with the project configuration: everything the guest needs built in, no
modules, booted as an uncompressed vmlinux. The result is cached in
<--cache-dir>/kernel/<fragment hash>-<source version>/; a cache miss compiles for about
10 minutes on 2 cores, and concurrent builds wait for each other.

--kernel debian uses the newest installed Debian kernel instead (apt-get install
linux-image-cloud-amd64, or linux-image-amd64 for 9p) and puts the virtio, overlay, 9p,
virtio-fs and vsock modules it has, with their dependencies, into the initramfs along with
lib/vessel/modules.order, which the agent loads at boot.

Progress goes to standard error: on a terminal a line per stage redrawn in place, with a
bar, the percentage and the time left (the kernel's compile steps are counted against
those of the last build logged in the cache directory); otherwise a line when each stage
begins and ends.

The initramfs holds the agent as /init, a few empty directories and /dev/console and
/dev/null; --debug-console adds busybox as /bin/busybox and /bin/sh. The agent (and
busybox) must be statically linked.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "agent", Usage: "static vessel-agent binary to run as /init (default: vessel-agent next to the vessel binary)"},
			&cli.StringFlag{Name: "output", Value: imagebuilder.DefaultOutputDir, Usage: "directory to write the image to"},
			&cli.StringFlag{Name: "kernel", Value: string(imagebuilder.KernelBuild), Usage: "kernel source: build (compile linux-source-6.1, cached) or debian (installed linux-image package plus modules)"},
			&cli.BoolFlag{Name: "debug-console", Usage: "add a static busybox to the initramfs (/bin/busybox, /bin/sh)"},
			&cli.StringFlag{Name: "busybox", Value: imagebuilder.DefaultBusybox, Usage: "static busybox for --debug-console (apt-get install busybox-static)"},
			&cli.StringFlag{Name: "cache-dir", Value: imagebuilder.DefaultCacheDir, Usage: "kernel build cache"},
			&cli.IntFlag{Name: "jobs", Usage: "parallel make jobs for a kernel build (0: one per CPU)"},
			&cli.StringFlag{Name: "kernel-source", Value: imagebuilder.DefaultKernelSource, Usage: "kernel source tarball for --kernel build"},
		},
		Action: imageBuild,
	}
}

func imageBuild(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("image build takes no arguments, got %q", c.Args().Slice())
	}
	kind := imagebuilder.KernelKind(c.String("kernel"))
	if kind != imagebuilder.KernelBuild && kind != imagebuilder.KernelDebian {
		return fmt.Errorf("--kernel %q: want %q or %q", kind, imagebuilder.KernelBuild, imagebuilder.KernelDebian)
	}
	if c.Int("jobs") < 0 {
		return fmt.Errorf("--jobs %d: want 0 (one per CPU) or more", c.Int("jobs"))
	}
	agent := c.String("agent")
	if agent == "" {
		var err error
		if agent, err = defaultAgentPath(); err != nil {
			return err
		}
	}
	opts := imagebuilder.Options{
		Agent:        agent,
		OutputDir:    c.String("output"),
		Kernel:       kind,
		DebugConsole: c.Bool("debug-console"),
		Busybox:      c.String("busybox"),
		KernelOptions: imagebuilder.KernelOptions{
			CacheDir:      c.String("cache-dir"),
			Jobs:          c.Int("jobs"),
			SourceTarball: c.String("kernel-source"),
		},
	}
	progress := newProgressView(c.App.ErrWriter)
	opts.Progress = progress.report
	m, err := imagebuilder.Build(c.Context, opts)
	progress.finish(err)
	if err != nil {
		return fmt.Errorf("image build: %w", err)
	}
	return printImageSummary(c.App.Writer, opts.OutputDir, m)
}

// defaultAgentPath is vessel-agent in the directory of the running binary.
func defaultAgentPath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locate the vessel binary to find vessel-agent next to it (pass --agent): %w", err)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return filepath.Join(filepath.Dir(exe), "vessel-agent"), nil
}

func printImageSummary(w io.Writer, dir string, m *imagebuilder.Manifest) error {
	kernel := string(m.Kernel.Source) + " " + m.Kernel.Version
	if m.Kernel.Key != "" {
		kernel = string(m.Kernel.Source) + " " + m.Kernel.Key
	}
	contents := "agent"
	if len(m.Modules) > 0 {
		contents += fmt.Sprintf(", %d modules", len(m.Modules))
	}
	if m.DebugConsole {
		contents += ", busybox"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "kernel\t%s\t%s\t%s\n", filepath.Join(dir, m.Kernel.Path), mib(m.Kernel.Size), kernel)
	fmt.Fprintf(tw, "initramfs\t%s\t%s\t%s (%s)\n", filepath.Join(dir, m.Initramfs.Path), mib(m.Initramfs.Size), m.Compression, contents)
	fmt.Fprintf(tw, "manifest\t%s\n", filepath.Join(dir, imagebuilder.ManifestName))
	if len(m.MissingModules) > 0 {
		fmt.Fprintf(tw, "missing\t%v\t\toptional modules this kernel lacks\n", m.MissingModules)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print summary: %w", err)
	}
	return nil
}

func mib(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
