// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

// Per-cgroup network accounting for Ember containers: IP traffic from
// cgroup_skb programs, keyed by cgroup2 id. Only cgroups that user space
// registered (an entry in `slot_by_cgroup`) are counted: the programs never
// insert, so nothing is left behind when user space deletes the entry. (CPU
// time comes from the container's cpuacct cgroup: a sched_switch program
// gave the same figure at a cost on every context switch of the host.)
//
// The counters live in a memory-mappable array, one slot per registered
// cgroup, added to atomically: user space reads a cgroup's counters from
// its mapping of the array, without a system call.

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "Dual MIT/GPL";

#define SLOTS 16384

// usage is what one cgroup sent and received.
struct usage {
	__u64 rx_bytes;
	__u64 tx_bytes;
	__u64 rx_packets;
	__u64 tx_packets;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLOTS);
	__type(key, __u64);   // cgroup2 id
	__type(value, __u32); // its slot in usage_slots
} slot_by_cgroup SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, struct usage);
} usage_slots SEC(".maps");

static __always_inline void count_skb(struct __sk_buff *skb, int egress)
{
	__u64 id = bpf_skb_cgroup_id(skb);
	__u32 *slot = bpf_map_lookup_elem(&slot_by_cgroup, &id);
	if (!slot)
		return;
	struct usage *u = bpf_map_lookup_elem(&usage_slots, slot);
	if (!u)
		return;
	__u64 pkts = skb->gso_segs ? skb->gso_segs : 1;
	if (egress) {
		__sync_fetch_and_add(&u->tx_bytes, skb->len);
		__sync_fetch_and_add(&u->tx_packets, pkts);
	} else {
		__sync_fetch_and_add(&u->rx_bytes, skb->len);
		__sync_fetch_and_add(&u->rx_packets, pkts);
	}
}

SEC("cgroup_skb/ingress")
int count_ingress(struct __sk_buff *skb)
{
	count_skb(skb, 0);
	return 1; // allow
}

SEC("cgroup_skb/egress")
int count_egress(struct __sk_buff *skb)
{
	count_skb(skb, 1);
	return 1; // allow
}
