// Package qemutest is a fake QEMU for tests of the qemu driver and of the code above it.
// A test binary doubles as the fake: its TestMain calls Main first, and a test points the
// driver's hypervisor path at os.Executable() and names the VM with ID. The driver starts
// QEMU with "-name vessel-<vm id>" and no environment, so the mode travels in the VM id.
// The fake serves QMP on the listening socket the driver passes as fd 3, the way QEMU
// does, so process management is tested without root, a kernel or QEMU itself.
package qemutest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Mode is how the fake behaves.
type Mode string

const (
	// Normal knows stop, cont, query-status and quit, and sends their events.
	Normal Mode = "normal"
	// IgnoreQuit answers quit but keeps running (a hung QEMU).
	IgnoreQuit Mode = "ignorequit"
	// Crash exits with status 3 after its second query-status (the first is Start's), as
	// after a guest panic.
	Crash Mode = "crash"
	// Mute never accepts the QMP connection.
	Mute Mode = "mute"
	// Handover serves QMP to one client after another, as QEMU's monitor does, until
	// quit, and knows the hotplug commands a template's Grow uses.
	Handover Mode = "handover"
	// Silent answers every QMP command with success and never accepts the agent
	// connection queued on fd 4: a VM whose guest never answers.
	Silent Mode = "silent"
)

// idPrefix starts the VM ids of fakes; the driver prefixes "vessel-" for -name.
const idPrefix = "fake-"

// ID returns the id of a VM that the test binary, started by the driver as QEMU, serves in
// mode. A non-empty name tells VMs of one mode apart.
func ID(mode Mode, name string) string {
	if name == "" {
		return idPrefix + string(mode)
	}
	return idPrefix + string(mode) + "-" + name
}

// Main runs the fake and exits when the process was started as one ("-name
// vessel-fake-<mode>..."); otherwise it returns. Call it first in TestMain.
//
// "-version" prints a QEMU release: the one in the name the binary was started under
// when it ends in "qemu-<major>.<minor>" (a test links the test binary so), else 7.2.
func Main() {
	if len(os.Args) == 2 && os.Args[1] == "-version" {
		v := "7.2"
		if _, after, ok := strings.Cut(filepath.Base(os.Args[0]), "qemu-"); ok {
			v = after
		}
		fmt.Printf("QEMU emulator version %s.0 (fake)\n", v)
		os.Exit(0)
	}
	if len(os.Args) < 3 || os.Args[1] != "-name" || !strings.HasPrefix(os.Args[2], "vessel-"+idPrefix) {
		return
	}
	mode, name, _ := strings.Cut(strings.TrimPrefix(os.Args[2], "vessel-"+idPrefix), "-")
	os.Exit(serve(Mode(mode), name))
}

// serve answers QMP on the listener at fd 3 and returns the exit status.
func serve(mode Mode, name string) int {
	switch mode {
	case Normal, IgnoreQuit, Crash, Mute, Handover, Silent:
	default:
		fmt.Fprintf(os.Stderr, "fake qemu: unknown mode %q, want one of normal, ignorequit, crash, mute, handover, silent\n", mode)
		return 2
	}
	if err := checkNetdevFDs(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu:", err)
		return 1
	}
	l, err := net.FileListener(os.NewFile(3, "qmp"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu:", err)
		return 1
	}
	if mode == Mute {
		time.Sleep(time.Hour) // killed by the driver
		return 1
	}
	m := &machine{mode: mode, name: name, status: "running"}
	m.coldNICs(os.Args[1:])
	for {
		conn, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "fake qemu:", err)
			return 1
		}
		code, exit := m.session(conn)
		conn.Close()
		if exit || mode != Handover {
			return code
		}
		// The client hung up: a handover fake waits for the next one.
	}
}

