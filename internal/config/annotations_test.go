package config

import (
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var testHost = Host{CPUs: 4, MemoryMiB: 8192}

// annotationBase enables every annotation and allows one glob per path key that is
// supported (the glob lists of unsupported keys keep their defaults).
func annotationBase() *Config {
	c := Default()
	c.Runtime.EnableAnnotations = []string{".*"}
	h := &c.Hypervisor
	for _, p := range []*[]string{
		&h.ValidHypervisorPaths, &h.ValidKernelPaths, &h.ValidImagePaths, &h.ValidEntropySources, &h.ValidVirtioFSDaemonPaths,
	} {
		*p = []string{"/opt/ok/*"}
	}
	return c
}

// annotationRefused says whether a well-formed annotation value v for k is refused as not
// supported: v is not k's default and k is unsupported, or v is an unsupported value.
func annotationRefused(k Key, v string) bool {
	if _, bad := k.UnsupportedValues[v]; bad {
		return true
	}
	if k.Unsupported == "" {
		return false
	}
	if k.Type == "[]string" {
		list, _ := splitList(k.syntax, v)
		return formatValue(reflect.ValueOf(list)) != k.DefaultValue()
	}
	return canonical(k, v) != k.DefaultValue()
}

// wantUnsupported fails unless err is a field error for the annotation name saying the
// key is not supported, with the key's reason.
func wantUnsupported(t *testing.T, err error, k Key, name, value string) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Key != name {
		t.Fatalf("got %v, want a field error naming %s", err, name)
	}
	reason := k.Unsupported
	if r, ok := k.UnsupportedValues[value]; ok {
		reason = r
	}
	if want := "not supported: " + reason; fe.Reason != want {
		t.Errorf("reason %q, want %q", fe.Reason, want)
	}
}

// annotationCases gives annotation values for k that must be accepted, and malformed or
// out-of-range ones that must be refused.
func annotationCases(t *testing.T, k Key) (good, bad []string) {
	t.Helper()
	switch k.Type {
	case "bool":
		return []string{"true", "false", "1", "0"}, []string{"yes", "", " true", "2"}
	case "uint32", "uint64":
		lo, hi := k.Min, k.Max
		switch k.FullName() {
		case "hypervisor.default_vcpus", "hypervisor.default_maxvcpus":
			lo, hi = max(lo, 1), uint64(testHost.CPUs)
		case "hypervisor.default_memory":
			hi = testHost.MemoryMiB
		}
		good = []string{strconv.FormatUint(lo, 10), strconv.FormatUint(hi, 10)}
		bad = []string{strconv.FormatUint(k.Max+1, 10), "-1", "0x10", "1_0", "", " 1", "1.0", "99999999999999999999999"}
		if k.Min > 0 {
			bad = append(bad, strconv.FormatUint(k.Min-1, 10))
		}
		return good, bad
	case "path":
		if k.Globs != "" {
			return []string{"/opt/ok/x"}, []string{"relative", "/opt/ok/../../bin/sh", "/opt/ok/a/b", "/usr/bin/evil", ""}
		}
		return []string{"/hooks"}, []string{"relative", "/a/../b"}
	case "string":
		if len(k.Enum) > 0 {
			return k.Enum, []string{"bogus", "", strings.ToUpper(k.Enum[0])}
		}
		s, ok := stringSamples[k.FullName()]
		if !ok {
			t.Fatalf("string key %s needs stringSamples", k.FullName())
		}
		return s.good, s.bad
	case "[]string":
		s := stringSamples[k.FullName()]
		switch k.syntax {
		case listSemicolon:
			return []string{strings.Join(s.good, "; "), "", ";"}, append(s.bad[:1:1], "ok; bad/one")
		case listComma:
			return []string{strings.Join(s.good, ","), ""}, []string{"a,B", "a b"}
		case listJSON:
			return []string{`["` + strings.Join(s.good, `","`) + `"]`, "[]"}, []string{"--a", `[1]`, `["` + s.bad[0] + `"]`, `{}`, `[""]`}
		}
	}
	t.Fatalf("annotation for %s: no cases for type %s", k.FullName(), k.Type)
	return nil, nil
}

