// Package network attaches a VM to a pod's network namespace on the host and describes that
// network to the guest.
//
// The container manager (CNI through containerd's CRI, nerdctl, podman, or a hand-made netns)
// puts interfaces into the pod's network namespace; Attach finds them there and, for each one
// (veth, macvlan, ipvlan), with the "tcfilter" model creates a tap device in the same
// namespace and joins the two with tc: an ingress qdisc on each and a u32 filter whose mirred
// action redirects every frame arriving on one to the other's egress. The VMM gets the tap's
// descriptor (and a vhost-net descriptor when available), never the namespace: it is not moved
// into the pod network and needs no network privilege. The guest NIC takes the interface's MAC
// address, so the manager's neighbour entries and ARP caches stay valid; the interface's
// addresses, MTU, routes and permanent neighbours are returned for the guest agent. With the
// "macvtap" model each veth gets a bridge-mode macvtap with its MAC instead (the veth takes
// a random MAC and NOARP until teardown). With several vCPUs a NIC has one queue pair per
// vCPU (a multiqueue tap; a macvtap opened once per queue).
//
// CreateNetNS makes the namespace for a spec that asks for a new one; InNetNSPath runs code
// in it (a process started there, such as the OCI hooks' state pid, stays in it).
//
// Rescan does the same for interfaces that appear in the namespace later, and reports the
// attached ones that left it; Detach removes one endpoint once the VM let go of its tap.
//
// Everything Attach creates is recorded in a state file in the sandbox directory before it is
// created, so Teardown removes exactly that (taps, and the ingress qdiscs with their filters)
// and nothing of the manager's, also from another process after the first one died.
package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/containerd/errdefs"

	agentv1 "github.com/vessel-containers/vessel/api/agent/v1"
	"github.com/vessel-containers/vessel/internal/atomicfile"
)

// Model is how the VM joins the pod network (runtime.internetworking_model).
type Model string

const (
	// ModelTCFilter mirrors each pod interface to a tap with tc ingress qdiscs and mirred
	// redirect filters.
	ModelTCFilter Model = "tcfilter"
	// ModelNone attaches nothing: the guest has loopback only.
	ModelNone Model = "none"
	// ModelMacvtap puts a macvtap device (bridge mode) on each pod veth, with the veth's
	// MAC; the veth gets a random MAC and stops answering ARP while it is attached.
	ModelMacvtap Model = "macvtap"
)

// Config says which network namespace to attach and how.
type Config struct {
	// NetNS is the path of the pod's network namespace (the spec's linux.namespaces network
	// path); empty attaches nothing.
	NetNS string
	// Model is how to attach (empty means ModelTCFilter).
	Model Model
	// VhostNet hands the VMM a /dev/vhost-net descriptor per NIC when the device exists.
	VhostNet bool
	// NewNetNS asks for a network namespace of the sandbox's own when NetNS is empty (the
	// spec asks for a new one without a path): the sandbox makes it (CreateNetNS), attaches
	// what the manager puts there later, and removes it with the sandbox.
	NewNetNS bool
	// Queues is the number of queue pairs of each NIC (0 is 1): with more than one the tap
	// is opened with IFF_MULTI_QUEUE, once per queue, with a vhost-net descriptor each.
	Queues int
}

// StateName is the file in the sandbox directory that records what Attach created.
const StateName = "network.json"

// stateVersion is the format of StateName.
const stateVersion = 1

// State records what Attach created in a network namespace, so that Teardown removes that
// and nothing else.
type State struct {
	Version int    `json:"version"`
	NetNS   string `json:"netns"`
	// Endpoints are the attached interfaces, in attach order.
	Endpoints []Endpoint `json:"endpoints,omitempty"`
}

// Endpoint is one pod interface joined to a tap.
type Endpoint struct {
	// Link and LinkIndex name the manager's interface (veth, macvlan, ipvlan).
	Link      string `json:"link"`
	LinkIndex int    `json:"link_index"`
	// Tap is the tap Attach creates; TapIndex is 0 until it exists.
	Tap      string `json:"tap"`
	TapIndex int    `json:"tap_index,omitempty"`
	// LinkIngress records that Attach added the ingress qdisc (and with it the filter) on
	// the manager's interface; removing the qdisc removes the filter.
	LinkIngress bool `json:"link_ingress,omitempty"`
	// NIC is the id of the VM's network device on the tap (NIC.ID).
	NIC string `json:"nic,omitempty"`
	// Macvtap says that Tap is a macvtap device on Link (the macvtap model). LinkMAC is
	// Link's own MAC, which the macvtap took over (Link has a random one while attached);
	// LinkNoARP records that Attach set IFF_NOARP on Link. Teardown gives both back.
	Macvtap   bool   `json:"macvtap,omitempty"`
	LinkMAC   string `json:"link_mac,omitempty"`
	LinkNoARP bool   `json:"link_noarp,omitempty"`
}

