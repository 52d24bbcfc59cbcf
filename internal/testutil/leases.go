package testutil

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/vessel-containers/vessel/internal/idrange"
)

// VMMIDLeasesUnder lists the leases in the host's lease directory (idrange) whose holder is
// a directory below root, each as its path and content: a test's sandboxes leave none.
func VMMIDLeasesUnder(root string) []string {
	ents, _ := os.ReadDir(idrange.DefaultLeaseDir)
	var out []string
	for _, e := range ents {
		p := filepath.Join(idrange.DefaultLeaseDir, e.Name())
		// A lease holds its holder's identity, a space and the holder's path.
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), " "+filepath.Clean(root)+"/") {
			out = append(out, p+": "+string(b))
		}
	}
	return out
}
