package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// TestKeyTableMatchesStruct keeps the key table and the Config struct in step: every TOML
// field has exactly one key, with a documented type that matches the Go type.
func TestKeyTableMatchesStruct(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range Keys() {
		if seen[k.FullName()] {
			t.Errorf("key %s listed twice", k.FullName())
		}
		seen[k.FullName()] = true
	}
	ct := reflect.TypeOf(Config{})
	for i := 0; i < ct.NumField(); i++ {
		sec := ct.Field(i)
		for j := 0; j < sec.Type.NumField(); j++ {
			f := sec.Type.Field(j)
			name := sec.Tag.Get("toml") + "." + f.Tag.Get("toml")
			k, ok := lookupKey(sec.Tag.Get("toml"), f.Tag.Get("toml"))
			if !ok {
				t.Errorf("field %s.%s (%s) has no key in keyTable", sec.Name, f.Name, name)
				continue
			}
			delete(seen, name)
			want := map[reflect.Kind][]string{
				reflect.Bool:   {"bool"},
				reflect.Uint32: {"uint32"},
				reflect.Uint64: {"uint64"},
				reflect.String: {"string", "path"},
				reflect.Slice:  {"[]string"},
			}[f.Type.Kind()]
			if !slices.Contains(want, k.Type) {
				t.Errorf("key %s: documented type %q, Go type %s", name, k.Type, f.Type)
			}
		}
	}
	for name := range seen {
		t.Errorf("key %s matches no Config field", name)
	}
}

func TestKeyTableConsistent(t *testing.T) {
	ann := map[string]string{}
	for _, k := range Keys() {
		if k.Annotation != "" {
			short := k.Section + "." + k.Annotation
			if prev, dup := ann[short]; dup {
				t.Errorf("annotation %s overrides both %s and %s", short, prev, k.FullName())
			}
			ann[short] = k.FullName()
		}
		if k.Globs != "" {
			g, ok := lookupKey(k.Section, k.Globs)
			if !ok || g.Type != "[]string" {
				t.Errorf("key %s: globs key %s.%s is not a list key", k.FullName(), k.Section, k.Globs)
			}
			if k.Annotation == "" {
				t.Errorf("key %s has globs but no annotation", k.FullName())
			}
		}
		if (k.Type == "uint32" || k.Type == "uint64") && k.Min > k.Max {
			t.Errorf("key %s: min %d > max %d", k.FullName(), k.Min, k.Max)
		}
		if k.Type == "uint32" && k.Max > maxUint32 {
			t.Errorf("key %s: max %d does not fit uint32", k.FullName(), k.Max)
		}
		if k.Type == "path" && k.check == nil {
			t.Errorf("path key %s has no check", k.FullName())
		}
		if k.Type == "string" && len(k.Enum) == 0 && k.check == nil {
			t.Errorf("string key %s accepts anything: give it an Enum or a check", k.FullName())
		}
		if len(k.UnsupportedValues) > 0 {
			def := strings.Trim(k.DefaultValue(), `"`)
			switch {
			case k.Unsupported != "":
				t.Errorf("key %s is unsupported and lists unsupported values too", k.FullName())
			case len(k.supportedValues()) == 0:
				t.Errorf("key %s supports none of its values: mark the key Unsupported", k.FullName())
			case k.UnsupportedValues[def] != "":
				t.Errorf("key %s: its default %q is unsupported", k.FullName(), def)
			}
			for v, reason := range k.UnsupportedValues {
				if !slices.Contains(k.Enum, v) || reason == "" {
					t.Errorf("key %s: unsupported value %q is not in its Enum or has no reason", k.FullName(), v)
				}
			}
		}
	}
}

func TestDefaultsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("built-in defaults invalid: %v", err)
	}
	d := Default()
	for _, c := range []struct {
		got, want any
		what      string
	}{
		{d.Hypervisor.Path, "/usr/bin/qemu-system-x86_64", "path"},
		{d.Hypervisor.Kernel, "/var/lib/vessel/guest/vmlinux", "kernel"},
		{d.Hypervisor.Initrd, "/var/lib/vessel/guest/initramfs.img", "initrd"},
		{d.Hypervisor.DefaultVCPUs, uint32(1), "default_vcpus"},
		{d.Hypervisor.DefaultMemory, uint32(256), "default_memory"},
		{string(d.Hypervisor.SharedFS), "virtio-9p", "shared_fs"},
		{d.Hypervisor.Msize9P, uint32(524288), "msize_9p"},
		{string(d.Hypervisor.Accelerator), "auto", "accelerator"},
		{d.Hypervisor.TBSizeMiB, uint32(0), "tb_size_mib"},
		{d.Hypervisor.VirtioFSDaemon, "/usr/lib/qemu/virtiofsd", "virtio_fs_daemon"},
		{d.Runtime.DisableGuestSeccomp, false, "disable_guest_seccomp"},
	} {
		if c.got != c.want {
			t.Errorf("default %s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

// stringSamples are accepted and refused values for keys whose check is more than an enum
// or an absolute path; list keys use them as elements.
var stringSamples = map[string]struct{ good, bad []string }{
	"hypervisor.kernel_params": {[]string{"quiet loglevel=3", "a=b,c", "consoleblank=0 initcall_debug panic_on_warn=1 my.vessel=1"}, []string{
		"bad\x01", "x\u00e9", strings.Repeat("a", maxKernelCmdline+1),
		"console=hvc0", "quiet panic=0", "init=/bin/sh", "rdinit=/x", "init", `"init=/bin/sh"`, "vessel.log=debug", "vessel.x",
	}},
	"hypervisor.machine_type":         {[]string{"q35", "pc-q35-7.2", "microvm"}, []string{"Q35", "q35,accel=kvm", "-q35"}},
	"hypervisor.machine_accelerators": {[]string{"smm=off,hpet=off", "pit=on", "kernel-irqchip=split"}, []string{"a,,b", "x y", "a,-device foo", "nosmm", "smm=off,", "memory-backend=x", "accel=kvm", "smm=off,type=pc"}},
	"hypervisor.cpu_features":         {[]string{"pmu=off", "pmu=off,vmx=off"}, []string{"pmu=off ", "a;b"}},
	"hypervisor.virtio_fs_extra_args": {[]string{"--thread-pool-size=1", "--log-level=debug"}, []string{"-o", "--shared-dir=/", "--fd=3", "--syslog", "positional"}},
	"agent.kernel_modules":            {[]string{"e1000e InterruptThrottleRate=3000,3000 EEE=1", "i915"}, []string{"bad/module", " ", "mod p;q"}},
	"runtime.experimental":            {[]string{"foo", "new_thing-2"}, []string{"Foo", "a b"}},
	"hypervisor.vmm_id_range":         {[]string{"100000-165535", "65536-1000000000"}, []string{"100000", "1000-200000", "100000-100001", "x-y", "200000-100000"}},
	"runtime.otlp_endpoint":           {[]string{"http://127.0.0.1:4318", "https://collector.example:4318/v1/traces"}, []string{"127.0.0.1:4318", "grpc://h:4317", "http://", "http://u:p@h", "http://h?x=1"}},
	"runtime.enable_annotations":      {[]string{"hypervisor\\..*", "default_vcpus", ".*"}, []string{"(", "a[", "x**"}},
	"hypervisor.valid_hypervisor_paths": {[]string{"/usr/bin/qemu-*", "/opt/[a-z]*/qemu"},
		[]string{"qemu", "/a/[", ""}},
}

// configCases gives TOML literals for k that must load and ones that must be refused.
func configCases(t *testing.T, k Key) (good, bad []string) {
	t.Helper()
	quoteAll := func(ss []string) []string {
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = TOMLString(s)
		}
		return out
	}
	sample, hasSample := stringSamples[k.FullName()]
	if !hasSample && k.check != nil && k.Type == "[]string" {
		sample, hasSample = stringSamples["hypervisor.valid_hypervisor_paths"], true // the glob lists
	}
	switch k.Type {
	case "bool":
		return []string{"true", "false"}, []string{`"true"`, "1"}
	case "uint32", "uint64":
		good = []string{strconv.FormatUint(k.Min, 10), strconv.FormatUint(k.Max, 10)}
		bad = []string{strconv.FormatUint(k.Max+1, 10), "-1", `"1"`, "1.5"}
		if k.Min > 0 {
			bad = append(bad, strconv.FormatUint(k.Min-1, 10))
		}
		return good, bad
	case "path":
		good = []string{`"/a/b"`}
		bad = []string{`"relative/path"`, `"/a/../b"`, `"/a/"`, `"/a,b"`, "1"}
		if !k.Optional {
			bad = append(bad, `""`)
		} else {
			good = append(good, `""`)
		}
		return good, bad
	case "string":
		if len(k.Enum) > 0 {
			return quoteAll(k.Enum), []string{`"bogus"`, "1", `""`}
		}
		if !hasSample {
			t.Fatalf("string key %s needs stringSamples", k.FullName())
		}
		good, bad = quoteAll(sample.good), quoteAll(sample.bad)
		if k.Optional {
			good = append(good, `""`)
		}
		return good, append(bad, "1")
	case "[]string":
		if !hasSample {
			t.Fatalf("list key %s needs stringSamples", k.FullName())
		}
		good = []string{"[]", "[" + strings.Join(quoteAll(sample.good), ", ") + "]"}
		for _, b := range sample.bad {
			bad = append(bad, "["+TOMLString(b)+"]")
		}
		return good, append(bad, `[""]`, `"notalist"`, "[1]")
	}
	t.Fatalf("key %s: unknown type %s", k.FullName(), k.Type)
	return nil, nil
}

// keyContext gives the lines a key's value needs to pass the cross-field checks.
func keyContext(k Key, v string) string {
	switch {
	case k.FullName() == "hypervisor.image" && v != `""`:
		return `initrd = ""`
	case k.FullName() == "hypervisor.initrd" && v == `""`:
		return `image = "/img"`
	case k.FullName() == "hypervisor.block_device_aio" && v == `"native"`:
		return "block_device_cache_set = true\nblock_device_cache_direct = true"
	}
	return ""
}

// refusedInFile returns the first key that doc, well-formed, sets to a value refused as not
// supported, if any.
func refusedInFile(t *testing.T, doc string) (Key, bool) {
	t.Helper()
	c := Default()
	if _, err := toml.Decode(doc, c); err != nil {
		t.Fatalf("decode %q: %v", doc, err)
	}
	for _, k := range keyTable {
		reason, _ := k.refusal(fieldOf(reflect.ValueOf(c).Elem(), k), fieldOf(reflect.ValueOf(Default()).Elem(), k))
		if reason != "" {
			return k, true
		}
	}
	return Key{}, false
}

// TestEveryKey loads a valid and an out-of-range (or malformed) value for every key.
func TestEveryKey(t *testing.T) {
	for _, k := range Keys() {
		good, bad := configCases(t, k)
		for _, v := range good {
			t.Run(k.FullName()+"/good/"+v, func(t *testing.T) {
				doc := fmt.Sprintf("[%s]\n%s\n%s = %s\n", k.Section, keyContext(k, v), k.Name, v)
				if k.Name == "default_vcpus" || k.Name == "default_memory" {
					doc += "default_max" + strings.TrimPrefix(k.Name, "default_") + " = 0\n"
				}
				_, err := Parse([]byte(doc), "test.toml")
				if rk, refused := refusedInFile(t, doc); refused {
					wantFileUnsupported(t, err, rk, "test.toml")
					return
				}
				if err != nil {
					t.Fatalf("%s = %s refused: %v", k.FullName(), v, err)
				}
			})
		}
		for _, v := range bad {
			t.Run(k.FullName()+"/bad/"+v, func(t *testing.T) {
				doc := fmt.Sprintf("[%s]\n%s\n%s = %s\n", k.Section, keyContext(k, v), k.Name, v)
				_, err := Parse([]byte(doc), "test.toml")
				if err == nil {
					t.Fatalf("%s = %s accepted", k.FullName(), v)
				}
				msg := err.Error()
				if !strings.Contains(msg, "test.toml") || !strings.Contains(msg, k.FullName()) {
					t.Errorf("error does not name the file and key %s: %v", k.FullName(), err)
				}
				var fe *FieldError
				if errors.As(err, &fe) && (fe.Key != k.FullName() || fe.Reason == "") {
					t.Errorf("field error for %q with reason %q, want key %s", fe.Key, fe.Reason, k.FullName())
				}
			})
		}
	}
}

func TestCrossFieldChecks(t *testing.T) {
	for _, tc := range []struct {
		name, doc, key string
	}{
		{"vcpus above max", "[hypervisor]\ndefault_vcpus = 4\ndefault_maxvcpus = 2", "hypervisor.default_vcpus"},
		{"memory above max", "[hypervisor]\ndefault_memory = 512\ndefault_maxmemory = 256", "hypervisor.default_memory"},
		{"no initrd nor image", "[hypervisor]\ninitrd = \"\"", "hypervisor.initrd"},
		{"initrd and image", "[hypervisor]\nimage = \"/img\"", "hypervisor.image"},
		{"template with image", "[hypervisor]\ninitrd = \"\"\nimage = \"/img\"\n[factory]\nenable_template = true", "factory.enable_template"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "x.toml")
			if fe := findFieldError(err, tc.key); fe == nil || fe.File != "x.toml" {
				t.Fatalf("got %v, want a field error for %s in x.toml", err, tc.key)
			}
		})
	}
}

