package guard

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

func TestGoContainsPanic(t *testing.T) {
	var logs bytes.Buffer
	logger := logrus.New()
	logger.SetOutput(&logs)
	ctx := log.WithLogger(context.Background(), logrus.NewEntry(logger))

	got := make(chan *PanicError, 1)
	cleaned := make(chan struct{})
	Go(ctx, "copier", func() {
		defer close(cleaned) // fn's own defers run before onPanic
		var s []int
		_ = s[len(s)] // a runtime error, not only panic(...)
	}, func(p *PanicError) {
		select {
		case <-cleaned:
		default:
			t.Error("onPanic ran before fn's deferred calls")
		}
		got <- p
	})
	select {
	case p := <-got:
		if p.Name != "copier" {
			t.Errorf("name = %q, want copier", p.Name)
		}
		if !strings.Contains(p.Error(), "index out of range") {
			t.Errorf("error = %q, want the panic value", p.Error())
		}
		if !bytes.Contains(p.Stack, []byte("guard_test.go")) {
			t.Errorf("stack does not name the panicking function:\n%s", p.Stack)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("onPanic was not called")
	}
	if !strings.Contains(logs.String(), "contained a panic in goroutine copier") || !strings.Contains(logs.String(), "stack=") {
		t.Errorf("log lacks the panic and its stack: %q", logs.String())
	}
}

func TestRunWithoutPanic(t *testing.T) {
	called := false
	ran := false
	Run(context.Background(), "quiet", func() { ran = true }, func(*PanicError) { called = true })
	if !ran || called {
		t.Fatalf("ran = %v, onPanic called = %v; want true, false", ran, called)
	}
}

func TestRunPanicWithError(t *testing.T) {
	sentinel := errors.New("boom")
	var got *PanicError
	Run(context.Background(), "w", func() { panic(sentinel) }, func(p *PanicError) { got = p })
	if got == nil || !errors.Is(got.Value.(error), sentinel) {
		t.Fatalf("got %+v, want the panic value %v", got, sentinel)
	}
	// A nil onPanic only logs.
	Run(context.Background(), "w", func() { panic("x") }, nil)
}
