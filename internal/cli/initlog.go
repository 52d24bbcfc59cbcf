package cli

import (
	"context"
	"net/url"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/sirupsen/logrus"

	"github.com/vessel-containers/vessel/internal/shimproto"
)

// withMetadata returns ctx whose task API calls carry the request metadata key
// (shimproto.Metadata*) set on, besides what ctx carries already.
func withMetadata(ctx context.Context, key string) context.Context {
	md, ok := ttrpc.GetMetadata(ctx)
	if ok {
		md = md.Clone()
	} else {
		md = ttrpc.MD{}
	}
	md.Set(key, shimproto.MetadataOn)
	return ttrpc.WithMetadata(ctx, md)
}

// withInitLog returns ctx for the task API call that sets a process up (Create, Exec):
// with --debug it asks the guest to record libcontainer's debug log of the setup, as runc
// --debug runs its "runc init" with debug logging. relayInitLog then shows it.
func (r *ociRuntime) withInitLog(ctx context.Context) context.Context {
	if !r.debug {
		return ctx
	}
	return withMetadata(ctx, shimproto.MetadataInitLog)
}

// relayInitLog logs, with --debug, what libcontainer logged in the guest while it set up
// the process (execID empty: the container's init) of container id in sandbox sandboxID:
// the lines of nsexec, "runc init" and libcontainer itself, at their levels, through the
// CLI's logger (stderr or --log, in --log-format), as runc forwards those of its own
// "runc init". A log that cannot be had is a warning.
func (r *ociRuntime) relayInitLog(ctx context.Context, sandboxID, id, execID string) {
	if !r.debug {
		return
	}
	var entries []shimproto.LogEntry
	q := url.Values{shimproto.ContainerQuery: {id}, shimproto.ExecQuery: {execID}}
	if err := r.askShim(ctx, sandboxID, shimproto.InitLogPath, q, &entries); err != nil {
		l := log.G(ctx).WithError(err).WithField("container", id)
		if errdefs.IsNotFound(err) {
			// The setup did not reach the guest's libcontainer.
			l.Debug("no libcontainer log in the guest")
			return
		}
		l.Warn("libcontainer's log in the guest")
		return
	}
	l := log.G(ctx).WithField("source", "guest")
	for _, e := range entries {
		lvl, err := logrus.ParseLevel(e.Level)
		if err != nil || lvl < logrus.ErrorLevel {
			// Unknown, and panic and fatal (which would end this process): as errors.
			lvl = logrus.ErrorLevel
		}
		l.WithTime(e.Time).Log(lvl, e.Msg)
	}
}
