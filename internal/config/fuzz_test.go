package config

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary files to the loader: it must not panic, and whatever it accepts
// must be valid and survive printing and reloading unchanged.
func FuzzParse(f *testing.F) {
	var def bytes.Buffer
	if err := Default().Encode(&def); err != nil {
		f.Fatal(err)
	}
	f.Add(def.Bytes())
	f.Add([]byte(""))
	f.Add([]byte("[hypervisor]\ndefault_vcpus = 2\nkernel_params = \"quiet\"\n"))
	f.Add([]byte("[hypervisor.qemu]\npath = \"/x\"\n"))
	f.Add([]byte("[runtime]\nenable_annotations = [\"hypervisor\\\\..*\"]\n"))
	f.Add([]byte("[agent]\nkernel_modules = [\"e1000e EEE=1\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.toml")
		if err != nil {
			if c != nil {
				t.Fatal("config returned with an error")
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted an invalid config: %v", err)
		}
		var b bytes.Buffer
		if err := c.Encode(&b); err != nil {
			t.Fatalf("encode: %v", err)
		}
		back, err := Parse(b.Bytes(), "encoded")
		if err != nil {
			t.Fatalf("printed config does not load: %v\n%s", err, b.String())
		}
		if !reflect.DeepEqual(c, back) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, back)
		}
	})
}

// FuzzAnnotations feeds arbitrary annotation names and values: no panic, the receiver is
// never changed, and an accepted result is valid and within the host.
func FuzzAnnotations(f *testing.F) {
	for _, k := range Keys() {
		for _, name := range k.AnnotationNames() {
			f.Add(strings.TrimPrefix(name, "io."), "1")
			f.Add(strings.TrimPrefix(name, "io."), "/opt/ok/x")
		}
	}
	f.Add("vessel.config.agent.kernel_modules", "a b=c; d")
	f.Add("vessel.config.hypervisor.virtio_fs_extra_args", `["--x=1"]`)
	f.Add("vessel.config.hypervisor.default_vcpus", "99999999999999999999")
	f.Add("katacontainers.config.hypervisor.kernel_params", "a\x00b")
	f.Fuzz(func(t *testing.T, name, value string) {
		base := annotationBase()
		before := base.Clone()
		got, err := base.WithAnnotations(map[string]string{"io." + name: value, "io.other": value}, testHost)
		if !reflect.DeepEqual(base, before) {
			t.Fatal("receiver changed")
		}
		if err != nil {
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("accepted annotation %s=%q gives an invalid config: %v", name, value, err)
		}
		if got.Hypervisor.DefaultVCPUs > testHost.CPUs || uint64(got.Hypervisor.DefaultMemory) > testHost.MemoryMiB {
			t.Fatalf("annotation %s=%q exceeds the host: %+v", name, value, got.Hypervisor)
		}
	})
}