// checkNetdevFDs fails, as QEMU does, when a descriptor that a -netdev option names (fd=,
// vhostfd=, or the colon-separated fds= and vhostfds= of a multiqueue tap) is not open in
// the process, or when fds= and vhostfds= differ in length.
func checkNetdevFDs(args []string) error {
	for i := 0; i+1 < len(args); i++ {
		if args[i] != "-netdev" {
			continue
		}
		counts := map[string]int{}
		for _, opt := range strings.Split(args[i+1], ",") {
			k, v, _ := strings.Cut(opt, "=")
			if k != "fd" && k != "vhostfd" && k != "fds" && k != "vhostfds" {
				continue
			}
			for _, s := range strings.Split(v, ":") {
				fd, err := strconv.Atoi(s)
				if err != nil {
					return fmt.Errorf("-netdev %s: %s=%q is not a number", args[i+1], k, v)
				}
				var st syscall.Stat_t
				if err := syscall.Fstat(fd, &st); err != nil {
					return fmt.Errorf("-netdev %s: %s=%d: %w", args[i+1], k, fd, err)
				}
				counts[k]++
			}
		}
		if counts["vhostfds"] > 0 && counts["vhostfds"] != counts["fds"] {
			return fmt.Errorf("-netdev %s: %d fds but %d vhostfds", args[i+1], counts["fds"], counts["vhostfds"])
		}
	}
	return nil
}

// coldNICs records the netdevs and virtio-net devices of the command line, as QEMU has
// them from boot.
func (m *machine) coldNICs(args []string) {
	m.fdnames, m.netdevs, m.devices = map[string]bool{}, map[string][]string{}, map[string]string{}
	for i := 0; i+1 < len(args); i++ {
		opts := map[string]string{}
		for _, o := range strings.Split(args[i+1], ",") {
			k, v, _ := strings.Cut(o, "=")
			opts[k] = v
		}
		switch {
		case args[i] == "-netdev":
			m.netdevs[opts["id"]] = []string{"fd=" + opts["fd"]}
		case args[i] == "-device" && strings.HasPrefix(args[i+1], "virtio-net-pci,") && opts["id"] != "":
			m.devices[opts["id"]] = "netdev:" + opts["netdev"]
		}
	}
}

// machine is the state of the fake VM across QMP sessions.
type machine struct {
	mode Mode
	// name is the VM's name after its mode (ID); DIMM markers in it change how the
	// guest answers a DIMM's unplug.
	name    string
	status  string // "running" or "paused"
	queries int    // query-status commands answered
	// fdsets, nodes and devices are what the disk commands made: fd set ids, block node
	// names, and device ids with the node each uses.
	fdsets  map[int]bool
	nodes   map[string]bool
	devices map[string]string
	// unplugging are devices whose device_del is pending (SlowMarker).
	unplugging map[string]bool
	// fdnames are the descriptors getfd passed that no command took over; netdevs the
	// netdev ids, each with the descriptor names it took over.
	fdnames map[string]bool
	netdevs map[string][]string
	// backends are the sizes of the memory backends object-add made, by id; dimms the
	// pc-dimm devices, in plug order; lateDeleted the DIMM whose DEVICE_DELETED comes
	// with the next command (DIMMLateMarker).
	backends    map[string]uint64
	dimms       []fakeDIMM
	lateDeleted string
}

// fakeDIMM is a pc-dimm of the fake: its id, its backend and where it sits.
type fakeDIMM struct {
	id, memdev string
	addr, size uint64
}

// DIMMBusyMarker in a VM's name makes its guest refuse every DIMM unplug (ACPI _OST
// status 0x82, device busy, after 0x84, eject in progress); DIMMLateMarker makes the
// guest release a DIMM only after the next QMP command, when the driver may have given
// up waiting. Every memory command is written to stderr like the disk commands.
const (
	DIMMBusyMarker = "dimmbusy"
	DIMMLateMarker = "dimmlate"
)

