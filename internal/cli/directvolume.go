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
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v2"

	"github.com/vessel-containers/vessel/internal/directvolume"
	"github.com/vessel-containers/vessel/internal/shimproto"
	"github.com/vessel-containers/vessel/internal/unixsock"
)

// shimTimeout bounds the shim's answer to `direct-volume stats` and `resize` (which waits
// for QEMU and the guest's online resize).
const shimTimeout = 60 * time.Second

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
				Usage: "grow a volume's disk in the pod's VM and its ext4 file system: --volume-path PATH --size BYTES",
				Description: `The sandbox that uses the volume grows the disk in the VM (QEMU block_resize) and the
guest grows the mounted ext4 file system online. An image file is extended to SIZE by QEMU;
a block device must have been grown to at least SIZE on the host first. SIZE is in bytes,
a multiple of 512, and not smaller than the disk: volumes do not shrink.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "volume-path", Required: true, Usage: "the volume's path on the host"},
					&cli.Uint64Flag{Name: "size", Required: true, Usage: "the new size in bytes (a multiple of 512)"},
					sandboxRootFlag,
				},
				Action: func(c *cli.Context) error {
					vol, size := c.String("volume-path"), c.Uint64("size")
					if err := checkResizeSize(vol, size); err != nil {
						return err
					}
					root, err := volumeRoot(c)
					if err != nil {
						return err
					}
					sbRoot, err := sandboxRoot(c)
					if err != nil {
						return err
					}
					q := url.Values{shimproto.DirectVolumeSizeQuery: {strconv.FormatUint(size, 10)}}
					_, err = askShim(c.Context, "resize", root, sbRoot, vol, http.MethodPost, shimproto.DirectVolumeResizePath, q)
					return err
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
	root, err := stateRoot(c)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "direct-volumes"), nil
}

// checkResizeSize refuses a resize to size bytes of volume that no disk can take: zero,
// or not a multiple of 512.
func checkResizeSize(volume string, size uint64) error {
	if size == 0 || size%512 != 0 {
		return fmt.Errorf("direct-volume resize %s: --size %d is not a positive multiple of 512 bytes: %w", volume, size, errdefs.ErrInvalidArgument)
	}
	return nil
}

// volumeStats asks the shim of the sandbox that holds volume (its metrics socket under
// sbRoot) for the usage of the volume's file system, and returns the JSON it answers.
func volumeStats(ctx context.Context, root, sbRoot, volume string) ([]byte, error) {
	return askShim(ctx, "stats", root, sbRoot, volume, http.MethodGet, shimproto.DirectVolumeStatsPath, nil)
}

// askShim sends the request of direct-volume verb for volume (method at urlPath, with
// the volume path and query) to the shim of the sandbox that holds the volume, on its
// metrics socket under sbRoot, and returns the body of its answer.
func askShim(ctx context.Context, verb, root, sbRoot, volume, method, urlPath string, query url.Values) ([]byte, error) {
	id, err := directvolume.SandboxOf(root, volume)
	if err != nil {
		return nil, fmt.Errorf("direct-volume %s: %w", verb, err)
	}
	sock := filepath.Join(sbRoot, id, shimproto.MetricsSocket)
	client := &http.Client{
		Timeout: shimTimeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return unixsock.Dial(ctx, &d, sock)
		}},
	}
	q := url.Values{shimproto.DirectVolumeQuery: {volume}}
	for k, v := range query {
		q[k] = v
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://shim"+urlPath+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return nil, fmt.Errorf("direct-volume %s %s: sandbox %s does not answer at %s (has it stopped?): %w", verb, volume, id, sock, errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("direct-volume %s %s: %w", verb, volume, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("direct-volume %s %s: %w", verb, volume, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("direct-volume %s %s: sandbox %s: %s: %w", verb, volume, id, strings.TrimSpace(string(body)), errOfStatus(resp.StatusCode))
	}
	return body, nil
}

// errOfStatus is the errdefs kind of a shim's HTTP error status (shim.httpError).
func errOfStatus(code int) error {
	switch code {
	case http.StatusNotFound:
		return errdefs.ErrNotFound
	case http.StatusBadRequest:
		return errdefs.ErrInvalidArgument
	case http.StatusPreconditionFailed:
		return errdefs.ErrFailedPrecondition
	case http.StatusNotImplemented:
		return errdefs.ErrNotImplemented
	}
	return errdefs.ErrUnknown
}
