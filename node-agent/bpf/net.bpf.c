// SPDX-License-Identifier: GPL-2.0-only
//
// Bytes and packets per (socket cgroup, interface, direction), counted by cgroup_skb programs
// attached to the root of the cgroup v2 hierarchy with BPF_F_ALLOW_MULTI, so that they see the
// traffic of every socket on the host and coexist with other programs (systemd's IP
// accounting, CNI policies). The agent maps cgroup ids (inode numbers of v2 cgroup
// directories) to containers.
//
// Only uapi headers: no kernel struct is read, so nothing depends on the running kernel's
// layout.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct net_key {
	__u64 cgroup_id;
	__u32 ifindex;
	// 0 = received (ingress), 1 = transmitted (egress).
	__u32 direction;
};

struct net_counters {
	__u64 bytes;
	__u64 packets;
};

// LRU: host services' cgroups churn too; the least recently active keys go first when full.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct net_key);
	__type(value, struct net_counters);
} net_stats SEC(".maps");

static __always_inline void count(struct __sk_buff *skb, __u32 direction)
{
	struct net_key key = {
		.cgroup_id = bpf_skb_cgroup_id(skb),
		.ifindex = skb->ifindex,
		.direction = direction,
	};
	struct net_counters *c = bpf_map_lookup_elem(&net_stats, &key);
	if (!c) {
		struct net_counters zero = {};
		// Another CPU may have inserted the key meanwhile (EEXIST): then look it up again.
		bpf_map_update_elem(&net_stats, &key, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&net_stats, &key);
		if (!c)
			return;
	}
	// Per-CPU values: no other CPU writes this slot, so plain additions are exact.
	c->bytes += skb->len;
	c->packets += 1;
}

SEC("cgroup_skb/ingress")
int count_ingress(struct __sk_buff *skb)
{
	count(skb, 0);
	return 1; // let the packet through: the agent observes, it never filters
}

SEC("cgroup_skb/egress")
int count_egress(struct __sk_buff *skb)
{
	count(skb, 1);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
