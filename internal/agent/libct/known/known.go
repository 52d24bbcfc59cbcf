// Package known lists what the guest's libcontainer recognizes in a container's spec: the
// mount options, namespaces, capabilities and seccomp names that `runc features` prints
// for the same libcontainer. It is a leaf of internal/agent/libct, so the shim can describe
// the guest without linking the rest of libcontainer.
package known

import (
	"github.com/opencontainers/runc/libcontainer/capabilities"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
)

// MountOptions are the mount options libcontainer applies, sorted.
func MountOptions() []string { return specconv.KnownMountOptions() }

// Namespaces are the namespace types libcontainer creates or joins, sorted.
func Namespaces() []string { return specconv.KnownNamespaces() }

// Capabilities are the capability names libcontainer knows.
func Capabilities() []string { return capabilities.KnownCapabilities() }

// SeccompActions, SeccompOperators, SeccompArchs and SeccompFlags are the seccomp names
// libcontainer translates, sorted.
func SeccompActions() []string   { return seccomp.KnownActions() }
func SeccompOperators() []string { return seccomp.KnownOperators() }
func SeccompArchs() []string     { return seccomp.KnownArchs() }
func SeccompFlags() []string     { return seccomp.KnownFlags() }
