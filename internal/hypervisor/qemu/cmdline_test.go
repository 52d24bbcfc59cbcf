package qemu

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/vessel-containers/vessel/internal/hypervisor"
)

func baseConfig() hypervisor.Config {
	return hypervisor.Config{
		ID:        "sb1",
		StateDir:  "/run/vessel/sb1",
		Kernel:    "/guest/vmlinux",
		Initrd:    "/guest/initramfs.img",
		VCPUs:     1,
		MemoryMiB: 256,
	}
}

var tcgLaunch = launch{accel: hypervisor.AccelTCG, qmpFD: 3, agentFD: 4, consoleFD: 5}

// TestCommandLineBaseline pins the whole command line of the smallest config.
func TestCommandLineBaseline(t *testing.T) {
	cfg := baseConfig()
	got := commandLine(&cfg, tcgLaunch)
	want := []string{
		"-name", "vessel-sb1",
		"-machine", "q35",
		"-nodefaults", "-no-user-config",
		"-display", "none", "-vga", "none",
		"-no-reboot",
		"-msg", "timestamp=on",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-accel", "tcg,tb-size=64", "-cpu", "max",
		"-smp", "1,maxcpus=1",
		"-m", "256M",
		"-kernel", "/guest/vmlinux",
		"-initrd", "/guest/initramfs.img",
		"-append", "console=ttyS0 panic=-1 no_timer_check nolapic_timer quiet",
		"-chardev", "socket,id=console,fd=5,server=on,wait=off",
		"-serial", "chardev:console",
		"-chardev", "socket,id=qmp,fd=3,server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-device", "virtio-serial-pci,id=vessel-serial",
		"-chardev", "socket,id=agent,fd=4,server=on,wait=off",
		"-device", "virtserialport,bus=vessel-serial.0,chardev=agent,name=vessel.agent",
		"-object", "rng-random,id=vessel-rng,filename=/dev/urandom",
		"-device", "virtio-rng-pci,rng=vessel-rng",
		"-device", "pci-bridge,bus=pcie.0,id=vessel-bridge0,chassis_nr=1,shpc=off,addr=0x1e,io-reserve=4k,mem-reserve=1m,pref64-reserve=1m",
		"-device", "virtio-balloon-pci,id=vessel-balloon,free-page-reporting=on",
	}
	if !slices.Equal(got, want) {
		t.Errorf("command line:\n got %q\nwant %q", got, want)
	}
}

// options groups the values of each option: "-device" → every device.
func options(args []string) map[string][]string {
	m := map[string][]string{}
	for i := 0; i < len(args); i++ {
		if !strings.HasPrefix(args[i], "-") {
			continue
		}
		if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			m[args[i]] = append(m[args[i]], args[i+1])
			i++
			continue
		}
		m[args[i]] = append(m[args[i]], "")
	}
	return m
}

