package sandbox

import (
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/sharefs"
)

func TestShareOptions(t *testing.T) {
	for _, tc := range []struct {
		options string
		want    sharefs.BindOptions
	}{
		{"", sharefs.BindOptions{}},
		{"bind", sharefs.BindOptions{}},
		{"rbind", sharefs.BindOptions{Recursive: true}},
		{"rbind,ro", sharefs.BindOptions{Recursive: true, TopReadOnly: true}},
		{"bind,ro", sharefs.BindOptions{ReadOnly: true}},
		{"rbind,rro", sharefs.BindOptions{Recursive: true, ReadOnly: true}},
		{"rbind,ro,rw", sharefs.BindOptions{Recursive: true}},
		{"rbind,rro,rrw", sharefs.BindOptions{Recursive: true}},
		{"rbind,rro,rw", sharefs.BindOptions{Recursive: true, ReadOnly: true}},
		{"rbind,ro,rro", sharefs.BindOptions{Recursive: true, ReadOnly: true}},
		{"rw,nosuid,nodev,rbind", sharefs.BindOptions{Recursive: true}},
		{"rbind,rslave", sharefs.BindOptions{Recursive: true, Slave: true}},
		{"rbind,rshared", sharefs.BindOptions{Recursive: true, Slave: true}},
		{"rbind,rshared,rprivate", sharefs.BindOptions{Recursive: true}},
	} {
		t.Run(tc.options, func(t *testing.T) {
			var opts []string
			if tc.options != "" {
				opts = strings.Split(tc.options, ",")
			}
			if got := shareOptions(opts); got != tc.want {
				t.Errorf("shareOptions(%v): got %+v, want %+v", opts, got, tc.want)
			}
		})
	}
}
