package harness

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vessel-containers/vessel/internal/config"
)

// loadConfig reads the configuration the benchmark runs Vessel with: file, or the built-in
// defaults when file is empty. Neither $VESSEL_CONFIG nor the host's
// /etc/vessel/configuration.toml is read, so what is installed on the host never changes
// the figures. When guestDir is set, the guest kernel and initramfs are its vmlinux and
// initramfs.img. The configuration must leave the VM factory off: the cold measures boot
// cold, and the warm measure turns the factory on in configurations of its own.
func loadConfig(file, guestDir string) (*config.Config, error) {
	cfg, _, err := config.LoadFrom(file, nil, "")
	if err != nil {
		return nil, err
	}
	if guestDir != "" {
		cfg.Hypervisor.Kernel = filepath.Join(guestDir, "vmlinux")
		cfg.Hypervisor.Initrd = filepath.Join(guestDir, "initramfs.img")
		cfg.Hypervisor.Image = ""
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("with the guest image in %s: %w", guestDir, err)
		}
	}
	if err := factoryOff(cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", describeSource(file), err)
	}
	return cfg, nil
}

// factoryOff fails when cfg has the VM factory on, naming the key that turns it on.
func factoryOff(cfg *config.Config) error {
	switch {
	case cfg.Factory.EnableTemplate:
		return fmt.Errorf("factory.enable_template = true: want the VM factory off (the warm measure turns it on itself)")
	case cfg.Factory.VMCacheNumber > 0:
		return fmt.Errorf("factory.vm_cache_number = %d: want the VM factory off (the warm measure turns it on itself)", cfg.Factory.VMCacheNumber)
	}
	return nil
}

// describeSource names a configuration file for results and errors.
func describeSource(file string) string {
	if file == "" {
		return "built-in defaults"
	}
	return file
}

// writeConfig writes cfg to path, the file a shim reads through the runtime options'
// ConfigPath (`ctr run --runtime-config-path`) and the vessel CLI through --config.
func writeConfig(cfg *config.Config, path string) error {
	var buf bytes.Buffer
	if err := cfg.Encode(&buf); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("vessel configuration: %w", err)
	}
	return nil
}
