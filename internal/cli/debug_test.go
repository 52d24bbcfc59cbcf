package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/persist"
)

// TestDialDebugRefusals checks what `vessel debug` says before it reaches a guest: no such
// sandbox, a sandbox without the debug console (naming the key), and a sandbox whose relay
// is gone.
func TestDialDebugRefusals(t *testing.T) {
	root := t.TempDir()
	for _, s := range []*persist.Sandbox{
		{ID: "off", Created: time.Now(), State: "running"},
		{ID: "on", Created: time.Now(), State: "running", DebugConsole: true},
	} {
		dir := filepath.Join(root, s.ID)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := persist.Save(dir, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		id, want string
		is       func(error) bool
	}{
		{"none", "sandbox none: no state under " + root, errdefs.IsNotFound},
		{"off", "agent.debug_console_enabled = true", errdefs.IsFailedPrecondition},
		{"on", "sandbox on: debug console: dial unix " + filepath.Join(root, "on", persist.DebugSocketName), func(error) bool { return true }},
	} {
		_, closer, err := dialDebug(root, tc.id)
		if err == nil {
			closer.Close()
			t.Errorf("dialDebug %s: no error", tc.id)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !tc.is(err) {
			t.Errorf("dialDebug %s: got %v, want %q", tc.id, err, tc.want)
		}
	}
}
