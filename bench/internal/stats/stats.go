// Package stats summarises repeated measurements as the benchmark reports them: the median
// of N samples with the minimum and the maximum, keeping the samples for the chart.
package stats

import (
	"slices"
	"time"
)

// Summary of N samples. Durations are in seconds, memory in MiB, rates as they are.
type Summary struct {
	N       int       `json:"n"`
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	Samples []float64 `json:"samples"`
}

// Of summarises samples; an empty input gives the zero Summary.
func Of(samples []float64) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Summary{N: n, Median: med, Min: s[0], Max: s[n-1], Samples: samples}
}

// Seconds summarises durations in seconds.
func Seconds(ds []time.Duration) Summary {
	f := make([]float64, len(ds))
	for i, d := range ds {
		f[i] = d.Seconds()
	}
	return Of(f)
}

// MiB converts bytes to MiB.
func MiB(b uint64) float64 { return float64(b) / (1 << 20) }
