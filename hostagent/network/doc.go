// Package network connects function containers to the outside world. Every
// container has a network namespace of its own (ember-init makes it, with
// only a loopback, which is all a container with network "none" gets); for
// network "egress" the host agent attaches it with the CNI plugins of
// Debian's containernetworking-plugins: a veth to a bridge of the agent's,
// an address from host-local IPAM, the bridge as default gateway.
//
// An nftables table of the agent's own (one per bridge, "inet ember-<bridge>")
// then decides what a container reaches:
//   - nothing on the host itself (input from the bridge is dropped unless it
//     answers a connection the host made): not Redis, containerd, the agent,
//     the API or the broker, whatever address they listen on;
//   - no other container (bridge to bridge is dropped);
//   - no link-local (cloud metadata), loopback or private network
//     addresses, except the prefixes the operator allows (Config.Allow);
//   - anything else, masqueraded behind the host's address.
//
// The CNI plugins turn on net.ipv4.ip_forward (isGateway), host-wide.
package network