// memory answers the memory hotplug commands (object-add of a memory backend, device_add
// and device_del of a pc-dimm, query-memory-devices); ok is false for other commands.
// events are to be sent after the answer, as name and data.
func (m *machine) memory(execute string, args map[string]any) (ret string, errDesc string, events [][2]string, ok bool) {
	if m.backends == nil {
		m.backends = map[string]uint64{}
	}
	str := func(k string) string { s, _ := args[k].(string); return s }
	switch execute {
	case "object-add":
		if t := str("qom-type"); t != "memory-backend-ram" && t != "memory-backend-memfd" {
			return "", "", nil, false
		}
		size, _ := args["size"].(float64)
		if _, dup := m.backends[str("id")]; dup || size <= 0 {
			return "", fmt.Sprintf("attempt to add duplicate or empty object id '%s'", str("id")), nil, true
		}
		m.backends[str("id")] = uint64(size)
		return "{}", "", nil, true
	case "device_add":
		if str("driver") != "pc-dimm" {
			return "", "", nil, false
		}
		size, ok := m.backends[str("memdev")]
		if !ok {
			return "", fmt.Sprintf("can't find memdev '%s'", str("memdev")), nil, true
		}
		addr := uint64(4 << 30)
		for _, d := range m.dimms {
			addr = max(addr, d.addr+d.size)
		}
		m.dimms = append(m.dimms, fakeDIMM{id: str("id"), memdev: str("memdev"), addr: addr, size: size})
		ost := fmt.Sprintf(`{"info": {"device": %q, "slot": "%d", "slot-type": "DIMM", "source": 1, "status": 0}}`, str("id"), len(m.dimms)-1)
		return "{}", "", [][2]string{{"ACPI_DEVICE_OST", ost}}, true
	case "device_del":
		id := str("id")
		i := slices.IndexFunc(m.dimms, func(d fakeDIMM) bool { return d.id == id })
		if i < 0 {
			return "", "", nil, false // a disk or a NIC
		}
		ost := func(status int) [2]string {
			return [2]string{"ACPI_DEVICE_OST", fmt.Sprintf(`{"info": {"device": %q, "slot": "%d", "slot-type": "DIMM", "source": 3, "status": %d}}`, id, i, status)}
		}
		switch {
		case strings.Contains(m.name, DIMMBusyMarker):
			return "{}", "", [][2]string{ost(0x84), ost(0x82)}, true
		case strings.Contains(m.name, DIMMLateMarker):
			m.lateDeleted = id
			return "{}", "", [][2]string{ost(0x84)}, true
		}
		m.dimms = slices.Delete(m.dimms, i, i+1)
		return "{}", "", [][2]string{ost(0x84), {"DEVICE_DELETED", fmt.Sprintf(`{"device": %q, "path": "/machine/peripheral/%s"}`, id, id)}}, true
	case "object-del":
		if _, ok := m.backends[str("id")]; !ok {
			return "", "", nil, false
		}
		for _, d := range m.dimms {
			if d.memdev == str("id") {
				return "", fmt.Sprintf("object '%s' is in use, can not be deleted", str("id")), nil, true
			}
		}
		delete(m.backends, str("id"))
		return "{}", "", nil, true
	case "query-memory-devices":
		out := make([]string, 0, len(m.dimms))
		for i, d := range m.dimms {
			out = append(out, fmt.Sprintf(`{"type": "dimm", "data": {"id": %q, "addr": %d, "size": %d, "memdev": "/objects/%s", "slot": %d, "node": 0, "hotplugged": true, "hotpluggable": true}}`,
				d.id, d.addr, d.size, d.memdev, i))
		}
		return "[" + strings.Join(out, ",") + "]", "", nil, true
	}
	return "", "", nil, false
}

// releaseLate releases the DIMM whose release DIMMLateMarker delayed: it leaves the fake
// and its DEVICE_DELETED data is returned ("" when there is none).
func (m *machine) releaseLate() string {
	id := m.lateDeleted
	if id == "" {
		return ""
	}
	m.lateDeleted = ""
	m.dimms = slices.DeleteFunc(m.dimms, func(d fakeDIMM) bool { return d.id == id })
	return fmt.Sprintf(`{"device": %q, "path": "/machine/peripheral/%s"}`, id, id)
}

// FailMarker in a disk's node name makes the fake refuse its device_add, so that tests
// see the driver undo the blockdev-add. The fake refuses blockdev-add with aio io_uring,
// as a QEMU built without it does, and writes every disk command to stderr (qemu.log) as
// "qmp: <command> <arguments as JSON>".
const FailMarker = "faildev"

// SlowMarker in a disk's device id makes the fake's guest slow to release it: the first
// device_del sends no DEVICE_DELETED; a second one is refused as already in progress,
// as QEMU does, and then the event comes.
const SlowMarker = "slowdel"

// FailMarker at the start of a NIC's id makes the fake refuse its netdev_add (before
// taking over its descriptors), and at the end of the id its device_add, so that tests see
// the driver undo what it did. Every network command is written to stderr like the
// disk commands.

