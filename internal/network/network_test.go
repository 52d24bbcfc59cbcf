package network

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseModel(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Model
		wantErr error
	}{
		{"", ModelTCFilter, nil},
		{"tcfilter", ModelTCFilter, nil},
		{"none", ModelNone, nil},
		{"macvtap", ModelMacvtap, nil},
		{"bridged", "", errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseModel(tc.in)
			if tc.wantErr != nil {
				if err == nil || !errdefs.IsNotImplemented(err) && !errdefs.IsInvalidArgument(err) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadState(dir); !errdefs.IsNotFound(err) {
		t.Fatalf("no state: got %v, want not found", err)
	}
	st := &State{NetNS: "/run/netns/x", Endpoints: []Endpoint{{Link: "eth0", LinkIndex: 2, Tap: "vsl_tap0", TapIndex: 5, LinkIngress: true}}}
	if err := saveState(dir, st); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.NetNS != st.NetNS || len(got.Endpoints) != 1 || got.Endpoints[0] != st.Endpoints[0] {
		t.Fatalf("got %+v, want %+v", got, st)
	}
	if err := os.WriteFile(filepath.Join(dir, StateName), []byte(`{"version":9}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadState(dir); !errdefs.IsNotImplemented(err) {
		t.Fatalf("newer format: got %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, StateName), []byte(`{`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadState(dir); err == nil {
		t.Fatal("corrupt state accepted")
	}
	if err := removeState(dir); err != nil {
		t.Fatal(err)
	}
	if err := removeState(dir); err != nil {
		t.Fatalf("second remove: %v", err)
	}
}

func TestTapNameFits(t *testing.T) {
	if n := tapName(999); len(n) > 15 {
		t.Fatalf("tap name %q is longer than IFNAMSIZ-1", n)
	}
}
