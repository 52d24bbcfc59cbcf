// Package portforward makes CRI port forwarding reach a Vessel pod.
//
// containerd's CRI serves PortForward itself: it enters the pod's network namespace on the
// host and dials 127.0.0.1:PORT (containerd 1.7 and 2.x then [::1]:PORT when that is
// refused). With Vessel that namespace holds only the pod's interfaces mirrored into the
// VM; the server listens in the guest. So the shim, when it sets up a sandbox's network:
//
//   - opens a listener on the pod namespace's loopback (127.0.0.1, and ::1 when the
//     namespace has IPv6), on a port the kernel picks;
//   - adds an nftables table (TableName, family inet) to the pod namespace whose nat output
//     chain redirects every TCP connection to 127.0.0.1 or ::1, except one to the
//     listener's own port, to that listener;
//   - reads the port the client dialled from the redirected connection (SO_ORIGINAL_DST,
//     IP6T_SO_ORIGINAL_DST), opens a connection to that port on the guest pod namespace's
//     loopback through the agent (PortForward service) and relays both ways, half-close
//     included.
//
// Nothing but CRI dials loopback in a Vessel pod's namespace on the host: the containers
// run in the guest, and CNI plugins configure the namespace over netlink. The table lives
// only in the pod's namespace; the host's own rules are untouched.
package portforward
