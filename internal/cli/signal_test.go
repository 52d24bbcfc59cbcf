package cli

import (
	"syscall"
	"testing"
)

func TestParseSignal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want syscall.Signal
		bad  bool
	}{
		{in: "9", want: syscall.SIGKILL},
		{in: "15", want: syscall.SIGTERM},
		{in: "KILL", want: syscall.SIGKILL},
		{in: "SIGTERM", want: syscall.SIGTERM},
		{in: "sigusr1", want: syscall.SIGUSR1},
		{in: "hup", want: syscall.SIGHUP},
		{in: "WINCH", want: syscall.SIGWINCH},
		{in: "RTMIN", want: 34},
		{in: "SIGRTMIN+3", want: 37},
		{in: "RTMAX", want: 64},
		{in: "RTMAX-2", want: 62},
		{in: "64", want: 64},
		{in: "0", want: 0},
		{in: "65", bad: true},
		{in: "-1", bad: true},
		{in: "", bad: true},
		{in: "NOPE", bad: true},
		{in: "RTMIN-1", bad: true},
		{in: "RTMAX+1", bad: true},
		{in: "RTMIN+31", bad: true},
	} {
		got, err := parseSignal(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: got %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %d, %v, want %d", tc.in, got, err, tc.want)
		}
	}
}
