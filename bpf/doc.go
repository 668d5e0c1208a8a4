// Package bpf counts the IP bytes and packets of each Ember container with
// eBPF: cgroup_skb ingress and egress programs attached to the container's
// cgroup2 directory look up the cgroup's slot by its id (the cgroup2
// directory's inode) and add to that slot of a memory-mapped array, which
// user space reads without a system call (the agent reads it twice per
// invocation). CPU time is not counted here: the container's cpuacct
// cgroup gives it (a sched_switch program did, on every context switch of
// the host, for the same figure).
//
// Load loads the programs once per host; Attach registers one cgroup (a map
// entry naming a zeroed slot) and attaches the programs to it, before the
// container's first process starts; Handle.Read returns the cgroup's
// cumulative counters; Handle.Close detaches, deletes the entry and frees
// the slot (reused after every never used one and every older one). The
// programs never create map entries, so an unregistered cgroup costs one
// hash lookup and leaves nothing behind.
//
// The C source is accounting.c; `go generate` (make generate) compiles it
// with clang into the committed accounting_bpfel.go and accounting_bpfel.o.
package bpf

//go:generate go tool bpf2go -cc clang -target bpfel -type usage accounting accounting.c -- -O2 -g -Wall -I/usr/include/x86_64-linux-gnu
