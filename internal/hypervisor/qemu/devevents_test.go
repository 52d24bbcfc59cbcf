package qemu

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vessel-containers/vessel/internal/hypervisor"
	"github.com/vessel-containers/vessel/internal/hypervisor/qemu/qmp"
)

func ost(device string, status int) qmp.Event {
	return qmp.Event{Name: "ACPI_DEVICE_OST", Data: []byte(`{"info": {"device": "` + device + `", "slot": "0", "slot-type": "DIMM", "source": 1, "status": ` + string(rune('0'+status)) + `}}`)}
}

func TestDeviceOf(t *testing.T) {
	for _, tc := range []struct {
		ev   qmp.Event
		want string
	}{
		{ost("vessel-dimm-0", 0), "vessel-dimm-0"},
		{qmp.Event{Name: "DEVICE_DELETED", Data: []byte(`{"device": "blk0", "path": "/machine/peripheral/blk0"}`)}, ""},
		{qmp.Event{Name: "STOP", Data: []byte(`{}`)}, ""},
		{qmp.Event{Name: "ACPI_DEVICE_OST", Data: []byte(`not json`)}, ""},
	} {
		if got := deviceOf(tc.ev); got != tc.want {
			t.Errorf("deviceOf(%s %s) = %q, want %q", tc.ev.Name, tc.ev.Data, got, tc.want)
		}
	}
}

// plugAcked succeeds on the guest's success answer for the device, fails naming the status
// on another answer, ignores answers about other devices, and gives up when the VM exits.
func TestPlugAcked(t *testing.T) {
	newVM := func() *VM { return &VM{cfg: hypervisor.Config{ID: "t"}, done: make(chan struct{})} }
	ctx := context.Background()

	v := newVM()
	if err := v.plugAcked(ctx, "d0", func() error {
		v.deliverDeviceEvent(ost("other", 0))
		v.deliverDeviceEvent(ost("d0", 0))
		return nil
	}); err != nil {
		t.Fatalf("acked: %v", err)
	}

	v = newVM()
	err := v.plugAcked(ctx, "d0", func() error { v.deliverDeviceEvent(ost("d0", 1)); return nil })
	if !errors.Is(err, errNotAcked) || !strings.Contains(err.Error(), "status 0x1") {
		t.Fatalf("refused: %v", err)
	}

	v = newVM()
	addErr := errors.New("device_add failed")
	if err := v.plugAcked(ctx, "d0", func() error { return addErr }); !errors.Is(err, addErr) || errors.Is(err, errNotAcked) {
		t.Fatalf("add failed: %v", err)
	}

	v = newVM()
	if err := v.plugAcked(ctx, "d0", func() error { close(v.done); return nil }); !errors.Is(err, errNotAcked) || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("vm gone: %v", err)
	}
	if len(v.devEvents.waiters) != 0 {
		t.Fatalf("waiters left: %v", v.devEvents.waiters)
	}
}

// A vCPU's unplug ends with the DEVICE_DELETED of its lapic child (QEMU 7.2 sends none with
// the vCPU's id): it wakes the waiter for the vCPU, and the deletion of another device's
// child, or of a vCPU nobody waits for, wakes nobody.
func TestCPUDeletedByChild(t *testing.T) {
	v := &VM{cfg: hypervisor.Config{ID: "t"}, done: make(chan struct{})}
	gone, released, stop := v.expectDeleted("vessel-cpu-2")
	defer stop()
	if released {
		t.Fatal("released before any event")
	}
	for _, data := range []string{
		`{"path": "/machine/peripheral/vessel-cpu-1/lapic"}`,
		`{"path": "/machine/peripheral/vessel-blk-x/virtio-backend"}`,
		`{"path": "/machine/peripheral/vessel-cpu-2"}`,
		`{"path": "/machine/unattached/device[3]/lapic"}`,
	} {
		v.deviceDeleted([]byte(data))
		select {
		case <-gone:
			t.Fatalf("%s woke the waiter for vessel-cpu-2", data)
		default:
		}
	}
	v.deviceDeleted([]byte(`{"path": "/machine/peripheral/vessel-cpu-2/lapic"}`))
	select {
	case <-gone:
	default:
		t.Fatal("the lapic's deletion did not wake the waiter for vessel-cpu-2")
	}
}

// Only a VM started under KVM removes vCPUs.
func TestCanShrinkCPUs(t *testing.T) {
	for _, tc := range []struct {
		accel hypervisor.Accelerator
		want  string
	}{
		{hypervisor.AccelKVM, ""},
		{hypervisor.AccelTCG, "not done under TCG"},
		{"", "needs a vm this process started under KVM"},
	} {
		v := &VM{cfg: hypervisor.Config{ID: "t"}, accel: tc.accel}
		err := v.CanShrinkCPUs()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("accel %q: %v, want %q", tc.accel, err, tc.want)
		}
	}
}
