// SPDX-License-Identifier: GPL-2.0-only
//
// Block I/O bytes and operations per (cgroup of the submitting task, direction), counted at
// the `block_bio_queue` tracepoint through BTF (tp_btf): it fires once per bio when it enters
// the block layer (a split remainder is not traced again), in the context of the task that
// submitted it, which is where the kernel's own io.stat accounting happens too. Writeback
// done later by kernel threads is attributed to those threads' cgroup, not the dirtying one.
//
// The two fields read from `struct bio` are declared here with
// `__attribute__((preserve_access_index))` (CO-RE): the loader relocates their offsets
// against the running kernel's BTF, so no vmlinux.h is needed.

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bvec_iter {
	__u32 bi_size;
} __attribute__((preserve_access_index));

struct bio {
	__u32 bi_opf;
	struct bvec_iter bi_iter;
} __attribute__((preserve_access_index));

// `enum req_op` (include/linux/blk_types.h): the operation is the low 8 bits of bi_opf.
#define REQ_OP_MASK 0xff
#define REQ_OP_READ 0
#define REQ_OP_WRITE 1

struct io_key {
	__u64 cgroup_id;
	// 0 = read, 1 = write.
	__u32 op;
	__u32 pad;
};

struct io_counters {
	__u64 bytes;
	__u64 ops;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct io_key);
	__type(value, struct io_counters);
} io_stats SEC(".maps");

SEC("tp_btf/block_bio_queue")
int count_bio(unsigned long long *ctx)
{
	struct bio *bio = (struct bio *)ctx[0];
	__u32 op = bio->bi_opf & REQ_OP_MASK;
	if (op != REQ_OP_READ && op != REQ_OP_WRITE)
		return 0; // flushes, discards, zone operations move no data
	struct io_key key = {
		.cgroup_id = bpf_get_current_cgroup_id(),
		.op = op,
	};
	struct io_counters *c = bpf_map_lookup_elem(&io_stats, &key);
	if (!c) {
		struct io_counters zero = {};
		bpf_map_update_elem(&io_stats, &key, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&io_stats, &key);
		if (!c)
			return 0;
	}
	c->bytes += bio->bi_iter.bi_size;
	c->ops += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
