//go:build linux && !cgo

package libct

// rlimitExecBuilt: without cgo the binary has no step that sets RLIMIT_AS before the
// process's program; libcontainer sets it with the others.
const rlimitExecBuilt = false
