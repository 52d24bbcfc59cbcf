package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

// FieldError is one bad value: where it came from, the key (or annotation), the value as
// written and what would have been accepted.
type FieldError struct {
	// File is the configuration file; empty for a Config built in code.
	File string
	// Key is "section.name", or the full annotation name for an annotation.
	Key string
	// Value as written: strings quoted, lists as TOML arrays.
	Value string
	// Reason says what is wrong with the value.
	Reason string
	// Allowed says what is accepted.
	Allowed string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "%s = %s: %s", e.Key, e.Value, e.Reason)
	if e.Allowed != "" {
		fmt.Fprintf(&b, " (allowed: %s)", e.Allowed)
	}
	return b.String()
}

// Validate reports every key whose value is not allowed, one error per key (joined with
// errors.Join; each is a *FieldError), and combinations of keys that do not work together.
func (c *Config) Validate() error { return c.validate("") }

func (c *Config) validate(file string) error {
	var errs []error
	root := reflect.ValueOf(c).Elem()
	defaults := reflect.ValueOf(Default()).Elem()
	for _, k := range keyTable {
		f := fieldOf(root, k)
		if err := k.checkValue(f); err != nil {
			errs = append(errs, &FieldError{
				File: file, Key: k.FullName(), Value: formatValue(f),
				Reason: err.Error(), Allowed: k.AllowedText(),
			})
			continue
		}
		if reason, allowed := k.refusal(f, fieldOf(defaults, k)); reason != "" {
			errs = append(errs, &FieldError{
				File: file, Key: k.FullName(), Value: formatValue(f), Reason: reason, Allowed: allowed,
			})
		}
	}
	for _, e := range c.crossCheck() {
		e.File = file
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// checkValue validates one key's value against the key's range, enum and check.
func (k Key) checkValue(f reflect.Value) error {
	switch f.Kind() {
	case reflect.Bool:
		return nil
	case reflect.Uint32, reflect.Uint64:
		if n := f.Uint(); n < k.Min || n > k.Max {
			return errors.New("out of range")
		}
		return nil
	case reflect.String:
		return k.checkString(f.String())
	case reflect.Slice:
		for i := 0; i < f.Len(); i++ {
			s := f.Index(i).String()
			if s == "" {
				return fmt.Errorf("element %d is empty", i)
			}
			if err := k.checkString(s); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
		return nil
	}
	return fmt.Errorf("key %s has unsupported type %s", k.FullName(), f.Type())
}

func (k Key) checkString(s string) error {
	if s == "" {
		if k.Optional {
			return nil
		}
		return errors.New("must not be empty")
	}
	if len(k.Enum) > 0 && !slices.Contains(k.Enum, s) {
		return errors.New("not a known value")
	}
	if k.check != nil {
		return k.check(s)
	}
	return nil
}

// refusal says why v, a well-formed value of k, is refused as not supported, and what
// would be accepted; "" when v is supported. def is k's built-in value, which is always
// accepted.
func (k Key) refusal(v, def reflect.Value) (reason, allowed string) {
	if k.Unsupported != "" {
		if sameValue(v, def) {
			return "", ""
		}
		return "not supported: " + k.Unsupported, "only the default, " + formatValue(def)
	}
	if v.Kind() == reflect.String {
		if r, ok := k.UnsupportedValues[v.String()]; ok {
			return "not supported: " + r, "one of " + quoteAll(k.supportedValues())
		}
	}
	return "", ""
}

// sameValue compares two values of a key, which may differ in Go type (a string and a
// hypervisor.SharedFS); nil and empty lists are the same.
func sameValue(a, b reflect.Value) bool {
	if a.Kind() != b.Kind() {
		return false
	}
	switch a.Kind() {
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Uint32, reflect.Uint64:
		return a.Uint() == b.Uint()
	case reflect.String:
		return a.String() == b.String()
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := 0; i < a.Len(); i++ {
			if a.Index(i).String() != b.Index(i).String() {
				return false
			}
		}
		return true
	}
	return false
}

// crossCheck reports combinations of keys that cannot work together.
func (c *Config) crossCheck() []*FieldError {
	h := &c.Hypervisor
	var errs []*FieldError
	bad := func(key, value, reason string) {
		errs = append(errs, &FieldError{Key: key, Value: value, Reason: reason})
	}
	if h.DefaultMaxVCPUs != 0 && h.DefaultVCPUs > h.DefaultMaxVCPUs {
		bad("hypervisor.default_vcpus", u(h.DefaultVCPUs),
			fmt.Sprintf("exceeds hypervisor.default_maxvcpus = %d", h.DefaultMaxVCPUs))
	}
	if h.DefaultMaxMemory != 0 && h.DefaultMemory > h.DefaultMaxMemory {
		bad("hypervisor.default_memory", u(h.DefaultMemory),
			fmt.Sprintf("exceeds hypervisor.default_maxmemory = %d", h.DefaultMaxMemory))
	}
	switch {
	case h.Initrd == "" && h.Image == "":
		bad("hypervisor.initrd", `""`, "one of hypervisor.initrd and hypervisor.image must be set")
	case h.Initrd != "" && h.Image != "":
		bad("hypervisor.image", strconv.Quote(h.Image), "hypervisor.initrd is set too; set only one")
	}
	if h.BlockDeviceAIO == "native" && (!h.BlockDeviceCacheSet || !h.BlockDeviceCacheDirect) {
		bad("hypervisor.block_device_aio", `"native"`, "native AIO needs O_DIRECT: set hypervisor.block_device_cache_set and block_device_cache_direct too")
	}
	if c.Factory.EnableTemplate && h.Initrd == "" {
		bad("factory.enable_template", "true", "templating needs hypervisor.initrd (an image cannot be shared)")
	}
	// A template's memory is a file that restored VMs map privately, and QEMU 7.2 cannot
	// migrate a vhost-user-fs device; a cached VM's export is a 9p directory.
	if h.SharedFS == hypervisor.SharedFSVirtioFS {
		if c.Factory.EnableTemplate {
			bad("factory.enable_template", "true", `VM templates cannot be used with hypervisor.shared_fs = "virtio-fs" (QEMU 7.2 cannot save or restore vhost-user-fs, and restored memory is not shared with virtiofsd): set one of them differently`)
		}
		if c.Factory.VMCacheNumber > 0 {
			bad("factory.vm_cache_number", u(c.Factory.VMCacheNumber), `the VM cache cannot be used with hypervisor.shared_fs = "virtio-fs" (a cached VM is booted before its sandbox's virtiofsd exists): set one of them differently`)
		}
	}
	// A template's and a cached VM's guest has the 9p device it was booted with; copy mode
	// promises a VM with no shared file system at all.
	if h.SharedFS == hypervisor.SharedFSNone {
		if c.Factory.EnableTemplate {
			bad("factory.enable_template", "true", `VM templates cannot be used with hypervisor.shared_fs = "none" (a template's VM has a 9p device; copy mode runs VMs without a shared file system): set one of them differently`)
		}
		if c.Factory.VMCacheNumber > 0 {
			bad("factory.vm_cache_number", u(c.Factory.VMCacheNumber), `the VM cache cannot be used with hypervisor.shared_fs = "none" (a cached VM has a 9p device; copy mode runs VMs without a shared file system): set one of them differently`)
		}
	}
	// QEMU's microvm machine has no hotplug: no vCPUs, memory, disks or NICs added while
	// the VM runs, so nothing that needs them can be configured with it.
	if c.IsMicroVM() {
		const why = `hypervisor.machine_type = "microvm" has no hotplug`
		if h.DefaultMaxVCPUs > h.DefaultVCPUs {
			bad("hypervisor.default_maxvcpus", u(h.DefaultMaxVCPUs), why+": set it to hypervisor.default_vcpus or 0")
		}
		if h.DefaultMaxMemory > h.DefaultMemory {
			bad("hypervisor.default_maxmemory", u(h.DefaultMaxMemory), why+": set it to hypervisor.default_memory or 0")
		}
		if c.Factory.EnableTemplate {
			bad("factory.enable_template", "true", why+" (a VM restored from a template grows by hotplug): set one of them differently")
		}
		if h.BlockDeviceDriver == string(hypervisor.BlockVirtioSCSI) {
			bad("hypervisor.block_device_driver", strconv.Quote(h.BlockDeviceDriver), why+" (disks are hot-plugged): use q35")
		}
	}
	return errs
}

func u[T uint32 | uint64](n T) string { return strconv.FormatUint(uint64(n), 10) }

// fieldOf returns the struct field of c holding key k. It panics when the table and the
// struct disagree: TestKeyTableMatchesStruct keeps them in step.
func fieldOf(root reflect.Value, k Key) reflect.Value {
	sec := fieldByTag(root, k.Section)
	if !sec.IsValid() {
		panic("config: no section " + k.Section)
	}
	f := fieldByTag(sec, k.Name)
	if !f.IsValid() {
		panic("config: no key " + k.FullName())
	}
	return f
}

func fieldByTag(v reflect.Value, tag string) reflect.Value {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("toml") == tag {
			return v.Field(i)
		}
	}
	return reflect.Value{}
}

// formatValue writes a value the way TOML would.
func formatValue(f reflect.Value) string {
	switch f.Kind() {
	case reflect.Bool:
		return strconv.FormatBool(f.Bool())
	case reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(f.Uint(), 10)
	case reflect.String:
		return strconv.Quote(f.String())
	case reflect.Slice:
		parts := make([]string, f.Len())
		for i := range parts {
			parts[i] = strconv.Quote(f.Index(i).String())
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(f.Interface())
}
