package jail

import (
	"os"
	"strings"
)

// ProgramRoot is the part of a Root every dynamically linked program from /usr needs,
// each path at its host path: /usr (programs, libraries, firmware) and the top-level
// links into it (merged-/usr hosts; others have /bin, /lib... as directories, bound
// read-only), the loader cache, /proc with its submounts, /dev/null and /dev/urandom;
// binary too when it is outside /usr. The caller appends the program's own paths
// (nothing below a read-only path: the entry could not make its mount point there).
func ProgramRoot(binary string) *Root {
	r := &Root{
		ReadOnly:  []string{"/usr", "/dev/null", "/dev/urandom"},
		Recursive: []string{"/proc"},
	}
	if !strings.HasPrefix(binary, "/usr/") {
		r.ReadOnly = append(r.ReadOnly, binary)
	}
	if _, err := os.Stat("/etc/ld.so.cache"); err == nil {
		r.ReadOnly = append(r.ReadOnly, "/etc/ld.so.cache")
	}
	for _, top := range []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
		st, err := os.Lstat(top)
		switch {
		case err != nil:
		case st.Mode()&os.ModeSymlink != 0:
			r.Links = append(r.Links, top)
		case st.IsDir():
			r.ReadOnly = append(r.ReadOnly, top)
		}
	}
	return r
}