// network answers the network device commands (getfd, closefd, netdev_add, netdev_del,
// device_add of virtio-net-pci); device_del is the disks'. ok is false for other commands.
func (m *machine) network(execute string, args map[string]any) (ret string, errDesc string, ok bool) {
	if m.fdnames == nil {
		m.fdnames, m.netdevs = map[string]bool{}, map[string][]string{}
	}
	str := func(k string) string { s, _ := args[k].(string); return s }
	switch execute {
	case "getfd":
		if str("fdname") == "" {
			return "", "Parameter 'fdname' is missing", true
		}
		m.fdnames[str("fdname")] = true
		return "{}", "", true
	case "closefd":
		if !m.fdnames[str("fdname")] {
			return "", fmt.Sprintf("File descriptor named '%s' not found", str("fdname")), true
		}
		delete(m.fdnames, str("fdname"))
		return "{}", "", true
	case "netdev_add":
		id := str("id")
		if _, dup := m.netdevs[id]; dup {
			return "", fmt.Sprintf("Duplicate ID '%s' for netdev", id), true
		}
		if str("type") != "tap" || strings.HasPrefix(id, FailMarker) {
			return "", fmt.Sprintf("netdev '%s' refused", id), true
		}
		var took []string
		count := map[string]int{}
		for _, k := range []string{"fd", "vhostfd", "fds", "vhostfds"} {
			if str(k) == "" {
				continue
			}
			for _, name := range strings.Split(str(k), ":") {
				if !m.fdnames[name] {
					return "", fmt.Sprintf("File descriptor named '%s' has not been found", name), true
				}
				delete(m.fdnames, name)
				took = append(took, name)
				count[k]++
			}
		}
		if len(took) == 0 {
			return "", "tap: no fd", true
		}
		if count["vhostfds"] > 0 && count["vhostfds"] != count["fds"] {
			return "", "The number of vhostfds must match the number of fds", true
		}
		m.netdevs[id] = took
		return "{}", "", true
	case "netdev_del":
		id := str("id")
		if _, ok := m.netdevs[id]; !ok {
			return "", fmt.Sprintf("Device '%s' not found", id), true
		}
		for _, n := range m.devices {
			if n == "netdev:"+id {
				return "", fmt.Sprintf("netdev '%s' is in use", id), true
			}
		}
		delete(m.netdevs, id)
		return "{}", "", true
	case "device_add":
		if args["driver"] != "virtio-net-pci" {
			return "", "", false
		}
		id, netdev := str("id"), str("netdev")
		took, ok := m.netdevs[netdev]
		if !ok || strings.HasSuffix(id, FailMarker) {
			return "", fmt.Sprintf("Property 'virtio-net-pci.netdev' can't find value '%s' or refused", netdev), true
		}
		// A multiqueue netdev needs mq and 2N+2 vectors on its device (N queue pairs).
		queues := 0
		for _, name := range took {
			if strings.Contains(name, "-tap-") {
				queues++
			}
		}
		if mq, _ := args["mq"].(bool); queues > 1 && (!mq || args["vectors"] != float64(2*queues+2)) {
			return "", fmt.Sprintf("netdev '%s' has %d queues: want mq and %d vectors, got mq %v vectors %v", netdev, queues, 2*queues+2, args["mq"], args["vectors"]), true
		}
		if m.devices == nil {
			m.devices = map[string]string{}
		}
		m.devices[id] = "netdev:" + netdev
		return "{}", "", true
	}
	return "", "", false
}

