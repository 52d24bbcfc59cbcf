//go:build linux && !(cgo && seccomp)

package libct

// seccompBuilt: built without cgo or the "seccomp" tag, libcontainer cannot apply seccomp
// filters; Create refuses specs that ask for one instead of running them unconfined.
const seccompBuilt = false