// TestEveryAnnotation covers each annotation: valid values under both prefixes, malformed
// values, refusal when the allowlist does not enable it, and paths outside the globs.
func TestEveryAnnotation(t *testing.T) {
	base := annotationBase()
	for _, k := range Keys() {
		if k.Annotation == "" {
			continue
		}
		good, bad := annotationCases(t, k)
		for _, name := range k.AnnotationNames() {
			for _, v := range good {
				t.Run(name+"/good/"+v, func(t *testing.T) {
					got, err := base.WithAnnotations(map[string]string{name: v}, testHost)
					if annotationRefused(k, v) {
						wantUnsupported(t, err, k, name, v)
						return
					}
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					f := fieldOf(reflect.ValueOf(got).Elem(), k)
					if k.Type != "[]string" && !k.Append && formatValue(f) != canonical(k, v) {
						t.Errorf("%s = %s after annotation %q", k.FullName(), formatValue(f), v)
					}
					if err := got.Validate(); err != nil {
						t.Errorf("result invalid: %v", err)
					}
				})
			}
		}
		name := k.AnnotationNames()[0]
		for _, v := range bad {
			t.Run(name+"/bad/"+v, func(t *testing.T) {
				_, err := base.WithAnnotations(map[string]string{name: v}, testHost)
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Key != name {
					t.Fatalf("got %v, want a field error naming %s", err, name)
				}
			})
		}
		t.Run(name+"/disabled", func(t *testing.T) {
			for _, allow := range [][]string{nil, {"nothing\\..*"}, {"hypervisor\\.nothing"}, {k.Annotation + "x"}} {
				c := annotationBase()
				c.Runtime.EnableAnnotations = allow
				_, err := c.WithAnnotations(map[string]string{name: good[0]}, testHost)
				if err == nil || !strings.Contains(err.Error(), "not enabled") || !strings.Contains(err.Error(), name) {
					t.Fatalf("allow %q: got %v, want refusal naming %s", allow, err, name)
				}
			}
			c := annotationBase()
			c.Runtime.EnableAnnotations = []string{regexpQuote(k.Section + "." + k.Annotation)}
			_, err := c.WithAnnotations(map[string]string{name: good[0]}, testHost)
			if annotationRefused(k, good[0]) {
				wantUnsupported(t, err, k, name, good[0])
			} else if err != nil {
				t.Fatalf("enabled by its exact name, still refused: %v", err)
			}
		})
		if k.Globs != "" && k.Supported() {
			t.Run(name+"/outside-globs", func(t *testing.T) {
				c := annotationBase()
				_, err := c.WithAnnotations(map[string]string{name: "/usr/bin/other"}, testHost)
				if err == nil || !strings.Contains(err.Error(), "matches none of "+k.Section+"."+k.Globs) {
					t.Fatalf("got %v", err)
				}
				gk, _ := lookupKey(k.Section, k.Globs)
				fieldOf(reflect.ValueOf(c).Elem(), gk).Set(reflect.ValueOf([]string{}))
				_, err = c.WithAnnotations(map[string]string{name: "/opt/ok/x"}, testHost)
				if err == nil || !strings.Contains(err.Error(), "is empty") {
					t.Fatalf("empty globs: got %v", err)
				}
			})
		}
	}
}

func regexpQuote(s string) string { return strings.ReplaceAll(s, ".", `\.`) }

// canonical is how a good annotation value reads back from the config.
func canonical(k Key, v string) string {
	switch k.Type {
	case "bool":
		b, _ := strconv.ParseBool(v)
		return strconv.FormatBool(b)
	case "uint32", "uint64":
		return v
	}
	return strconv.Quote(v)
}

