package stats

import (
	"testing"
	"time"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		name          string
		in            []float64
		med, min, max float64
	}{
		{"odd", []float64{3, 1, 2}, 2, 1, 3},
		{"even", []float64{4, 1, 3, 2}, 2.5, 1, 4},
		{"one", []float64{7}, 7, 7, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Of(tc.in)
			if got.Median != tc.med || got.Min != tc.min || got.Max != tc.max || got.N != len(tc.in) {
				t.Errorf("got %+v, want median %v min %v max %v", got, tc.med, tc.min, tc.max)
			}
			if got.Samples[0] != tc.in[0] {
				t.Error("samples were reordered")
			}
		})
	}
	if got := Of(nil); got.N != 0 {
		t.Errorf("got %+v for no samples, want zero", got)
	}
}

func TestSeconds(t *testing.T) {
	got := Seconds([]time.Duration{time.Second, 3 * time.Second, 500 * time.Millisecond})
	if got.Median != 1 || got.Min != 0.5 || got.Max != 3 {
		t.Errorf("got %+v", got)
	}
}
