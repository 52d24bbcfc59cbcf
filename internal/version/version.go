// Package version holds the build version of every Vessel binary.
package version

// Version is set at build time with -ldflags "-X .../internal/version.Version=...".
var Version = "dev"
