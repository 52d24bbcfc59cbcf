package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/directvolume"
	"github.com/vessel-containers/vessel/internal/shimproto"
)

// statsTimeout bounds the shim's answer to `direct-volume stats`.
const statsTimeout = 30 * time.Second

func directVolumeCommand() *cli.Command {
	return &cli.Command{
		Name:  "direct-volume",
		Usage: "record that a volume's host device or image file goes to the pod's VM as a disk",
		Description: `A direct-assigned volume is a volume path (the directory a container bind-mounts, e.g.
the one a Kubernetes CSI driver publishes) whose backing block device or image file is
attached to the sandbox's VM and mounted by the guest, instead of the directory being
shared as files. The records live under ROOT/direct-volumes, where the shims read them
(containerd's shims: the default root; docs/block-devices.md).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "volume-root", Usage: "directory of the records (default: ROOT/direct-volumes)"},
		},
		Subcommands: []*cli.Command{
			{
				Name:  "add",
				Usage: "record a volume: --volume-path PATH --mount-info JSON",
				Description: `--mount-info is Kata Containers' direct-volume document: {"device": "/dev/sdb",
"fstype": "ext4", "options": ["errors=remount-ro"], "volume-type": "block", "metadata": {}}.
The device is a host block device or a regular file holding the file system.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "volume-path", Required: true, Usage: "the volume's path on the host"},
					&cli.StringFlag{Name: "mount-info", Required: true, Usage: "the volume's mount information (JSON)"},
				},
				Action: func(c *cli.Context) error {
					var info directvolume.MountInfo
					dec := json.NewDecoder(strings.NewReader(c.String("mount-info")))
					dec.DisallowUnknownFields()
					if err := dec.Decode(&info); err != nil {
						return fmt.Errorf("direct-volume add: --mount-info: %w: %w", err, errdefs.ErrInvalidArgument)
					}
					root, err := volumeRoot(c)
					if err != nil {
						return err
					}
					return directvolume.Add(root, c.String("volume-path"), info)
				},
			},
			{
				Name:  "remove",
				Usage: "delete a volume's record: --volume-path PATH",
				Flags: []cli.Flag{&cli.StringFlag{Name: "volume-path", Required: true, Usage: "the volume's path on the host"}},
				Action: func(c *cli.Context) error {
					root, err := volumeRoot(c)
					if err != nil {
						return err
					}
					return directvolume.Remove(root, c.String("volume-path"))
				},
			},
			{
				Name:  "stats",
				Usage: "print the usage of a volume's file system in the guest (JSON): --volume-path PATH",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "volume-path", Required: true, Usage: "the volume's path on the host"},
					sandboxRootFlag,
				},
				Action: func(c *cli.Context) error {
					root, err := volumeRoot(c)
					if err != nil {
						return err
					}
					sbRoot, err := sandboxRoot(c)
					if err != nil {
						return err
					}
					data, err := volumeStats(c.Context, root, sbRoot, c.String("volume-path"))
					if err != nil {
						return err
					}
					_, err = os.Stdout.Write(data)
					return err
				},
			},
			{
				Name:  "resize",
				Usage: "grow a volume: not supported yet",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "volume-path", Required: true, Usage: "the volume's path on the host"},
					&cli.Uint64Flag{Name: "size", Required: true, Usage: "the new size in bytes"},
				},
				Action: func(c *cli.Context) error {
					return fmt.Errorf("direct-volume resize %s: not supported yet: growing an attached disk (QEMU block_resize) and its file system in the guest is not implemented; detach the volume (delete its containers), grow it on the host and start them again: %w",
						c.String("volume-path"), errdefs.ErrNotImplemented)
				},
			},
		},
	}
}

// volumeRoot is --volume-root, else direct-volumes under --root.
func volumeRoot(c *cli.Context) (string, error) {
	if p := c.String("volume-root"); p != "" {
		return filepath.Abs(p)
	}
	root, err := filepath.Abs(c.String("root"))
	if err != nil {
		return "", fmt.Errorf("--root: %w", err)
	}
	return filepath.Join(root, "direct-volumes"), nil
}

// volumeStats asks the shim of the sandbox that holds volume (its metrics socket under
// sbRoot) for the usage of the volume's file system, and returns the JSON it answers.
func volumeStats(ctx context.Context, root, sbRoot, volume string) ([]byte, error) {
	id, err := directvolume.SandboxOf(root, volume)
	if err != nil {
		return nil, fmt.Errorf("direct-volume stats: %w", err)
	}
	sock := filepath.Join(sbRoot, id, shimproto.MetricsSocket)
	client := &http.Client{
		Timeout: statsTimeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}
	u := "http://shim" + shimproto.DirectVolumeStatsPath + "?" + url.Values{shimproto.DirectVolumeQuery: {volume}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return nil, fmt.Errorf("direct-volume stats %s: sandbox %s does not answer at %s (has it stopped?): %w", volume, id, sock, errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("direct-volume stats %s: %w", volume, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("direct-volume stats %s: %w", volume, err)
	}
	if resp.StatusCode != http.StatusOK {
		var kind error = errdefs.ErrUnknown
		if resp.StatusCode == http.StatusNotFound {
			kind = errdefs.ErrNotFound
		}
		return nil, fmt.Errorf("direct-volume stats %s: sandbox %s: %s: %w", volume, id, strings.TrimSpace(string(body)), kind)
	}
	return body, nil
}
