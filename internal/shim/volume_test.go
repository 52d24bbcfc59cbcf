package shim

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/shimproto"
)

// TestVolumeResizeRequest: the resize path takes only POST, refuses a size that is not a
// number and a volume that is not recorded, each with the status the CLI maps back to its
// error kind, before the sandbox is asked.
func TestVolumeResizeRequest(t *testing.T) {
	s := &service{volRoot: t.TempDir()}
	h := s.socketAPI(nil)
	for _, tc := range []struct {
		name, method, size string
		code               int
		want               string
	}{
		{"get", http.MethodGet, "1048576", http.StatusMethodNotAllowed, "POST"},
		{"bad size", http.MethodPost, "32M", http.StatusBadRequest, `size "32M"`},
		{"unrecorded", http.MethodPost, "1048576", http.StatusNotFound, "/v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := url.Values{shimproto.DirectVolumeQuery: {"/v1"}, shimproto.DirectVolumeSizeQuery: {tc.size}}
			req := httptest.NewRequest(tc.method, shimproto.DirectVolumeResizePath+"?"+q.Encode(), nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
				t.Errorf("got %d %q, want %d with %q", rec.Code, rec.Body.String(), tc.code, tc.want)
			}
		})
	}
}
