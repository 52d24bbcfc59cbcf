package hostcgroup

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/containerd/errdefs"
	systemd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// SystemdRunning reports whether systemd is the host's init, as sd_booted(3) tells.
func SystemdRunning() bool {
	st, err := os.Lstat("/run/systemd/system")
	return err == nil && st.IsDir()
}

// systemdConn is a connection to systemd's manager on the system bus.
type systemdConn struct {
	conn *systemd.Conn
}

// dialSystemd connects to systemd; a host where systemd is not the init is refused.
func dialSystemd(ctx context.Context) (*systemdConn, error) {
	if !SystemdRunning() {
		return nil, fmt.Errorf("the systemd cgroup driver needs systemd as the host's init, and this host does not run it "+
			"(no /run/systemd/system); give a cgroupfs path instead: %w", errdefs.ErrNotImplemented)
	}
	c, err := systemd.NewWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd: %w", err)
	}
	return &systemdConn{conn: c}, nil
}

func (s *systemdConn) close() { s.conn.Close() }

// startScope makes t's scope unit in t's slice with pid in it, as runc's systemd driver
// does, and waits until systemd reports the job done. Delegate lets the scope's
// processes own its cgroup below; the scope ends by itself when its last process leaves.
func (s *systemdConn) startScope(ctx context.Context, t Target, id string, pid int) error {
	props := []systemd.Property{
		systemd.PropDescription("vessel sandbox " + id),
		systemd.PropSlice(t.Slice),
		systemd.PropPids(uint32(pid)),
		{Name: "Delegate", Value: godbus.MakeVariant(true)},
		{Name: "DefaultDependencies", Value: godbus.MakeVariant(false)},
		{Name: "MemoryAccounting", Value: godbus.MakeVariant(true)},
		{Name: "CPUAccounting", Value: godbus.MakeVariant(true)},
	}
	done := make(chan string, 1)
	if _, err := s.conn.StartTransientUnitContext(ctx, t.Unit, "replace", props, done); err != nil {
		return fmt.Errorf("start systemd scope %s in %s: %w", t.Unit, t.Slice, err)
	}
	select {
	case result := <-done:
		if result != "done" {
			return fmt.Errorf("start systemd scope %s in %s: job %s", t.Unit, t.Slice, result)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("start systemd scope %s: %w", t.Unit, context.Cause(ctx))
	}
}

// attach moves pid into the scope unit.
func (s *systemdConn) attach(unit string, pid int) error {
	if s == nil {
		return errors.New("no systemd connection")
	}
	return s.conn.AttachProcessesToUnit(context.Background(), unit, "", []uint32{uint32(pid)})
}
