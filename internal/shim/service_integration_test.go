package shim

import (
	"context"
	"strings"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/task"

	"github.com/vessel-containers/vessel/internal/testutil"
)

// TestDeleteCancelsRealBoot deletes a task while its real VM boots: State answers
// meanwhile, Delete ends the boot at once and nothing is left.
func TestDeleteCancelsRealBoot(t *testing.T) {
	g := testutil.RequiresVM(t)
	fs := newTestShim(t, string(g.Config("")))
	const id = "bootcancel"
	req := fs.request(id, nil)
	ctx := context.Background()

	created := make(chan error, 1)
	go func() {
		_, err := fs.svc.Create(ctx, req)
		created <- err
	}()
	waitForVM(t, id, created)

	begin := time.Now()
	st, err := fs.svc.State(ctx, &taskAPI.StateRequest{ID: id})
	if err != nil || st.Status != task.Status_CREATED {
		t.Fatalf("State while booting = %v, %v; want CREATED", st, err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("State took %v while the vm boots", d)
	}
	begin = time.Now()
	if _, err := fs.svc.Delete(ctx, &taskAPI.DeleteRequest{ID: id}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if d := time.Since(begin); d > 15*time.Second {
		t.Errorf("delete of the booting task took %v", d)
	}
	if err := <-created; err == nil || !strings.Contains(err.Error(), "cancelled by Kill or Delete") {
		t.Errorf("create = %v, want an error saying it was cancelled", err)
	}
	fs.assertCleanedUp(id, "")
}
