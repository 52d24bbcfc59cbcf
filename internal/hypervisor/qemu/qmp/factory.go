package qmp

import (
	"context"
	"os"
)

// Commands for VM templates (migration to and from a file) and for growing a VM (CPU and
// memory hotplug).

// MigrateSetCapability turns one migration capability on or off.
func (c *Client) MigrateSetCapability(ctx context.Context, name string, on bool) error {
	args := map[string]any{"capabilities": []map[string]any{{"capability": name, "state": on}}}
	return c.Execute(ctx, "migrate-set-capabilities", args, nil)
}

// GetFD passes f's descriptor to QEMU under name (QMP getfd), for URIs such as
// "fd:<name>" and netdev_add's fd and vhostfd. QEMU keeps its own copy: the caller may
// close f afterwards.
func (c *Client) GetFD(ctx context.Context, name string, f *os.File) error {
	return c.execute(ctx, "getfd", map[string]any{"fdname": name}, nil, f)
}

// Migrate starts an outgoing migration to uri ("fd:<name>", "unix:<path>", ...).
// It returns at once; poll QueryMigrate for the outcome.
func (c *Client) Migrate(ctx context.Context, uri string) error {
	return c.Execute(ctx, "migrate", map[string]any{"uri": uri}, nil)
}

// MigrateIncoming starts loading a migration stream from uri into a QEMU started with
// "-incoming defer". It returns at once; the machine leaves the "inmigrate" state when the
// stream is loaded.
func (c *Client) MigrateIncoming(ctx context.Context, uri string) error {
	return c.Execute(ctx, "migrate-incoming", map[string]any{"uri": uri}, nil)
}

// MigrationInfo is the part of query-migrate's answer Vessel reads.
type MigrationInfo struct {
	// Status: "none", "setup", "active", "device", "completed", "failed", "cancelled", ...
	Status string `json:"status"`
	// ErrorDesc explains a failed migration.
	ErrorDesc string `json:"error-desc"`
}

// QueryMigrate runs query-migrate.
func (c *Client) QueryMigrate(ctx context.Context) (MigrationInfo, error) {
	var m MigrationInfo
	err := c.Execute(ctx, "query-migrate", nil, &m)
	return m, err
}

// HotpluggableCPU is one entry of query-hotpluggable-cpus.
type HotpluggableCPU struct {
	// Type is the device driver to add ("max-x86_64-cpu", ...).
	Type string `json:"type"`
	// Props are the topology properties (socket-id, core-id, thread-id, node-id) the
	// device_add for this slot needs.
	Props map[string]any `json:"props"`
	// QOMPath is set when a CPU occupies the slot.
	QOMPath string `json:"qom-path,omitempty"`
}

// QueryHotpluggableCPUs lists the CPU slots, present or not.
func (c *Client) QueryHotpluggableCPUs(ctx context.Context) ([]HotpluggableCPU, error) {
	var cpus []HotpluggableCPU
	err := c.Execute(ctx, "query-hotpluggable-cpus", nil, &cpus)
	return cpus, err
}

// DeviceAdd runs device_add with the driver, id and properties given.
func (c *Client) DeviceAdd(ctx context.Context, driver, id string, props map[string]any) error {
	args := map[string]any{"driver": driver, "id": id}
	for k, v := range props {
		args[k] = v
	}
	return c.Execute(ctx, "device_add", args, nil)
}

// ObjectAdd runs object-add for a QOM object of type qomType.
func (c *Client) ObjectAdd(ctx context.Context, qomType, id string, props map[string]any) error {
	args := map[string]any{"qom-type": qomType, "id": id}
	for k, v := range props {
		args[k] = v
	}
	return c.Execute(ctx, "object-add", args, nil)
}

// ObjectDel runs object-del.
func (c *Client) ObjectDel(ctx context.Context, id string) error {
	return c.Execute(ctx, "object-del", map[string]any{"id": id}, nil)
}

// MemoryDevice is a memory device (a DIMM) as query-memory-devices lists it.
type MemoryDevice struct {
	// Type is the kind of device: "dimm" for a pc-dimm.
	Type string `json:"type"`
	Data struct {
		// ID is the device id, empty for a device added without one.
		ID string `json:"id"`
		// Addr is the guest-physical address the device is mapped at, Size its size, both
		// in bytes.
		Addr uint64 `json:"addr"`
		Size uint64 `json:"size"`
		// Memdev is the QOM path of the memory backend object.
		Memdev string `json:"memdev"`
	} `json:"data"`
}

// QueryMemoryDevices lists the memory devices (cold- and hot-plugged DIMMs).
func (c *Client) QueryMemoryDevices(ctx context.Context) ([]MemoryDevice, error) {
	var devs []MemoryDevice
	err := c.Execute(ctx, "query-memory-devices", nil, &devs)
	return devs, err
}
