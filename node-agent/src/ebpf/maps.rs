//! The eBPF maps' key and value layouts (mirroring `bpf/*.bpf.c`) and their reading: per-CPU
//! values summed into totals per cgroup id.

use std::collections::HashMap;

use aya::maps::{MapData, PerCpuHashMap};

/// `struct net_key` in `bpf/net.bpf.c`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NetKey {
    pub cgroup_id: u64,
    pub ifindex: u32,
    /// 0 received, 1 transmitted.
    pub direction: u32,
}

/// `struct net_counters` / `struct io_counters`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub bytes: u64,
    /// Packets (network) or bios (block I/O).
    pub events: u64,
}

/// `struct io_key` in `bpf/blkio.bpf.c`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IoKey {
    pub cgroup_id: u64,
    /// 0 read, 1 write.
    pub op: u32,
    pub pad: u32,
}

// SAFETY: plain `repr(C)` integers without padding holes, valid for every bit pattern.
unsafe impl aya::Pod for NetKey {}
// SAFETY: as above.
unsafe impl aya::Pod for Counters {}
// SAFETY: as above (`pad` makes the tail explicit).
unsafe impl aya::Pod for IoKey {}

/// One interface's counters for one cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterfaceTraffic {
    pub rx: Counters,
    pub tx: Counters,
}

/// Network totals: cgroup id → interface index → traffic.
pub type NetTotals = HashMap<u64, HashMap<u32, InterfaceTraffic>>;

/// Block I/O totals: cgroup id → (read, write).
pub type IoTotalsById = HashMap<u64, (Counters, Counters)>;

fn sum(values: &aya::maps::PerCpuValues<Counters>) -> Counters {
    values.iter().fold(Counters::default(), |a, v| Counters {
        bytes: a.bytes.wrapping_add(v.bytes),
        events: a.events.wrapping_add(v.events),
    })
}

/// Reads the whole network map. An entry that vanishes mid-iteration (LRU eviction) is
/// skipped.
pub fn read_net(map: &PerCpuHashMap<MapData, NetKey, Counters>) -> NetTotals {
    let mut totals = NetTotals::new();
    for (key, values) in map.iter().flatten() {
        let t = totals
            .entry(key.cgroup_id)
            .or_default()
            .entry(key.ifindex)
            .or_default();
        let c = sum(&values);
        if key.direction == 0 {
            t.rx = c;
        } else {
            t.tx = c;
        }
    }
    totals
}

/// Reads the whole block-I/O map.
pub fn read_io(map: &PerCpuHashMap<MapData, IoKey, Counters>) -> IoTotalsById {
    let mut totals = IoTotalsById::new();
    for (key, values) in map.iter().flatten() {
        let t = totals.entry(key.cgroup_id).or_default();
        if key.op == 0 {
            t.0 = sum(&values);
        } else {
            t.1 = sum(&values);
        }
    }
    totals
}

/// Removes every entry of the given cgroup ids (containers that are gone), so that the LRU
/// maps keep room for live ones.
pub fn forget_net(map: &mut PerCpuHashMap<MapData, NetKey, Counters>, gone: &[u64]) {
    let keys: Vec<NetKey> = map
        .keys()
        .flatten()
        .filter(|k| gone.contains(&k.cgroup_id))
        .collect();
    for k in keys {
        let _ = map.remove(&k);
    }
}

/// As [`forget_net`], for block I/O.
pub fn forget_io(map: &mut PerCpuHashMap<MapData, IoKey, Counters>, gone: &[u64]) {
    let keys: Vec<IoKey> = map
        .keys()
        .flatten()
        .filter(|k| gone.contains(&k.cgroup_id))
        .collect();
    for k in keys {
        let _ = map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The C structs are 16 bytes each with these offsets; a mismatch would read garbage.
    #[test]
    fn layouts_match_the_c_structs() {
        assert_eq!(std::mem::size_of::<NetKey>(), 16);
        assert_eq!(std::mem::offset_of!(NetKey, ifindex), 8);
        assert_eq!(std::mem::offset_of!(NetKey, direction), 12);
        assert_eq!(std::mem::size_of::<IoKey>(), 16);
        assert_eq!(std::mem::offset_of!(IoKey, op), 8);
        assert_eq!(std::mem::size_of::<Counters>(), 16);
        assert_eq!(std::mem::offset_of!(Counters, events), 8);
    }
}
