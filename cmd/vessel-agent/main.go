//go:build linux

// Binary vessel-agent is the Vessel guest agent: PID 1 of the guest VM. It serves the agent
// API (api/agent/v1) to the host and runs the pod's containers with libcontainer. When
// libcontainer re-executes it as a container init, it becomes that init instead; run as the
// process of the agent's own warm-up container (agent.WarmUp), it exits at once.
package main

import (
	"os"

	"github.com/vessel-containers/vessel/internal/agent"
	"github.com/vessel-containers/vessel/internal/agent/libct"
)

func main() {
	if libct.IsInit() {
		libct.Init() // does not return
	}
	// Both, so that a kernel command-line word (the kernel passes unknown ones to init as
	// environment) cannot make the guest's init exit.
	if os.Args[0] == agent.WarmUpArgv0 && os.Getenv(agent.WarmUpEnv) == "1" {
		os.Exit(0)
	}
	agent.Main() // does not return
}
