// Package logrelay is an instance's only way out to the network: a unix
// socket in the instance's socket directory (initproto.RelayName) on which
// ember-init opens connections to its logging service. The first line of
// each connection names the logging service (a LogConfig ID the agent
// registered with Allow); the relay connects to that service's endpoint
// and copies bytes both ways, so TLS and the credentials stay end to end
// between ember-init and the service.
//
// The socket belongs to the instance's mapped root with mode 0600 in a
// 0700 directory: function processes (another uid) cannot use it. Only
// registered endpoints are dialled, and never an address in
// network.Blocked (loopback, private networks, link-local...) or their
// IPv6 counterparts unless the operator allows its prefix, so a logging
// endpoint cannot be used to reach the host's own services.
package logrelay