// disk answers the block device commands; ok is false for other commands.
func (m *machine) disk(execute string, args map[string]any) (ret string, errDesc string, events []string, ok bool) {
	if m.fdsets == nil {
		m.fdsets, m.nodes, m.unplugging = map[int]bool{}, map[string]bool{}, map[string]bool{}
	}
	if m.devices == nil {
		m.devices = map[string]string{}
	}
	str := func(k string) string { s, _ := args[k].(string); return s }
	switch execute {
	case "add-fd":
		id := len(m.fdsets) + 1
		for m.fdsets[id] {
			id++
		}
		m.fdsets[id] = true
		return fmt.Sprintf(`{"fdset-id": %d, "fd": %d}`, id, 100+id), "", nil, true
	case "remove-fd":
		id := int(args["fdset-id"].(float64))
		if !m.fdsets[id] {
			return "", fmt.Sprintf("File descriptor named 'fdset-id:%d' not found", id), nil, true
		}
		delete(m.fdsets, id)
		return "{}", "", nil, true
	case "blockdev-add":
		node := str("node-name")
		if m.nodes[node] {
			return "", fmt.Sprintf("Duplicate nodes with node-name='%s'", node), nil, true
		}
		if str("aio") == "io_uring" {
			return "", "Unable to use io_uring: failed to init linux io_uring ring: Function not implemented", nil, true
		}
		m.nodes[node] = true
		return "{}", "", nil, true
	case "blockdev-del":
		node := str("node-name")
		if !m.nodes[node] {
			return "", fmt.Sprintf("Failed to find node with node-name='%s'", node), nil, true
		}
		for _, n := range m.devices {
			if n == node {
				return "", fmt.Sprintf("Node '%s' is busy: node is used as backing hd", node), nil, true
			}
		}
		delete(m.nodes, node)
		return "{}", "", nil, true
	case "device_add":
		if args["driver"] != "virtio-blk-pci" && args["driver"] != "scsi-hd" {
			return "", "", nil, false // CPU and memory hotplug (template_resize.go)
		}
		node := str("drive")
		if !m.nodes[node] || strings.Contains(node, FailMarker) {
			return "", fmt.Sprintf("Drive '%s' not found or refused", node), nil, true
		}
		m.devices[str("id")] = node
		return "{}", "", nil, true
	case "device_del":
		id := str("id")
		if _, ok := m.devices[id]; !ok {
			return "", fmt.Sprintf("Device '%s' not found", id), nil, true
		}
		deleted := []string{fmt.Sprintf(`{"device": %q, "path": "/machine/peripheral/%s"}`, id, id)}
		if strings.Contains(id, SlowMarker) {
			if !m.unplugging[id] {
				m.unplugging[id] = true
				return "{}", "", nil, true
			}
			delete(m.unplugging, id)
			delete(m.devices, id)
			return "", fmt.Sprintf("Device %s is already in the process of unplug", id), deleted, true
		}
		delete(m.devices, id)
		return "{}", "", []string{fmt.Sprintf(`{"device": %q, "path": "/machine/peripheral/%s"}`, id, id)}, true
	case "object-add":
		if args["qom-type"] != "throttle-group" {
			return "", "", nil, false // memory backends (template_resize.go)
		}
		return "{}", "", nil, true
	case "object-del":
		return "{}", "", nil, true
	case "block_resize":
		node := str("node-name")
		if !m.nodes[node] {
			return "", fmt.Sprintf("Cannot find device='' nor node-name='%s'", node), nil, true
		}
		if size, _ := args["size"].(float64); size <= 0 {
			return "", "Parameter size must be a positive number", nil, true
		}
		return "{}", "", nil, true
	case "query-named-block-nodes":
		var out []string
		for n := range m.nodes {
			out = append(out, fmt.Sprintf(`{"node-name": %q, "drv": "file", "ro": false}`, n))
		}
		return "[" + strings.Join(out, ",") + "]", "", nil, true
	}
	return "", "", nil, false
}

