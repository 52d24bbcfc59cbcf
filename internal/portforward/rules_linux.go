//go:build linux

package portforward

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TableName is the nftables table (family inet) the forwarder adds to a pod's network
// namespace.
const TableName = "vessel_portforward"

// chainName is the table's nat output chain.
const chainName = "output"

// Ports are the listener's ports: IPv4 on 127.0.0.1, IPv6 on ::1 (0: no IPv6 listener).
type Ports struct {
	V4, V6 uint16
}

// openNS opens the network namespace at path.
func openNS(path string) (netns.NsHandle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return netns.None(), fmt.Errorf("open network namespace %s: %w", path, err)
	}
	return ns, nil
}

// installRules replaces the forwarder's table in ns with one redirecting loopback TCP to
// ports.
func installRules(ns netns.NsHandle, ports Ports) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	// Adding then deleting the table in the same batch removes one left over from before
	// (the batch fails if the table is absent only for the delete without the add).
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{
		Name:     chainName,
		Table:    t,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookOutput,
		Priority: nftables.ChainPriorityNATDest,
	})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: redirectExprs(unix.NFPROTO_IPV4, net.IPv4(127, 0, 0, 1).To4(), ports.V4)})
	if ports.V6 != 0 {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: redirectExprs(unix.NFPROTO_IPV6, net.IPv6loopback, ports.V6)})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: add table inet %s: %w", TableName, err)
	}
	return nil
}

// redirectExprs is the rule "meta nfproto F meta l4proto tcp ip[6] daddr ADDR tcp dport !=
// PORT redirect to :PORT".
func redirectExprs(family byte, addr net.IP, port uint16) []expr.Any {
	daddrOffset := uint32(16) // IPv4 header: destination address
	if family == unix.NFPROTO_IPV6 {
		daddrOffset = 24
	}
	p := binaryutil.BigEndian.PutUint16(port)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{family}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: daddrOffset, Len: uint32(len(addr))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: p},
		&expr.Immediate{Register: 1, Data: p},
		&expr.Redir{RegisterProtoMin: 1},
	}
}

// RemoveRules deletes the forwarder's table from the network namespace at path. A table or
// namespace that is not there is no error.
func RemoveRules(path string) error {
	ns, err := netns.GetFromPath(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove port-forward rules: open %s: %w", path, err)
	}
	defer ns.Close()
	has, err := HasRules(ns)
	if err != nil || !has {
		return err
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("remove port-forward rules in %s: nftables: %w", path, err)
	}
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: TableName})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove port-forward rules in %s: delete table inet %s: %w", path, TableName, err)
	}
	return nil
}

// HasRules reports whether the forwarder's table is in ns.
func HasRules(ns netns.NsHandle) (bool, error) {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("nftables: list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == TableName {
			return true, nil
		}
	}
	return false, nil
}
