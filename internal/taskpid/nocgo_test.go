//go:build !cgo

package taskpid

import "testing"

func TestStartNeedsMain(t *testing.T) {
	hooked.Store(false)
	defer hooked.Store(true)
	if _, err := Start(nil, "x"); err == nil {
		t.Fatal("Start succeeded in a binary whose main does not call Main")
	}
}
