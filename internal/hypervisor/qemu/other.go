//go:build !linux

package qemu

import (
	"errors"
	"syscall"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/idrange"
	"github.com/vessel-containers/vessel/internal/jail"
)

// sysProcAttr: without Pdeathsig nothing kills QEMU if its owner dies; Vessel runs VMs on
// Linux only.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

var qemuUserNSCaps []jail.Cap

var errNoUserNS = errors.New("user namespaces for the VMM need Linux")

func userNSAttr(*syscall.SysProcAttr, idrange.Range, hypervisor.Accelerator) error {
	return errNoUserNS
}

func checkUserNS(cfg *hypervisor.Config) error {
	if cfg.UserNS != nil {
		return errNoUserNS
	}
	return nil
}

func jailRoot(*hypervisor.Config, string, hypervisor.Accelerator) *jail.Root { return nil }