// findFieldError is the field error for key among the errors joined in err, or nil.
func findFieldError(err error, key string) *FieldError {
	errs := []error{err}
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		errs = joined.Unwrap()
	}
	for _, e := range errs {
		var fe *FieldError
		if errors.As(e, &fe) && fe.Key == key {
			return fe
		}
	}
	return nil
}

// wantFileUnsupported fails unless err has a field error from file saying that key k is not
// supported, with its reason.
func wantFileUnsupported(t *testing.T, err error, k Key, file string) {
	t.Helper()
	fe := findFieldError(err, k.FullName())
	if fe == nil {
		t.Fatalf("got %v, want a field error for %s", err, k.FullName())
	}
	if fe.File != file || !strings.HasPrefix(fe.Reason, "not supported: ") || fe.Allowed == "" {
		t.Errorf("field error %+v: want file %s, a reason starting \"not supported: \" and what is allowed", fe, file)
	}
	if k.Unsupported != "" && fe.Reason != "not supported: "+k.Unsupported {
		t.Errorf("reason %q does not give the key's: %q", fe.Reason, k.Unsupported)
	}
}

// TestOneErrorPerField: every bad key is reported, not just the first.
func TestOneErrorPerField(t *testing.T) {
	doc := "[hypervisor]\ndefault_vcpus = 0\nmsize_9p = 1\nshared_fs = \"nfs\"\n[agent]\ndial_timeout = 0\n"
	_, err := Parse([]byte(doc), "/etc/vessel/configuration.toml")
	if err == nil {
		t.Fatal("accepted")
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("not a joined error: %v", err)
	}
	var keys []string
	for _, e := range joined.Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("not a field error: %v", e)
		}
		keys = append(keys, fe.Key)
	}
	want := []string{"hypervisor.default_vcpus", "hypervisor.shared_fs", "hypervisor.msize_9p", "agent.dial_timeout"}
	if !slices.Equal(keys, want) {
		t.Fatalf("errors for %v, want %v", keys, want)
	}
	const line = `/etc/vessel/configuration.toml: hypervisor.default_vcpus = 0: out of range (allowed: 1 to 288)`
	if got := joined.Unwrap()[0].Error(); got != line {
		t.Errorf("message\n got %s\nwant %s", got, line)
	}
}

