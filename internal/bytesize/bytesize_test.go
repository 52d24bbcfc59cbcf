package bytesize

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"65536k", 64 << 20, true},
		{"1000", 1000, true},
		{"0", 0, true},
		{"1G", 1 << 30, true},
		{"2m", 2 << 20, true},
		{"1t", 1 << 40, true},
		{"50%", 0, false},
		{"99999999999999t", 0, false},
		{"-1", 0, false},
		{"1.5G", 0, false},
		{"", 0, false},
		{"k", 0, false},
		{"x", 0, false},
	} {
		got, err := Parse(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("Parse(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
