package oci

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/vessel-containers/vessel/internal/agent/policy"
	"github.com/vessel-containers/vessel/internal/agentclient"
	"github.com/vessel-containers/vessel/internal/config"
)

// Agent is the sandbox plan's part for the guest agent and the host's client of it.
type Agent struct {
	// KernelModules are loaded by the agent when the sandbox is created, in order.
	KernelModules []KernelModule
	// Timeouts bound the host's agent requests: Ready is agent.dial_timeout, Request is
	// agent.request_timeout, Create is agent.create_container_timeout. A zero field (a key
	// set to 0) means agentclient.DefaultTimeouts.
	Timeouts agentclient.Timeouts
	// Policy is the agent policy document from agent.policy_file, checked by the same
	// parser the agent uses; nil when none is configured.
	Policy []byte
	// Tracing propagates the host's trace context to the agent, which records spans under
	// it for the shim to collect and export (agent.enable_tracing).
	Tracing bool
}

// KernelModule is one agent.kernel_modules entry: the module and its parameters
// (name=value each).
type KernelModule struct {
	Name   string
	Params []string
}

// agentPlan reads the agent's part of the plan from an effective configuration. The
// configuration was validated (config.Validate checks every kernel_modules entry); the
// policy file is read and parsed here, and a missing or malformed one is an error naming it.
func agentPlan(c *config.Config) (Agent, error) {
	a := Agent{
		Timeouts: agentclient.Timeouts{
			Ready:   time.Duration(c.Agent.DialTimeout) * time.Second,
			Request: time.Duration(c.Agent.RequestTimeout) * time.Second,
			Create:  time.Duration(c.Agent.CreateContainerTimeout) * time.Second,
		},
		Tracing: c.Agent.EnableTracing,
	}
	for _, entry := range c.Agent.KernelModules {
		name, params := config.KernelModule(entry)
		if name == "" {
			continue
		}
		a.KernelModules = append(a.KernelModules, KernelModule{Name: name, Params: slices.Clone(params)})
	}
	if f := c.Agent.PolicyFile; f != "" {
		doc, err := os.ReadFile(f)
		if err != nil {
			return Agent{}, fmt.Errorf("agent.policy_file: %w", err)
		}
		if _, err := policy.Parse(doc); err != nil {
			return Agent{}, fmt.Errorf("agent.policy_file %s: %w", f, err)
		}
		a.Policy = doc
	}
	return a, nil
}