// freeNumber is the lowest N whose tap (vsl_tapN) and NIC (vsl-netN) no endpoint has.
func (st *State) freeNumber() int {
	for n := 0; ; n++ {
		if !slices.ContainsFunc(st.Endpoints, func(e Endpoint) bool { return e.Tap == tapName(n) || e.NIC == nicID(n) }) {
			return n
		}
	}
}

// NIC is one network device for the VM: the tap's descriptor and the guest MAC address.
type NIC struct {
	// ID names the device on the VMM's command line.
	ID string
	// MAC is the guest NIC's address: the pod interface's.
	MAC string
	// Tap is the tap's (first) queue descriptor; Vhost the vhost-net descriptor or nil.
	Tap   *os.File
	Vhost *os.File
	// MoreQueues are the further queues of a multiqueue tap (Config.Queues), each with a
	// vhost-net descriptor when Vhost is set.
	MoreQueues []Queue
}

// Queue is one further queue of a multiqueue tap.
type Queue struct {
	Tap   *os.File
	Vhost *os.File
}

// Attachment is what Attach or Rescan did: the NICs for the VMM, and the guest's
// configuration.
type Attachment struct {
	NICs []NIC
	// Interfaces, Routes and Neighbors configure the guest (agent UpdateInterface,
	// UpdateRoutes, AddARPNeighbors); interfaces carry the MAC the guest NIC has.
	Interfaces []*agentv1.Interface
	Routes     []*agentv1.Route
	Neighbors  []*agentv1.ARPNeighbor
	// Added are the endpoints this call attached, in the order of NICs.
	Added []Endpoint
	// Gone are the recorded endpoints whose interface left the namespace (Rescan): detach
	// their NICs from the VM, then Detach them.
	Gone []Endpoint
}

// CloseFiles closes the descriptors of the NICs: once the VMM holds its copies, or when
// the attachment is abandoned.
func (a *Attachment) CloseFiles() {
	if a == nil {
		return
	}
	for _, n := range a.NICs {
		for _, q := range append([]Queue{{Tap: n.Tap, Vhost: n.Vhost}}, n.MoreQueues...) {
			if q.Tap != nil {
				_ = q.Tap.Close()
			}
			if q.Vhost != nil {
				_ = q.Vhost.Close()
			}
		}
	}
}

// ParseModel checks a model name.
func ParseModel(s string) (Model, error) {
	switch Model(s) {
	case "", ModelTCFilter:
		return ModelTCFilter, nil
	case ModelNone:
		return ModelNone, nil
	case ModelMacvtap:
		return ModelMacvtap, nil
	}
	return "", fmt.Errorf("internetworking_model %q: %w: want tcfilter, macvtap or none", s, errdefs.ErrInvalidArgument)
}

// tapName is the N-th tap. Names are at most 15 bytes (IFNAMSIZ-1).
func tapName(n int) string { return fmt.Sprintf("vsl_tap%d", n) }

// nicID is the id of the VM's N-th network device, the one on tap N.
func nicID(n int) string { return fmt.Sprintf("vsl-net%d", n) }

// saveState writes st into dir.
func saveState(dir string, st *State) error {
	st.Version = stateVersion
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode network state: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, StateName), data, 0o600); err != nil {
		return fmt.Errorf("save network state: %w", err)
	}
	return nil
}

// LoadState reads the state Attach left in dir; errdefs.ErrNotFound when there is none.
func LoadState(dir string) (*State, error) {
	path := filepath.Join(dir, StateName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("network state %s: %w", path, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("network state: %w", err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("network state %s: corrupt: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("network state %s: format version %d, this vessel reads %d: %w", path, st.Version, stateVersion, errdefs.ErrNotImplemented)
	}
	return &st, nil
}

// removeState removes the state file; a missing one is not an error.
func removeState(dir string) error {
	if err := os.Remove(filepath.Join(dir, StateName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove network state: %w", err)
	}
	return nil
}
