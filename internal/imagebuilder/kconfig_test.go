package imagebuilder

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestParseKconfig(t *testing.T) {
	got, err := ParseKconfig([]byte(`# comment
CONFIG_A=y

# CONFIG_B is not set
CONFIG_C="-vessel"
#   spaced comment with CONFIG_D=y inside
CONFIG_E=64
CONFIG_A=m
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []KconfigOption{
		{Name: "CONFIG_A", Value: "m", Line: 8},
		{Name: "CONFIG_B", Value: "n", Line: 4},
		{Name: "CONFIG_C", Value: `"-vessel"`, Line: 5},
		{Name: "CONFIG_E", Value: "64", Line: 7},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d options %v, want %v", len(got), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("option %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	for _, bad := range []string{"CONFIG_A", "FOO=y", "CONFIG_A="} {
		if _, err := ParseKconfig([]byte("CONFIG_OK=y\n" + bad + "\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("ParseKconfig(%q) error = %v, want one naming line 2", bad, err)
		}
	}
}

func TestVerifyConfig(t *testing.T) {
	config := `CONFIG_64BIT=y
CONFIG_LOCALVERSION="-vessel"
CONFIG_NR_CPUS=64
CONFIG_MOD=m
# CONFIG_USELIB is not set
# CONFIG_PCI is not set
CONFIG_HEX=0x40
`
	tests := []struct {
		name     string
		fragment string
		want     []string // substrings of the error; none means success
	}{
		{name: "all landed", fragment: "CONFIG_64BIT=y\nCONFIG_LOCALVERSION=\"-vessel\"\nCONFIG_NR_CPUS=64\n"},
		{name: "n satisfied by not set", fragment: "CONFIG_USELIB=n\n"},
		{name: "n satisfied by absent", fragment: "# CONFIG_ABSENT is not set\nCONFIG_ABSENT2=n\n"},
		{name: "numbers compare by value", fragment: "CONFIG_HEX=64\nCONFIG_NR_CPUS=0x40\n"},
		{
			name:     "unset",
			fragment: "CONFIG_VIRTIO_FS=y\n",
			want:     []string{"CONFIG_VIRTIO_FS: want y, got unset (a dependency is missing)"},
		},
		{
			name:     "not set",
			fragment: "CONFIG_PCI=y\n",
			want:     []string{"CONFIG_PCI: want y, got n (a dependency is missing"},
		},
		{name: "module instead of built in", fragment: "CONFIG_MOD=y\n", want: []string{"CONFIG_MOD: want y, got m"}},
		{name: "wrong number", fragment: "CONFIG_NR_CPUS=32\n", want: []string{"CONFIG_NR_CPUS: want 32, got 64"}},
		{name: "wrong string", fragment: "CONFIG_LOCALVERSION=\"-x\"\n", want: []string{`want "-x", got "-vessel"`}},
		{name: "want n got y", fragment: "CONFIG_64BIT=n\n", want: []string{"CONFIG_64BIT: want n, got y"}},
		{
			name:     "every problem listed",
			fragment: "CONFIG_A=y\nCONFIG_64BIT=y\nCONFIG_B=y\n",
			want:     []string{"2 kernel config option(s)", "CONFIG_A: want y, got unset", "CONFIG_B: want y, got unset"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyConfig([]byte(tt.fragment), []byte(config))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("VerifyConfig: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("VerifyConfig succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestProjectFragmentLanded checks the embedded fragment against a real merged .config when
// one is on this host (the cached kernel's, or a manual build tree's).
func TestProjectFragmentLanded(t *testing.T) {
	frag := KernelFragment()
	if _, err := ParseKconfig(frag); err != nil {
		t.Fatalf("embedded fragment does not parse: %v", err)
	}
	candidates, _ := filepath.Glob(filepath.Join(DefaultCacheDir, "kernel", KernelCacheKey(frag, "*"), "config"))
	candidates = append(candidates, "/var/tmp/kbuild/linux-source-6.1/.config")
	for _, c := range candidates {
		config, err := os.ReadFile(c)
		if err != nil {
			continue
		}
		if err := VerifyConfig(frag, config); err != nil {
			t.Fatalf("fragment vs %s: %v", c, err)
		}
		t.Logf("every fragment option is in %s", c)
		return
	}
	t.Skip("no merged kernel .config on this host")
}

func TestKernelCacheKey(t *testing.T) {
	frag := []byte("CONFIG_X=y\n")
	sum := sha256.Sum256(frag)
	if got, want := KernelCacheKey(frag, "6.1.192-2"), hex.EncodeToString(sum[:])[:12]+"-6.1.192-2"; got != want {
		t.Errorf("KernelCacheKey = %q, want %q", got, want)
	}
	// Pinned so that an accidental change of the hashing is noticed.
	if got, want := KernelCacheKey(frag, "1"), "1f7630d899dc-1"; got != want {
		t.Errorf("KernelCacheKey = %q, want %q", got, want)
	}
	key := KernelCacheKey(KernelFragment(), "6.1.192-2")
	if !regexp.MustCompile(`^[0-9a-f]{12}-6\.1\.192-2$`).MatchString(key) {
		t.Errorf("project key %q is not <12 hex>-<version>", key)
	}
	if got, want := KernelCachePath("/c", key), "/c/kernel/"+key+"/vmlinux"; got != want {
		t.Errorf("KernelCachePath = %q, want %q", got, want)
	}
}
