package containerid

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"a", true},
		{"abc-DEF_1.2+3", true},
		{"0123456789abcdef", true},
		{strings.Repeat("a", MaxLen), true},
		{strings.Repeat("a", MaxLen+1), false},
		{"", false},
		{".", false},
		{"..", false},
		{"-rf", false},
		{"_x", false},
		{".hidden", false},
		{"a/b", false},
		{"a b", false},
		{"a\x00b", false},
		{"é", false},
	} {
		t.Run(tc.id, func(t *testing.T) {
			err := Validate(tc.id)
			if got := err == nil; got != tc.ok {
				t.Fatalf("Validate(%q) = %v, want ok=%v", tc.id, err, tc.ok)
			}
			if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("Validate(%q) = %v, want an ErrInvalidArgument", tc.id, err)
			}
		})
	}
}
