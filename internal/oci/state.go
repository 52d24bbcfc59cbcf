package oci

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// StatePaused is the status runc and Vessel report for a frozen container; the runtime spec
// itself defines only creating, created, running and stopped.
const StatePaused specs.ContainerState = "paused"

// Status maps a lifecycle state name to the OCI status reported by `vessel state`:
// creating, created, running, paused, stopped. "ready" (created, not started), "pausing" and
// "exited" are accepted as their nearest OCI status.
func Status(state string) (specs.ContainerState, error) {
	switch state {
	case "creating":
		return specs.StateCreating, nil
	case "created", "ready":
		return specs.StateCreated, nil
	case "running":
		return specs.StateRunning, nil
	case "paused", "pausing":
		return StatePaused, nil
	case "stopped", "exited":
		return specs.StateStopped, nil
	}
	return "", fmt.Errorf("state %q has no OCI status (known: creating, created, ready, running, pausing, paused, stopped, exited)", state)
}

// State builds the OCI state document. Pid is reported only while the process exists
// (created, running, paused).
func State(id, bundle string, status specs.ContainerState, pid int, annotations map[string]string) specs.State {
	s := specs.State{Version: specs.Version, ID: id, Status: status, Bundle: bundle, Annotations: annotations}
	switch status {
	case specs.StateCreated, specs.StateRunning, StatePaused:
		s.Pid = pid
	}
	return s
}