func TestCloneIsDeep(t *testing.T) {
	a := Default()
	b := a.Clone()
	b.Hypervisor.ValidHypervisorPaths[0] = "/changed"
	b.Runtime.EnableAnnotations = append(b.Runtime.EnableAnnotations, "x")
	if a.Hypervisor.ValidHypervisorPaths[0] == "/changed" || len(a.Runtime.EnableAnnotations) != 0 {
		t.Fatal("Clone shares lists with the original")
	}
}

func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		name        string
		vcpus, maxv uint32
		mem, maxm   uint32
		host        Host
		want        Limits
	}{
		{"max 0 is host", 1, 0, 256, 0, Host{CPUs: 4, MemoryMiB: 8192}, Limits{1, 4, 256, 8192}},
		{"max above host is host", 1, 16, 256, 100000, Host{CPUs: 2, MemoryMiB: 4096}, Limits{1, 2, 256, 4096}},
		{"default above max lowered", 8, 0, 256, 0, Host{CPUs: 2, MemoryMiB: 128}, Limits{2, 2, 128, 128}},
		{"max below host kept", 1, 2, 256, 1024, Host{CPUs: 8, MemoryMiB: 8192}, Limits{1, 2, 256, 1024}},
		{"host unknown", 2, 0, 512, 0, Host{}, Limits{2, 2, 512, 512}},
		{"huge host memory", 1, 0, 256, 0, Host{CPUs: 1, MemoryMiB: 1 << 40}, Limits{1, 1, 256, maxUint32}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Hypervisor.DefaultVCPUs, c.Hypervisor.DefaultMaxVCPUs = tc.vcpus, tc.maxv
			c.Hypervisor.DefaultMemory, c.Hypervisor.DefaultMaxMemory = tc.mem, tc.maxm
			if got := c.Limits(tc.host); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	// A microvm cannot grow: its maxima are its defaults.
	c := Default()
	c.Hypervisor.MachineType = "microvm"
	c.Hypervisor.DefaultVCPUs, c.Hypervisor.DefaultMemory = 1, 256
	if got, want := c.Limits(Host{CPUs: 4, MemoryMiB: 8192}), (Limits{1, 1, 256, 256}); got != want {
		t.Fatalf("microvm: got %+v, want %+v", got, want)
	}
}

// TestUnsupportedInFile: a file setting an unsupported key, or an unsupported value, to
// anything but the default is refused with one error naming the file, the key and why;
// Validate refuses the same in a Config built in code.
func TestUnsupportedInFile(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"driver not built", "[hypervisor]\ndriver = \"firecracker\"",
			`x.toml: hypervisor.driver = "firecracker": not supported: driver firecracker is not built into this Vessel (allowed: one of "qemu")`},
		{"virtio-fs with templates", "[hypervisor]\nshared_fs = \"virtio-fs\"\n[factory]\nenable_template = true",
			`x.toml: factory.enable_template = true: VM templates cannot be used with hypervisor.shared_fs = "virtio-fs"`},
		{"virtio-fs with the vm cache", "[hypervisor]\nshared_fs = \"virtio-fs\"\n[factory]\nvm_cache_number = 2",
			`x.toml: factory.vm_cache_number = 2: the VM cache cannot be used with hypervisor.shared_fs = "virtio-fs"`},
		{"vmm id range among host ids", "[hypervisor]\nvmm_id_range = \"1000-100000\"",
			`x.toml: hypervisor.vmm_id_range = "1000-100000": "1000-100000": starts below 65536`},
		{"DAX window", "[hypervisor]\nvirtio_fs_cache_size = 1024",
			`x.toml: hypervisor.virtio_fs_cache_size = 1024: not supported: the virtio-fs DAX window needs vhost-user-fs-pci cache-size, which QEMU 7.2 (Debian 12) does not have (allowed: only the default, 0)`},
		{"copy mode with templates", "[hypervisor]\nshared_fs = \"none\"\n[factory]\nenable_template = true",
			`x.toml: factory.enable_template = true: VM templates cannot be used with hypervisor.shared_fs = "none"`},
		{"copy mode with the vm cache", "[hypervisor]\nshared_fs = \"none\"\n[factory]\nvm_cache_number = 1",
			`x.toml: factory.vm_cache_number = 1: the VM cache cannot be used with hypervisor.shared_fs = "none"`},
		{"copy sync mode", "[hypervisor]\ncopy_sync = \"some\"",
			`x.toml: hypervisor.copy_sync = "some"`},
		{"bool", "[hypervisor]\nenable_hugepages = true",
			`x.toml: hypervisor.enable_hugepages = true: not supported: backing guest memory with the host's huge pages is not built (hugetlbfs volumes in containers work without it: the guest reserves huge pages of its own) (allowed: only the default, false)`},
		{"list", "[runtime]\nexperimental = [\"x\"]",
			`x.toml: runtime.experimental = ["x"]: not supported: this Vessel has no experimental features (allowed: only the default, [])`},
		{"path", "[hypervisor]\nimage = \"/var/lib/vessel/guest/x.img\"\ninitrd = \"\"",
			`x.toml: hypervisor.image = "/var/lib/vessel/guest/x.img": not supported: guest disk images are not built yet`},
		{"enum", "[hypervisor]\nhot_plug_vfio = \"root-port\"",
			`x.toml: hypervisor.hot_plug_vfio = "root-port": not supported: VFIO device hotplug is not built yet (allowed: only the default, "no-port")`},
		{"microvm with vcpu hotplug", "[hypervisor]\nmachine_type = \"microvm\"\ndefault_maxvcpus = 2",
			`x.toml: hypervisor.default_maxvcpus = 2: hypervisor.machine_type = "microvm" has no hotplug: set it to hypervisor.default_vcpus or 0`},
		{"microvm with memory hotplug", "[hypervisor]\nmachine_type = \"microvm\"\ndefault_maxmemory = 1024",
			`x.toml: hypervisor.default_maxmemory = 1024: hypervisor.machine_type = "microvm" has no hotplug: set it to hypervisor.default_memory or 0`},
		{"microvm with templates", "[hypervisor]\nmachine_type = \"microvm\"\n[factory]\nenable_template = true",
			`x.toml: factory.enable_template = true: hypervisor.machine_type = "microvm" has no hotplug`},
		{"microvm with virtio-scsi", "[hypervisor]\nmachine_type = \"microvm\"\nblock_device_driver = \"virtio-scsi\"",
			`x.toml: hypervisor.block_device_driver = "virtio-scsi": hypervisor.machine_type = "microvm" has no hotplug`},
		{"kernel params", "[hypervisor]\nkernel_params = \"quiet panic=0\"",
			`x.toml: hypervisor.kernel_params = "quiet panic=0": parameter panic=0 is set by Vessel (panic= may not be set)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "x.toml")
			if err == nil {
				t.Fatal("accepted")
			}
			if got := err.Error(); !strings.HasPrefix(got, tc.want) || strings.Contains(got, "\n") {
				t.Fatalf("got  %s\nwant %s (one error)", got, tc.want)
			}
		})
	}

	// Defaults of unsupported keys, written out, are accepted.
	doc := "[hypervisor]\nenable_hugepages = false\nshared_fs = \"virtio-9p\"\nvirtio_fs_daemon = \"/usr/lib/qemu/virtiofsd\"\nhot_plug_vfio = \"no-port\"\nvirtio_fs_extra_args = []\n[runtime]\nexperimental = []\n"
	if _, err := Parse([]byte(doc), "x.toml"); err != nil {
		t.Fatalf("defaults of unsupported keys refused: %v", err)
	}

	c := Default()
	c.Hypervisor.Driver = "cloud-hypervisor"
	c.Hypervisor.EnableGuestSwap = true
	err := c.Validate()
	for _, key := range []string{"hypervisor.driver", "hypervisor.enable_guest_swap"} {
		if fe := findFieldError(err, key); fe == nil || !strings.HasPrefix(fe.Reason, "not supported: ") {
			t.Errorf("Validate: got %v, want %s refused as not supported", err, key)
		}
	}
}

// TestBlockKeys checks the block device keys: the ones applied load (virtio-blk and
// virtio-scsi), nvdimm is refused as not supported yet, and native AIO needs direct
// caching.
func TestBlockKeys(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want string // "" for accepted
	}{
		{"block_device_driver = \"virtio-blk\"\nblock_device_aio = \"io_uring\"", ""},
		{"block_device_cache_set = true\nblock_device_cache_direct = true\nblock_device_cache_noflush = true\nblock_device_aio = \"native\"", ""},
		{"block_device_driver = \"virtio-scsi\"", ""},
		{"block_device_driver = \"nvdimm\"", "nvdimm disks are not supported yet"},
		{"block_device_aio = \"native\"", "native AIO needs O_DIRECT"},
		{"block_device_cache_direct = true\nblock_device_aio = \"native\"", "native AIO needs O_DIRECT"},
		{"enable_iothreads = true", "not supported yet"},
		{"disable_block_device_use = true", ""},
	} {
		_, err := Parse([]byte("[hypervisor]\n"+tc.doc+"\n"), "test.toml")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q refused: %v", tc.doc, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: got %v, want an error containing %q", tc.doc, err, tc.want)
		}
	}
}

// TOMLString's output decodes back to the string it quoted.
func TestTOMLString(t *testing.T) {
	for _, s := range []string{"/etc/vessel/configuration.toml", `/a "b"\c`, "/tab\there", "/é", "nul\x00del\x7f"} {
		var v struct{ S string }
		if _, err := toml.Decode("S = "+TOMLString(s), &v); err != nil || v.S != s {
			t.Errorf("TOMLString(%q) = %s decodes to %q, %v", s, TOMLString(s), v.S, err)
		}
	}
}