func TestCommandLineMatrix(t *testing.T) {
	tests := []struct {
		name   string
		mod    func(c *hypervisor.Config)
		launch launch
		// want lists values each option must have among its values.
		want map[string][]string
		// exact lists options whose values must be exactly these.
		exact map[string][]string
		// absent lists values no option may have (option → value substring).
		absent map[string]string
	}{
		{
			name:   "kvm uses the host cpu and no translation cache",
			launch: launch{accel: hypervisor.AccelKVM, qmpFD: 3, agentFD: 4},
			exact:  map[string][]string{"-accel": {"kvm"}, "-cpu": {"host"}},
		},
		{
			name:  "tcg translation cache of a vm that can gain vcpus",
			mod:   func(c *hypervisor.Config) { c.VCPUs, c.MaxVCPUs = 1, 2 },
			exact: map[string][]string{"-accel": {"tcg,tb-size=256"}},
		},
		{
			name:  "tcg translation cache size",
			mod:   func(c *hypervisor.Config) { c.TBSizeMiB = 32 },
			exact: map[string][]string{"-accel": {"tcg,tb-size=32"}, "-cpu": {"max"}},
		},
		{
			name:   "kvm keeps the local apic timer",
			launch: launch{accel: hypervisor.AccelKVM, qmpFD: 3, agentFD: 4},
			exact:  map[string][]string{"-append": {"console=ttyS0 panic=-1 no_timer_check quiet"}},
		},
		{
			name:   "kvm ignores the translation cache size",
			mod:    func(c *hypervisor.Config) { c.TBSizeMiB = 32 },
			launch: launch{accel: hypervisor.AccelKVM, qmpFD: 3, agentFD: 4},
			exact:  map[string][]string{"-accel": {"kvm"}},
		},
		{
			name:  "vcpu headroom",
			mod:   func(c *hypervisor.Config) { c.VCPUs, c.MaxVCPUs = 2, 8 },
			exact: map[string][]string{"-smp": {"2,maxcpus=8"}},
		},
		{
			name:  "memory headroom with default slots",
			mod:   func(c *hypervisor.Config) { c.MemoryMiB, c.MaxMemoryMiB = 512, 4096 },
			exact: map[string][]string{"-m": {"512M,slots=8,maxmem=4096M"}},
		},
		{
			name:  "memory headroom with slots",
			mod:   func(c *hypervisor.Config) { c.MaxMemoryMiB, c.MemorySlots = 1024, 2 },
			exact: map[string][]string{"-m": {"256M,slots=2,maxmem=1024M"}},
		},
		{
			name:  "max memory equal to memory reserves nothing",
			mod:   func(c *hypervisor.Config) { c.MaxMemoryMiB, c.MemorySlots = 256, 4 },
			exact: map[string][]string{"-m": {"256M"}},
		},
		{
			name:  "debug is verbose",
			mod:   func(c *hypervisor.Config) { c.Debug = true },
			exact: map[string][]string{"-append": {"console=ttyS0 panic=-1 no_timer_check nolapic_timer vessel.log=debug"}},
		},
		{
			name:  "agent debug keeps the kernel quiet",
			mod:   func(c *hypervisor.Config) { c.AgentDebug = true },
			exact: map[string][]string{"-append": {"console=ttyS0 panic=-1 no_timer_check nolapic_timer quiet vessel.log=debug"}},
		},
		{
			name:  "kernel params come last",
			mod:   func(c *hypervisor.Config) { c.KernelParams = []string{"agent.x=1", "init=/agent"} },
			exact: map[string][]string{"-append": {"console=ttyS0 panic=-1 no_timer_check nolapic_timer quiet agent.x=1 init=/agent"}},
		},
		{
			name:   "no initrd",
			mod:    func(c *hypervisor.Config) { c.Initrd = "" },
			absent: map[string]string{"-initrd": ""},
		},
		{
			name:  "machine type",
			mod:   func(c *hypervisor.Config) { c.MachineType = "pc" },
			exact: map[string][]string{"-machine": {"pc"}},
		},
		{
			name: "9p share",
			mod: func(c *hypervisor.Config) {
				c.SharedFS, c.SharedDir, c.ShareTag = hypervisor.SharedFS9P, "/run/vessel/sb1/shared", "vesselshared"
			},
			want: map[string][]string{
				"-fsdev":  {"local,id=vessel-share,path=/run/vessel/sb1/shared,security_model=none,multidevs=remap"},
				"-device": {"virtio-9p-pci,fsdev=vessel-share,mount_tag=vesselshared"},
			},
			exact:  map[string][]string{"-machine": {"q35"}},
			absent: map[string]string{"-object": "memory-backend"},
		},
		{
			name: "virtio-fs share needs shared memory",
			mod: func(c *hypervisor.Config) {
				c.SharedFS, c.SharedDir, c.ShareTag = hypervisor.SharedFSVirtioFS, "/run/vessel/sb1/shared", "vesselshared"
				c.VirtioFSSocket = "/run/vessel/sb1/vhost-fs.sock"
				c.MaxMemoryMiB = 2048
			},
			want: map[string][]string{
				"-object":  {"memory-backend-memfd,id=vessel-ram,size=256M,share=on"},
				"-chardev": {"socket,id=vessel-share,path=/run/vessel/sb1/vhost-fs.sock"},
				"-device":  {"vhost-user-fs-pci,chardev=vessel-share,tag=vesselshared,queue-size=1024"},
			},
			exact:  map[string][]string{"-machine": {"q35,memory-backend=vessel-ram"}, "-m": {"256M,slots=8,maxmem=2048M"}},
			absent: map[string]string{"-fsdev": ""},
		},
		{
			name: "no share",
			mod:  func(c *hypervisor.Config) { c.SharedFS = hypervisor.SharedFSNone },
			absent: map[string]string{
				"-fsdev":  "",
				"-device": "9p",
			},
		},
		{
			name: "commas in paths and ids are escaped",
			mod: func(c *hypervisor.Config) {
				c.ID, c.StateDir = "a,b", "/run/a,b"
				c.SharedFS, c.SharedDir, c.ShareTag = hypervisor.SharedFS9P, "/srv/x,y", "t"
			},
			want: map[string][]string{
				"-name":  {"vessel-a,,b"},
				"-fsdev": {"local,id=vessel-share,path=/srv/x,,y,security_model=none,multidevs=remap"},
			},
		},
		{
			name:  "machine options follow the machine type",
			mod:   func(c *hypervisor.Config) { c.MachineType, c.MachineAccelerators = "pc", "smm=off,hpet=off" },
			exact: map[string][]string{"-machine": {"pc,smm=off,hpet=off"}},
		},
		{
			name: "machine options follow the memory backend",
			mod: func(c *hypervisor.Config) {
				c.MachineAccelerators = "smm=off"
				c.Template = &hypervisor.Template{Mode: hypervisor.TemplateSave, MemoryPath: "/tpl/mem", StatePath: "/tpl/state"}
			},
			exact: map[string][]string{"-machine": {"q35,memory-backend=vessel-ram,smm=off"}},
		},
		{
			name:  "cpu features under tcg",
			mod:   func(c *hypervisor.Config) { c.CPUFeatures = "pmu=off,vmx=off" },
			exact: map[string][]string{"-cpu": {"max,pmu=off,vmx=off"}, "-accel": {"tcg,tb-size=64"}},
		},
		{
			name:   "cpu features under kvm",
			mod:    func(c *hypervisor.Config) { c.CPUFeatures = "pmu=off" },
			launch: launch{accel: hypervisor.AccelKVM, qmpFD: 3, agentFD: 4},
			exact:  map[string][]string{"-cpu": {"host,pmu=off"}, "-accel": {"kvm"}},
		},
		{
			name:  "entropy source",
			mod:   func(c *hypervisor.Config) { c.EntropySource = "/dev/hw,rng" },
			exact: map[string][]string{"-object": {"rng-random,id=vessel-rng,filename=/dev/hw,,rng"}},
		},
		{
			name:   "no preallocation by default",
			absent: map[string]string{"-mem-prealloc": ""},
		},
		{
			name:  "preallocated memory",
			mod:   func(c *hypervisor.Config) { c.MemPrealloc = true },
			exact: map[string][]string{"-mem-prealloc": {""}, "-m": {"256M"}, "-machine": {"q35"}},
		},
		{
			name: "preallocation covers the virtio-fs memfd",
			mod: func(c *hypervisor.Config) {
				c.MemPrealloc = true
				c.SharedFS, c.SharedDir, c.ShareTag = hypervisor.SharedFSVirtioFS, "/run/vessel/sb1/shared", "vesselshared"
				c.VirtioFSSocket = "/run/vessel/sb1/vhost-fs.sock"
			},
			want: map[string][]string{
				"-object":       {"memory-backend-memfd,id=vessel-ram,size=256M,share=on"},
				"-mem-prealloc": {""},
			},
		},
		{
			name: "preallocation covers a restored template's memory",
			mod: func(c *hypervisor.Config) {
				c.MemPrealloc = true
				c.Template = &hypervisor.Template{Mode: hypervisor.TemplateRestore, MemoryPath: "/tpl/mem", StatePath: "/tpl/state"}
			},
			want: map[string][]string{
				"-object":       {"memory-backend-file,id=vessel-ram,size=256M,mem-path=/tpl/mem,share=off"},
				"-mem-prealloc": {""},
				"-incoming":     {"defer"},
			},
		},
		{
			name:   "descriptors",
			launch: launch{accel: hypervisor.AccelTCG, qmpFD: 7, agentFD: 9, consoleFD: 11},
			want: map[string][]string{"-chardev": {
				"socket,id=console,fd=11,server=on,wait=off",
				"socket,id=qmp,fd=7,server=on,wait=off",
				"socket,id=agent,fd=9,server=on,wait=off",
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			if tt.mod != nil {
				tt.mod(&cfg)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("test config invalid: %v", err)
			}
			l := tt.launch
			if l.accel == "" {
				l = tcgLaunch
			}
			args := commandLine(&cfg, l)
			got := options(args)
			for opt, vals := range tt.want {
				for _, v := range vals {
					if !slices.Contains(got[opt], v) {
						t.Errorf("%s: got %q, want it to include %q", opt, got[opt], v)
					}
				}
			}
			for opt, vals := range tt.exact {
				if !slices.Equal(got[opt], vals) {
					t.Errorf("%s: got %q, want %q", opt, got[opt], vals)
				}
			}
			for opt, sub := range tt.absent {
				for _, v := range got[opt] {
					if strings.Contains(v, sub) {
						t.Errorf("%s: got %q, want no value containing %q", opt, got[opt], sub)
					}
				}
				if sub == "" && len(got[opt]) > 0 {
					t.Errorf("%s: got %q, want absent", opt, got[opt])
				}
			}
			// Invariants of every command line.
			for _, flag := range []string{"-nodefaults", "-no-reboot", "-no-user-config"} {
				if _, ok := got[flag]; !ok {
					t.Errorf("missing %s", flag)
				}
			}
			if !slices.ContainsFunc(got["-device"], func(s string) bool { return strings.HasPrefix(s, "virtio-rng-pci") }) {
				t.Error("missing virtio-rng-pci")
			}
			if !slices.ContainsFunc(got["-device"], func(s string) bool { return strings.Contains(s, "name=vessel.agent") }) {
				t.Error("missing the vessel.agent port")
			}
		})
	}
}

func TestResolveAccel(t *testing.T) {
	usable := func() error { return nil }
	unusable := func() error { return hypervisor.ErrNoHardwareVirt }
	tests := []struct {
		want    hypervisor.Accelerator
		probe   func() error
		got     hypervisor.Accelerator
		wantErr error
	}{
		{want: "", probe: usable, got: hypervisor.AccelKVM},
		{want: hypervisor.AccelAuto, probe: usable, got: hypervisor.AccelKVM},
		{want: hypervisor.AccelAuto, probe: unusable, got: hypervisor.AccelTCG},
		{want: hypervisor.AccelKVM, probe: usable, got: hypervisor.AccelKVM},
		{want: hypervisor.AccelKVM, probe: unusable, wantErr: hypervisor.ErrNoHardwareVirt},
		{want: hypervisor.AccelTCG, probe: usable, got: hypervisor.AccelTCG},
		{want: "hvf", probe: usable, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		got, err := resolveAccel(tt.want, tt.probe)
		if got != tt.got || !errors.Is(err, tt.wantErr) {
			t.Errorf("resolveAccel(%q): got %q, %v; want %q, %v", tt.want, got, err, tt.got, tt.wantErr)
		}
		if tt.want == hypervisor.AccelKVM && err != nil && !strings.Contains(err.Error(), "KVM is not usable") {
			t.Errorf("kvm error does not say KVM is unusable: %v", err)
		}
	}
}

func TestCPUHasHardwareVirt(t *testing.T) {
	tests := []struct {
		name, cpuinfo string
		want          bool
	}{
		{"intel", "processor\t: 0\nflags\t\t: fpu vme vmx sse\n", true},
		{"amd", "processor\t: 0\nflags\t\t: fpu svm sse\n", true},
		{"none", "processor\t: 0\nflags\t\t: fpu hypervisor rdrand\n", false},
		{"vmx only in another field", "model name\t: vmx\nflags\t\t: fpu\n", false},
		{"no flags", "processor\t: 0\n", false},
	}
	for _, tt := range tests {
		if got := hypervisor.CPUHasHardwareVirt(tt.cpuinfo); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}
