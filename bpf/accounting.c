// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

// Per-cgroup accounting for Ember containers: on-CPU time from sched_switch
// and IP traffic from cgroup_skb, keyed by cgroup2 id. Only cgroups that user
// space registered (an entry in `usage`) are counted: the programs never
// insert, so nothing is left behind when user space deletes the entry.

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char __license[] SEC("license") = "Dual MIT/GPL";

// Minimal kernel types, relocated with CO-RE against the running kernel's BTF.
struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup *dfl_cgrp;
} __attribute__((preserve_access_index));

struct task_struct {
	struct css_set *cgroups;
} __attribute__((preserve_access_index));

// usage is what one cgroup used; one copy per CPU, summed by user space.
struct usage {
	__u64 cpu_ns;
	__u64 rx_bytes;
	__u64 tx_bytes;
	__u64 rx_packets;
	__u64 tx_packets;
};

// oncpu is, per CPU, since when and for which cgroup the current task runs:
// user space adds the running slice of a task still on a CPU.
struct oncpu {
	__u64 since_ns;
	__u64 cgroup_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); // cgroup2 id
	__type(value, struct usage);
} usage_by_cgroup SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct oncpu);
} running SEC(".maps");

static __always_inline __u64 task_cgroup_id(struct task_struct *t)
{
	return BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
}

// sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state):
// the time since the previous switch on this CPU was prev's; charge it to
// prev's cgroup (the current one), then remember next's.
SEC("raw_tracepoint/sched_switch")
int on_sched_switch(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	struct oncpu *rc = bpf_map_lookup_elem(&running, &zero);
	if (!rc)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	if (rc->since_ns) {
		__u64 id = bpf_get_current_cgroup_id();
		struct usage *u = bpf_map_lookup_elem(&usage_by_cgroup, &id);
		if (u)
			u->cpu_ns += now - rc->since_ns;
	}
	struct task_struct *next = (struct task_struct *)ctx->args[2];
	rc->cgroup_id = task_cgroup_id(next);
	rc->since_ns = now;
	return 0;
}

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