// session serves one QMP client until it hangs up (exit false) or the fake is to exit
// with code (exit true).
func (m *machine) session(conn net.Conn) (code int, exit bool) {
	send := func(s string) { _, _ = fmt.Fprintf(conn, "%s\r\n", s) }
	event := func(name, data string) {
		send(fmt.Sprintf(`{"timestamp": {"seconds": %d, "microseconds": 0}, "event": %q, "data": %s}`, time.Now().Unix(), name, data))
	}
	send(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "fake"}, "capabilities": ["oob"]}}`)
	dec := json.NewDecoder(bufio.NewReader(conn))
	for {
		var cmd struct {
			Execute   string          `json:"execute"`
			Arguments map[string]any  `json:"arguments"`
			ID        json.RawMessage `json:"id"`
		}
		if err := dec.Decode(&cmd); err != nil {
			return 0, false
		}
		ret := func(v string) { send(`{"return": ` + v + `, "id": ` + string(cmd.ID) + `}`) }
		if late := m.releaseLate(); late != "" {
			event("DEVICE_DELETED", late)
		}
		if r, desc, events, ok := m.memory(cmd.Execute, cmd.Arguments); ok {
			a, _ := json.Marshal(cmd.Arguments)
			fmt.Fprintf(os.Stderr, "qmp: %s %s\n", cmd.Execute, a)
			if desc != "" {
				send(fmt.Sprintf(`{"error": {"class": "GenericError", "desc": %q}, "id": %s}`, desc, cmd.ID))
			} else {
				ret(r)
			}
			for _, e := range events {
				event(e[0], e[1])
			}
			continue
		}
		if r, desc, ok := m.network(cmd.Execute, cmd.Arguments); ok {
			a, _ := json.Marshal(cmd.Arguments)
			fmt.Fprintf(os.Stderr, "qmp: %s %s\n", cmd.Execute, a)
			if desc != "" {
				send(fmt.Sprintf(`{"error": {"class": "GenericError", "desc": %q}, "id": %s}`, desc, cmd.ID))
			} else {
				ret(r)
			}
			continue
		}
		if r, desc, events, ok := m.disk(cmd.Execute, cmd.Arguments); ok {
			a, _ := json.Marshal(cmd.Arguments)
			fmt.Fprintf(os.Stderr, "qmp: %s %s\n", cmd.Execute, a)
			if desc != "" {
				cls := "GenericError"
				if cmd.Execute == "device_del" && !strings.Contains(desc, "process of unplug") {
					cls = "DeviceNotFound"
				}
				send(fmt.Sprintf(`{"error": {"class": %q, "desc": %q}, "id": %s}`, cls, desc, cmd.ID))
			} else {
				ret(r)
			}
			for _, e := range events {
				event("DEVICE_DELETED", e)
			}
			continue
		}
		switch cmd.Execute {
		case "qmp_capabilities", "object-add":
			ret(`{}`)
		case "device_add":
			ret(`{}`)
			// The guest answers an ACPI hot-plug (a vCPU or a DIMM) with _OST.
			driver, _ := cmd.Arguments["driver"].(string)
			id, _ := cmd.Arguments["id"].(string)
			slotType := map[string]string{"pc-dimm": "DIMM"}[driver]
			if slotType == "" && strings.HasSuffix(driver, "-cpu") {
				slotType = "CPU"
			}
			if slotType != "" {
				event("ACPI_DEVICE_OST", fmt.Sprintf(`{"info": {"device": %q, "slot": "1", "slot-type": %q, "source": 1, "status": 0}}`, id, slotType))
			}
		case "query-status":
			ret(fmt.Sprintf(`{"status": %q, "singlestep": false, "running": %v}`, m.status, m.status == "running"))
			m.queries++
			if m.mode == Crash && m.queries == 2 {
				fmt.Fprintln(os.Stderr, "fake qemu: guest crashed")
				event("SHUTDOWN", `{"guest": true, "reason": "guest-panic"}`)
				return 3, true
			}
		case "stop":
			m.status = "paused"
			event("STOP", `{}`)
			ret(`{}`)
		case "cont":
			m.status = "running"
			event("RESUME", `{}`)
			ret(`{}`)
		case "query-hotpluggable-cpus":
			ret(`[{"type": "max-x86_64-cpu", "vcpus-count": 1, "props": {"socket-id": 0, "core-id": 1, "thread-id": 0}},
			      {"type": "max-x86_64-cpu", "vcpus-count": 1, "props": {"socket-id": 0, "core-id": 0, "thread-id": 0}, "qom-path": "/machine/unattached/device[0]"}]`)
		case "quit":
			if m.mode == IgnoreQuit {
				ret(`{}`)
				continue
			}
			event("SHUTDOWN", `{"guest": false, "reason": "host-qmp-quit"}`)
			ret(`{}`)
			return 0, true
		default:
			if m.mode == Silent {
				ret(`{}`)
				continue
			}
			send(`{"error": {"class": "CommandNotFound", "desc": "fake"}, "id": ` + string(cmd.ID) + `}`)
		}
	}
}
