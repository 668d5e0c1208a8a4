// Package bpf counts what each Ember container uses with eBPF: on-CPU time
// summed from the sched_switch raw tracepoint, and IP bytes and packets seen
// by cgroup_skb ingress and egress programs attached to the container's
// cgroup2 directory, all keyed by cgroup id (the cgroup2 directory's inode,
// which bpf_get_current_cgroup_id returns for the container's processes).
//
// Load loads the programs once per host and attaches the tracepoint; Attach
// registers one cgroup (a map entry) and attaches the skb programs to it,
// before the container's first process starts; Handle.Read returns the
// cgroup's cumulative counters; Handle.Close detaches and deletes the entry.
// The programs never create map entries, so an unregistered cgroup costs one
// hash lookup and leaves nothing behind.
//
// The C source is accounting.c; `go generate` (make generate) compiles it
// with clang into the committed accounting_bpfel.go and accounting_bpfel.o.
package bpf

//go:generate go tool bpf2go -cc clang -target bpfel -type usage -type oncpu accounting accounting.c -- -O2 -g -Wall -I/usr/include/x86_64-linux-gnu
