package virtiofsd

import (
	"slices"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/idrange"
)

func TestArgs(t *testing.T) {
	base := Config{Binary: "/usr/lib/qemu/virtiofsd", Source: "/run/vessel/sandboxes/a/shared", Socket: "/s", Log: "/l"}
	for _, tc := range []struct {
		name    string
		mod     func(*Config)
		want    []string // consecutive words that must appear
		wantErr string
	}{
		{name: "defaults", mod: func(*Config) {},
			want: []string{"-f", "--fd=3", "-o", "source=/run/vessel/sandboxes/a/shared", "-o", "cache=auto", "-o", "sandbox=namespace",
				"-o", "modcaps=-mknod", "-o", "xattr", "-o", "announce_submounts", "-o", "log_level=info", "--rlimit-nofile=0"}},
		{name: "user namespace", mod: func(c *Config) { c.UserNS = &idrange.Range{Start: 1 << 20, Size: 1 << 16} },
			want: []string{"-o", "modcaps=-mknod:-setfcap"}},
		{name: "never", mod: func(c *Config) { c.Cache = CacheNever }, want: []string{"-o", "cache=none"}},
		{name: "always", mod: func(c *Config) { c.Cache = CacheAlways }, want: []string{"-o", "cache=always"}},
		{name: "metadata", mod: func(c *Config) { c.Cache = "metadata" }, wantErr: `cache mode "metadata"`},
		{name: "debug", mod: func(c *Config) { c.Debug = true }, want: []string{"-o", "log_level=debug"}},
		{name: "extra last", mod: func(c *Config) { c.ExtraArgs = []string{"--thread-pool-size=4"} },
			want: []string{"--rlimit-nofile=0", "--thread-pool-size=4"}},
		{name: "extra not an option", mod: func(c *Config) { c.ExtraArgs = []string{"-o"} }, wantErr: `extra argument "-o"`},
		{name: "comma in source", mod: func(c *Config) { c.Source = "/a,b" }, wantErr: `source "/a,b"`},
		{name: "relative source", mod: func(c *Config) { c.Source = "a" }, wantErr: `source "a"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.mod(&cfg)
			got, err := Args(cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !containsRun(got, tc.want) {
				t.Fatalf("got %q, want it to contain %q", got, tc.want)
			}
		})
	}
}

// containsRun reports whether want appears in got as consecutive words.
func containsRun(got, want []string) bool {
	for i := 0; i+len(want) <= len(got); i++ {
		if slices.Equal(got[i:i+len(want)], want) {
			return true
		}
	}
	return false
}

func TestLimitWriter(t *testing.T) {
	var b strings.Builder
	w := &limitWriter{w: &b, n: 5}
	for _, s := range []string{"abc", "defg", "hij"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := b.String(); got != "abcde" {
		t.Fatalf("got %q, want %q", got, "abcde")
	}
}

// TestDaemonRoot: the daemon's root holds its source writable, its binary when outside
// /usr, /usr and /proc, and neither the socket nor the log.
func TestDaemonRoot(t *testing.T) {
	for _, tc := range []struct {
		binary     string
		wantBinary bool
	}{
		{binary: "/usr/lib/qemu/virtiofsd"},
		{binary: "/opt/virtiofsd/bin/virtiofsd", wantBinary: true},
	} {
		t.Run(tc.binary, func(t *testing.T) {
			cfg := Config{Binary: tc.binary, Source: "/run/vessel/sandboxes/a/shared", Socket: "/run/vessel/sandboxes/a/s.sock", Log: "/run/vessel/sandboxes/a/l"}
			r := daemonRoot(cfg)
			if !slices.Equal(r.Writable, []string{cfg.Source}) {
				t.Errorf("writable %q, want only the source %q", r.Writable, cfg.Source)
			}
			if got := slices.Contains(r.ReadOnly, tc.binary); got != tc.wantBinary {
				t.Errorf("read-only %q holds the binary: %v, want %v", r.ReadOnly, got, tc.wantBinary)
			}
			if !slices.Contains(r.ReadOnly, "/usr") || !slices.Contains(r.Recursive, "/proc") {
				t.Errorf("root %+v: want /usr read-only and /proc with its submounts", r)
			}
			for _, p := range slices.Concat(r.ReadOnly, r.Recursive, r.Writable, r.Links) {
				if p == cfg.Socket || p == cfg.Log {
					t.Errorf("root %+v holds %s", r, p)
				}
			}
		})
	}
}