func TestAnnotationSemantics(t *testing.T) {
	const p = PrefixVessel
	for _, tc := range []struct {
		name    string
		allow   []string
		ann     map[string]string
		check   func(*Config) bool
		wantErr string
	}{
		{name: "non-config annotations ignored", allow: nil,
			ann:   map[string]string{"io.kubernetes.cri.sandbox-id": "x", "io.katacontainers.config_path": "/x"},
			check: func(c *Config) bool { return c.Hypervisor.DefaultVCPUs == 1 }},
		{name: "kata bare name enables hypervisor annotation", allow: []string{"default_vcpus"},
			ann:   map[string]string{PrefixKata + "hypervisor.default_vcpus": "2"},
			check: func(c *Config) bool { return c.Hypervisor.DefaultVCPUs == 2 }},
		{name: "bare name does not enable agent annotation", allow: []string{"enable_tracing"},
			ann: map[string]string{p + "agent.enable_tracing": "true"}, wantErr: "not enabled"},
		{name: "regexp anchored", allow: []string{"hypervisor\\.default"},
			ann: map[string]string{p + "hypervisor.default_vcpus": "2"}, wantErr: "not enabled"},
		{name: "unknown name", allow: []string{".*"},
			ann: map[string]string{p + "hypervisor.firmware_hash": "abc"}, wantErr: "unknown configuration annotation"},
		{name: "unknown section", allow: []string{".*"},
			ann: map[string]string{p + "nope": "1"}, wantErr: "unknown configuration annotation"},
		{name: "toml name is not the annotation name", allow: []string{".*"},
			ann: map[string]string{p + "hypervisor.default_maxvcpus": "2"}, wantErr: "unknown configuration annotation"},
		{name: "vcpus above host", allow: []string{".*"},
			ann: map[string]string{p + "hypervisor.default_vcpus": "5"}, wantErr: "exceeds the host's 4 CPUs"},
		{name: "vcpus above configured max", allow: []string{".*"},
			ann: map[string]string{p + "hypervisor.default_vcpus": "3", p + "hypervisor.default_max_vcpus": "2"}, wantErr: "exceeds the maximum of 2 vCPUs"},
		{name: "max vcpus above host", allow: []string{".*"},
			ann: map[string]string{p + "hypervisor.default_max_vcpus": "8"}, wantErr: "exceeds the host's 4 CPUs"},
		{name: "memory above host", allow: []string{".*"},
			ann: map[string]string{p + "hypervisor.default_memory": "8193"}, wantErr: "exceeds the maximum of 8192 MiB"},
		{name: "same value under both prefixes", allow: []string{".*"},
			ann:   map[string]string{p + "hypervisor.default_vcpus": "2", PrefixKata + "hypervisor.default_vcpus": "2"},
			check: func(c *Config) bool { return c.Hypervisor.DefaultVCPUs == 2 }},
		{name: "conflicting prefixes", allow: []string{".*"},
			ann: map[string]string{p + "hypervisor.default_vcpus": "2", PrefixKata + "hypervisor.default_vcpus": "3"}, wantErr: "conflicts with"},
		{name: "kernel params appended", allow: []string{".*"},
			ann:   map[string]string{p + "hypervisor.kernel_params": " debug  "},
			check: func(c *Config) bool { return c.Hypervisor.KernelParams == "quiet debug" }},
		{name: "kernel params too long together", allow: []string{".*"},
			ann: map[string]string{p + "hypervisor.kernel_params": strings.Repeat("a", maxKernelCmdline-3)}, wantErr: "longer than"},
		{name: "kernel modules split", allow: []string{".*"},
			ann: map[string]string{p + "agent.kernel_modules": "e1000e EEE=1; ; i915"},
			check: func(c *Config) bool {
				return slices.Equal(c.Agent.KernelModules, []string{"e1000e EEE=1", "i915"})
			}},
		{name: "unsupported list", allow: []string{".*"},
			ann:     map[string]string{p + "runtime.experimental": `a,b`},
			wantErr: `io.vessel.config.runtime.experimental = "a,b": not supported: this Vessel has no experimental features`},
		{name: "virtio-fs extra args", allow: []string{".*"},
			ann: map[string]string{p + "hypervisor.virtio_fs_extra_args": `["--thread-pool-size=2"]`},
			check: func(c *Config) bool {
				return slices.Equal(c.Hypervisor.VirtioFSExtraArgs, []string{"--thread-pool-size=2"})
			}},
		{name: "virtio-fs extra args set by Vessel", allow: []string{".*"},
			ann:     map[string]string{p + "hypervisor.virtio_fs_extra_args": `["--syslog"]`},
			wantErr: `option is set by Vessel itself`},
		{name: "virtio-fs DAX window", allow: []string{".*"},
			ann:     map[string]string{p + "hypervisor.virtio_fs_cache_size": "64"},
			wantErr: `io.vessel.config.hypervisor.virtio_fs_cache_size = "64": not supported: the virtio-fs DAX window needs vhost-user-fs-pci cache-size, which QEMU 7.2 (Debian 12) does not have`},
		{name: "virtio-fs metadata cache", allow: []string{".*"},
			ann:     map[string]string{p + "hypervisor.virtio_fs_cache": "metadata"},
			wantErr: `no metadata cache mode`},
		{name: "unsupported bool", allow: []string{".*"},
			ann:     map[string]string{PrefixKata + "hypervisor.enable_hugepages": "true"},
			wantErr: `io.katacontainers.config.hypervisor.enable_hugepages = "true": not supported: backing guest memory with the host's huge pages is not built`},
		{name: "unsupported bool at its default", allow: []string{".*"},
			ann:   map[string]string{PrefixKata + "hypervisor.enable_hugepages": "0"},
			check: func(c *Config) bool { return !c.Hypervisor.EnableHugepages }},
		{name: "unsupported value", allow: []string{".*"},
			ann:     map[string]string{p + "hypervisor.block_device_driver": "nvdimm"},
			wantErr: `io.vessel.config.hypervisor.block_device_driver = "nvdimm": not supported: nvdimm disks are not supported yet`},
		{name: "copy mode", allow: []string{".*"},
			ann:   map[string]string{p + "hypervisor.shared_fs": "none", p + "hypervisor.copy_sync": "kubernetes"},
			check: func(c *Config) bool { return c.Hypervisor.SharedFS == "none" && c.Hypervisor.CopySync == "kubernetes" }},
		{name: "copy sync mode unknown", allow: []string{".*"},
			ann: map[string]string{p + "hypervisor.copy_sync": "some"}, wantErr: `io.vessel.config.hypervisor.copy_sync = "some"`},
		{name: "unsupported path before its globs", allow: []string{".*"},
			ann:     map[string]string{p + "hypervisor.image": "/var/lib/vessel/guest/disk.img"},
			wantErr: "hypervisor.image = \"/var/lib/vessel/guest/disk.img\": not supported: guest disk images are not built yet"},
		{name: "unknown network model", allow: []string{".*"},
			ann: map[string]string{p + "runtime.internetworking_model": "bridged"}, wantErr: `runtime.internetworking_model = "bridged"`},
		{name: "kernel params may not set init", allow: []string{".*"},
			ann: map[string]string{p + "hypervisor.kernel_params": "debug init=/bin/sh"}, wantErr: "parameter init=/bin/sh is set by Vessel"},
		{name: "kernel params may not set the agent's", allow: []string{".*"},
			ann: map[string]string{PrefixKata + "hypervisor.kernel_params": "vessel.log=trace"}, wantErr: "parameter vessel.log=trace is set by Vessel"},
		{name: "all errors reported", allow: []string{".*"},
			ann: map[string]string{p + "hypervisor.msize_9p": "1", p + "agent.enable_tracing": "maybe"}, wantErr: "io.vessel.config.hypervisor.msize_9p"},
		{name: "value too long", allow: []string{".*"},
			ann: map[string]string{p + "hypervisor.cpu_features": strings.Repeat("a", maxAnnotationValue+1)}, wantErr: "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Hypervisor.KernelParams = "quiet"
			c.Runtime.EnableAnnotations = tc.allow
			got, err := c.WithAnnotations(tc.ann, testHost)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(got) {
				t.Fatalf("unexpected result: %+v", got)
			}
		})
	}
}

