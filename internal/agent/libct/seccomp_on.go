//go:build linux && cgo && seccomp

package libct

// seccompBuilt: libcontainer's seccomp support (libseccomp) is linked in.
const seccompBuilt = true
