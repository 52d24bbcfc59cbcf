//go:build linux

package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/agent/libct"
	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestTakeInitLog: a recorded start's log is answered once, by container and exec id;
// the oldest logs go when more than maxInitLogs are kept.
func TestTakeInitLog(t *testing.T) {
	svc := NewService(DefaultConfig())
	ctx := context.Background()
	at := time.Unix(100, 5)
	svc.initLogs.put("c1", "", []libct.LogEntry{{Time: at, Level: logrus.DebugLevel, Msg: "child process in init()"}})
	svc.initLogs.put("c1", "e1", []libct.LogEntry{{Time: at, Level: logrus.WarnLevel, Msg: "w"}})

	resp, err := svc.TakeInitLog(ctx, &agentv1.TakeInitLogRequest{ContainerId: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if e := resp.GetEntries(); len(e) != 1 || e[0].GetMsg() != "child process in init()" || e[0].GetLevel() != "debug" || e[0].GetTimeUnixNano() != at.UnixNano() {
		t.Errorf("init's log: %v", e)
	}
	if _, err := svc.TakeInitLog(ctx, &agentv1.TakeInitLogRequest{ContainerId: "c1"}); !errdefs.IsNotFound(err) {
		t.Errorf("second take: %v, want not found", err)
	}
	resp, err = svc.TakeInitLog(ctx, &agentv1.TakeInitLogRequest{ContainerId: "c1", ExecId: "e1"})
	if err != nil || len(resp.GetEntries()) != 1 || resp.GetEntries()[0].GetLevel() != "warning" {
		t.Errorf("exec's log: %v %v", resp.GetEntries(), err)
	}

	for i := 0; i <= maxInitLogs; i++ {
		svc.initLogs.put(fmt.Sprintf("c%d", i), "", nil)
	}
	if _, err := svc.TakeInitLog(ctx, &agentv1.TakeInitLogRequest{ContainerId: "c0"}); !errdefs.IsNotFound(err) {
		t.Errorf("oldest log past the bound: %v, want not found", err)
	}
	if _, err := svc.TakeInitLog(ctx, &agentv1.TakeInitLogRequest{ContainerId: fmt.Sprintf("c%d", maxInitLogs)}); err != nil {
		t.Errorf("newest log: %v", err)
	}
}

// TestWaitUnpaused: an exec that ignores the pause waits until the container is resumed,
// its removal begins, its init exits or its context ends; a container that is not paused
// does not wait.
func TestWaitUnpaused(t *testing.T) {
	wait := func(ctx context.Context, c *container) chan error {
		done := make(chan error, 1)
		go func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			done <- c.waitUnpaused(ctx)
		}()
		return done
	}
	paused := func() *container { return &container{id: "p", state: statePaused, unpaused: make(chan struct{})} }

	c := &container{id: "r", state: stateRunning}
	if err := <-wait(context.Background(), c); err != nil {
		t.Errorf("running container: %v", err)
	}

	c = paused()
	done := wait(context.Background(), c)
	c.mu.Lock()
	c.state = stateRunning
	c.wakeUnpaused()
	c.mu.Unlock()
	if err := <-done; err != nil {
		t.Errorf("after resume: %v", err)
	}

	c = paused()
	done = wait(context.Background(), c)
	c.mu.Lock()
	c.removing = true
	c.wakeUnpaused()
	c.mu.Unlock()
	if err := <-done; err != nil {
		t.Errorf("after removal began: %v (the caller looks at the state)", err)
	}

	// A removal that failed leaves the container paused with no unpaused channel (the
	// removal closed it): the exec waits for the resume.
	c = &container{id: "f", state: statePaused}
	done = wait(context.Background(), c)
	testutil.WaitFor(t, "the exec to wait (it makes the channel it waits on)", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.unpaused != nil
	})
	c.mu.Lock()
	c.state = stateRunning
	c.wakeUnpaused()
	c.mu.Unlock()
	if err := <-done; err != nil {
		t.Errorf("after a failed removal and the resume: %v", err)
	}

	// The init exits while the container is paused.
	c = paused()
	c.init = &process{exited: make(chan struct{})}
	done = wait(context.Background(), c)
	close(c.init.exited)
	if err := <-done; err != nil {
		t.Errorf("after the init exited: %v (the caller looks at the state)", err)
	}

	c = paused()
	ctx, cancel := context.WithCancel(context.Background())
	done = wait(ctx, c)
	cancel()
	if err := <-done; err == nil {
		t.Error("cancelled wait returned no error")
	}
}
