package shim

import (
	"context"

	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/log"
)

// discardPublisher stands in for containerd's event service when there is none: shims the
// vessel CLI starts run without containerd (no TTRPC_ADDRESS). Nothing would consume task
// events there, since the CLI learns the same facts from the task API (State, Wait, Stats),
// so events are dropped with a debug log instead of being retried against an absent
// endpoint.
type discardPublisher struct{}

func (discardPublisher) Publish(ctx context.Context, topic string, _ events.Event) error {
	log.G(ctx).WithField("topic", topic).Debug("no containerd to publish to: event dropped")
	return nil
}

func (discardPublisher) Close() error { return nil }
