// Package bpf counts the IP bytes and packets of each Ember container with
// eBPF: cgroup_skb ingress and egress programs attached to the container's
// cgroup2 directory add to a per-CPU map keyed by cgroup id (the cgroup2
// directory's inode). CPU time is not counted here: the container's cpuacct
// cgroup gives it (a sched_switch program did, on every context switch of
// the host, for the same figure).
//
// Load loads the programs once per host; Attach registers one cgroup (a map
// entry) and attaches the programs to it, before the container's first
// process starts; Handle.Read returns the cgroup's cumulative counters;
// Handle.Close detaches and deletes the entry. The programs never create
// map entries, so an unregistered cgroup costs one hash lookup and leaves
// nothing behind.
//
// The C source is accounting.c; `go generate` (make generate) compiles it
// with clang into the committed accounting_bpfel.go and accounting_bpfel.o.
package bpf

//go:generate go tool bpf2go -cc clang -target bpfel -type usage accounting accounting.c -- -O2 -g -Wall -I/usr/include/x86_64-linux-gnu