func TestAnnotationsLeaveOriginal(t *testing.T) {
	c := annotationBase()
	before := c.Clone()
	_, err := c.WithAnnotations(map[string]string{
		PrefixVessel + "hypervisor.default_vcpus": "2",
		PrefixVessel + "agent.kernel_modules":     "m",
		PrefixVessel + "hypervisor.cpu_features":  "pmu=off",
	}, testHost)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, before) {
		t.Fatal("WithAnnotations changed its receiver")
	}
}

func TestAllErrorsJoined(t *testing.T) {
	_, err := annotationBase().WithAnnotations(map[string]string{
		PrefixVessel + "hypervisor.msize_9p":  "1",
		PrefixVessel + "agent.enable_tracing": "maybe",
		PrefixKata + "hypervisor.shared_fs":   "nfs",
	}, testHost)
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 3 {
		t.Fatalf("want 3 joined errors, got %v", err)
	}
	want := `io.vessel.config.agent.enable_tracing = "maybe": not a boolean (allowed: true or false)`
	if got := joined.Unwrap()[1].Error(); got != want {
		t.Errorf("message\n got %s\nwant %s", got, want)
	}
}

func TestKernelModule(t *testing.T) {
	name, params := KernelModule("  e1000e  EEE=1 x=2 ")
	if name != "e1000e" || !slices.Equal(params, []string{"EEE=1", "x=2"}) {
		t.Fatalf("got %q %q", name, params)
	}
	if name, params := KernelModule(" "); name != "" || params != nil {
		t.Fatalf("empty entry: %q %q", name, params)
	}
}
