package report

import (
	"strings"
	"testing"
)

func TestParseIORun(t *testing.T) {
	out := "some log line\n" +
		`{"dir":"/io","fs_type":"9p","files":100,"size_mib":4,"rand_seconds":1,"create_per_sec":144.5,"find_per_sec":900,"delete_per_sec":300,"seq_write_mib_s":324,"seq_read_mib_s":360,"rand_write_iops":3076,"rand_read_iops":2304}` + "\n"
	r, err := ParseIORun(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.FSType != "9p" || r.Files != 100 || r.CreatePerSec != 144.5 || r.RandReadIOPS != 2304 || r.SeqWriteMiBs != 324 {
		t.Errorf("parsed %+v", r)
	}
	for _, bad := range []string{
		"",
		"vesselio: open /io: permission denied\n",
		`{"dir":"/io",` + "\n",
		`{"dir":"/io","create_per_sec":0,"seq_write_mib_s":0}` + "\n",
	} {
		if _, err := ParseIORun(bad); err == nil {
			t.Errorf("ParseIORun(%q) = nil error", bad)
		}
	}
}

func TestIOMarkdown(t *testing.T) {
	v := []IOVariant{
		{Name: "runc", Storage: "runc rootfs", Runs: []IORun{
			{FSType: "overlay", Files: 100, SizeMiB: 4, RandSeconds: 1, CreatePerSec: 3000, SeqWriteMiBs: 300, RandReadIOPS: 40000},
			{FSType: "overlay", CreatePerSec: 3400, SeqWriteMiBs: 310, RandReadIOPS: 42000},
			{FSType: "overlay", CreatePerSec: 3200, SeqWriteMiBs: 305, RandReadIOPS: 41000},
		}},
		{Name: "vessel-block", Storage: "disk", Runs: []IORun{{FSType: "ext4", CreatePerSec: 977, SeqWriteMiBs: 35}}},
	}
	for i := range v {
		v[i].Summarize()
	}
	if v[0].Create.N != 3 || v[0].Create.Median != 3200 || v[0].SeqWrite.Max != 310 {
		t.Errorf("summary %+v %+v", v[0].Create, v[0].SeqWrite)
	}
	r := sample()
	r.IO = &IO{Variants: v}
	md := Markdown(r)
	for _, want := range []string{
		"## I/O",
		"100 small files, a 4 MiB file, 1 s per random test.",
		"| Figure | runc | vessel-block |",
		"| small-file create, files/s | 3200 (3000–3400) | 977 |",
		"| random read 4 KiB, IOPS | 41000 (40000–42000) | 0 |",
		"- vessel-block: disk (ext4)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	r.IO = &IO{}
	if strings.Contains(Markdown(r), "## I/O") {
		t.Error("empty I/O section written")
	}
}
