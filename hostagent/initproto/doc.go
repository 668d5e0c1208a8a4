// Package initproto is the wire protocol between a host agent and ember-init,
// the PID 1 of every instance. ember-init listens on a unix stream socket in
// a host directory that is bind-mounted into the instance; the agent
// connects to it. Each frame is
//
//	uint32 big-endian length of the rest | uint8 type | uint32 seq |
//	uint32 header length | header | body
//
// Headers are JSON, except an invocation's Invoke and Result once both
// ends said they read protobuf's wire format for them (wire.go): ember-init
// in Hello, the agent by sending one. Either end may be older than the
// other (instances outlive an agent's upgrade), so each keeps the other's
// encoding.
//
// Requests carry a seq that the reply echoes; events carry seq 0. File
// descriptors (a container's cgroup directories) travel with a frame as
// SCM_RIGHTS ancillary data. A warm round trip costs tens of microseconds,
// which is why invocations never use a containerd exec (~50 ms here).
package initproto
