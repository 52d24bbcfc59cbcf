package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"

	"github.com/vessel-containers/vessel/internal/shimproto"
)

// metadataOn reports whether the task API call's request metadata sets key
// (shimproto.Metadata*) on.
func metadataOn(ctx context.Context, key string) bool {
	v, _ := ttrpc.GetMetadataValue(ctx, key)
	return v == shimproto.MetadataOn
}

// initLog answers shimproto.InitLogPath: what libcontainer logged in the guest while it set
// up the process named by the query parameters, as a JSON array of shimproto.LogEntry.
func (s *service) initLog() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		id, execID := q.Get(shimproto.ContainerQuery), q.Get(shimproto.ExecQuery)
		c, creating, err := s.lookup(id)
		if err != nil {
			httpError(w, err)
			return
		}
		if creating {
			httpError(w, fmt.Errorf("init log of %s: the container is being created: %w", id, errdefs.ErrFailedPrecondition))
			return
		}
		entries, err := c.ctr.TakeInitLog(r.Context(), execID)
		if err != nil {
			httpError(w, err)
			return
		}
		out := make([]shimproto.LogEntry, 0, len(entries))
		for _, e := range entries {
			out = append(out, shimproto.LogEntry{Time: time.Unix(0, e.GetTimeUnixNano()), Level: e.GetLevel(), Msg: e.GetMsg()})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
}
