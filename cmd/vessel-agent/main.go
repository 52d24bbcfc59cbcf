//go:build linux

// Binary vessel-agent is the Vessel guest agent: PID 1 of the guest VM. It serves the agent
// API (api/agent/v1) to the host and runs the pod's containers with libcontainer. When
// libcontainer re-executes it as a container init, it becomes that init instead.
package main

import (
	"github.com/vessel-containers/vessel/internal/agent"
	"github.com/vessel-containers/vessel/internal/agent/libct"
)

func main() {
	if libct.IsInit() {
		libct.Init() // does not return
	}
	agent.Main() // does not return
}
