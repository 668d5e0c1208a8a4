// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

// Per-cgroup network accounting for Ember containers: IP traffic from
// cgroup_skb programs, keyed by cgroup2 id. Only cgroups that user space
// registered (an entry in `usage_by_cgroup`) are counted: the programs never
// insert, so nothing is left behind when user space deletes the entry. (CPU
// time comes from the container's cpuacct cgroup: a sched_switch program
// gave the same figure at a cost on every context switch of the host.)

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "Dual MIT/GPL";

// usage is what one cgroup sent and received; one copy per CPU, summed by
// user space.
struct usage {
	__u64 rx_bytes;
	__u64 tx_bytes;
	__u64 rx_packets;
	__u64 tx_packets;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); // cgroup2 id
	__type(value, struct usage);
} usage_by_cgroup SEC(".maps");

static __always_inline void count_skb(struct __sk_buff *skb, int egress)
{
	__u64 id = bpf_skb_cgroup_id(skb);
	struct usage *u = bpf_map_lookup_elem(&usage_by_cgroup, &id);
	if (!u)
		return;
	__u64 pkts = skb->gso_segs ? skb->gso_segs : 1;
	if (egress) {
		u->tx_bytes += skb->len;
		u->tx_packets += pkts;
	} else {
		u->rx_bytes += skb->len;
		u->rx_packets += pkts;
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
