//! Deterministic simulation of the cluster under faults, many seeds.
//!
//! Two simulations, each run for `STRATA_SIM_SEEDS` seeds (default 500):
//!
//! 1. **Data path.** A discrete-event simulation drives the write path's real decisions
//!    (`cluster::replication::plan` and `AckTracker` over a real `Ring`), the real read merge
//!    (`cluster::read::merge_samples`) and the real completeness rule
//!    (`Ring::min_answering_owners`) through random partitions, crashes and restarts, message
//!    delays and reordering. Storage and hints are modelled as durable maps (they survive a
//!    crash; in-flight coordination does not). Everything, including the fault schedule, comes
//!    from the seed, so a failing seed replays exactly. Invariants: a read that the rule
//!    calls complete holds every write acknowledged at quorum; after healing every
//!    acknowledged write is readable; no answer holds a timestamp twice; after healing and
//!    one anti-entropy round (the real Merkle summaries, range planning and merge rule),
//!    every owner of a series holds exactly the same samples.
//! 2. **Membership.** Real `chitchat` gossip through `cluster::membership::Membership` over
//!    chitchat's in-process transport, under tokio's paused clock: seeded partitions and
//!    restarts (a restarted node comes back with a new generation and address, as a
//!    rescheduled pod does). Invariant: after healing, every node sees every node alive with
//!    its newest generation, and all compute the same ring. The fault schedule is seeded;
//!    chitchat picks gossip peers with its own RNG, so interleavings may differ between runs
//!    of one seed (its failure is still reported with the seed and schedule).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tsdb_node::cluster::anti_entropy::{peer_ranges, samples_to_pull, Scope};
use tsdb_node::cluster::membership::{GossipSettings, Membership};
use tsdb_node::cluster::merkle::{bucket_ranges, MerkleTree, WindowedLeaves, LEAVES};
use tsdb_node::cluster::read::merge_samples;
use tsdb_node::cluster::replication::{plan, AckTracker};
use tsdb_node::cluster::ring::series_token;
use tsdb_node::cluster::summaries::WINDOW_MS;
use tsdb_node::cluster::{Consistency, NodeMode, Ring};
use tsdb_node::storage::{Labels, Sample};

fn seeds() -> u64 {
    std::env::var("STRATA_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500)
}

// ---------------------------------------------------------------- data path

const SERIES: usize = 8;
const RF: usize = 3;
const WRITE_TIMEOUT: u64 = 120;

/// `(series, timestamp, value)`.
type SimSample = (usize, i64, u64);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Msg {
    /// Replica write from `coord` for write `id` (coordinator incarnation `inc`).
    Write {
        coord: usize,
        inc: u64,
        id: u64,
        samples: Vec<(usize, i64, u64)>,
        indices: Vec<usize>,
    },
    WriteAck {
        from: usize,
        inc: u64,
        id: u64,
        indices: Vec<usize>,
    },
    /// Hint delivery: `hint` is the hint's id at `coord`.
    Hint {
        coord: usize,
        hint: u64,
        samples: Vec<(usize, i64, u64)>,
    },
    HintAck {
        hint: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Deliver { from: usize, to: usize, msg: Msg },
    Timeout { coord: usize, inc: u64, id: u64 },
}

struct Coordination {
    tracker: AckTracker,
    samples: Vec<(usize, i64, u64)>,
    per_node: Vec<(usize, Vec<usize>)>,
    answered: BTreeSet<usize>,
    acked: bool,
}

struct SimNode {
    up: bool,
    /// Incarnation: bumped at each restart, so answers to a dead coordinator are ignored.
    inc: u64,
    store: BTreeMap<usize, BTreeMap<i64, u64>>,
    /// Durable hints: id → (target, samples).
    hints: BTreeMap<u64, (usize, Vec<SimSample>)>,
    coordinating: BTreeMap<u64, Coordination>,
}

struct DataSim {
    rng: SmallRng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    nodes: Vec<SimNode>,
    ring: Ring,
    labels: Vec<Labels>,
    partitioned: BTreeSet<(usize, usize)>,
    acked: Vec<(usize, i64, u64)>,
    next_hint: u64,
    next_t: i64,
    log: Vec<String>,
}

impl DataSim {
    fn new(seed: u64) -> DataSim {
        let mut rng = SmallRng::seed_from_u64(seed);
        let n = rng.gen_range(3..=5);
        let ids: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
        DataSim {
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: (0..n)
                .map(|_| SimNode {
                    up: true,
                    inc: 0,
                    store: BTreeMap::new(),
                    hints: BTreeMap::new(),
                    coordinating: BTreeMap::new(),
                })
                .collect(),
            ring: Ring::new(ids, RF),
            labels: (0..SERIES)
                .map(|s| Labels::from_metric("m", &[("s", &s.to_string())]))
                .collect(),
            partitioned: BTreeSet::new(),
            acked: Vec::new(),
            next_hint: 0,
            next_t: 0,
            log: Vec::new(),
        }
    }

    /// Ring node index of sim node `i`: ids are `n<i>`, sorted, and < 10 nodes.
    fn cut(&self, a: usize, b: usize) -> bool {
        self.partitioned.contains(&(a.min(b), a.max(b)))
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if from == to {
            self.seq += 1;
            self.queue.push(Reverse((
                self.now,
                self.seq,
                Event::Deliver { from, to, msg },
            )));
            return;
        }
        if self.cut(from, to) {
            return;
        }
        // Random delays reorder messages.
        let delay = self.rng.gen_range(1..40);
        self.seq += 1;
        self.queue.push(Reverse((
            self.now + delay,
            self.seq,
            Event::Deliver { from, to, msg },
        )));
    }

    fn apply(&mut self, node: usize, samples: &[(usize, i64, u64)]) {
        for &(s, t, v) in samples {
            // Equal timestamps replace, as in the engine.
            self.nodes[node].store.entry(s).or_default().insert(t, v);
        }
    }

    fn client_write(&mut self, coord: usize) {
        if !self.nodes[coord].up {
            return;
        }
        let k = self.rng.gen_range(1..6);
        let mut samples = Vec::new();
        let mut batch = Vec::new();
        for _ in 0..k {
            let s = self.rng.gen_range(0..SERIES);
            self.next_t += 1;
            let v = self.rng.gen::<u32>() as u64;
            samples.push((s, self.next_t, v));
            batch.push((self.labels[s].clone(), Sample::new(self.next_t, v as f64)));
        }
        let p = plan(&self.ring, Consistency::Quorum, &batch);
        self.seq += 1;
        let id = self.seq;
        let inc = self.nodes[coord].inc;
        let per_node = p.per_node.clone();
        self.nodes[coord].coordinating.insert(
            id,
            Coordination {
                tracker: AckTracker::new(p.required),
                samples: samples.clone(),
                per_node: per_node.clone(),
                answered: BTreeSet::new(),
                acked: false,
            },
        );
        for (owner, indices) in per_node {
            let share: Vec<_> = indices.iter().map(|&i| samples[i]).collect();
            self.send(
                coord,
                owner,
                Msg::Write {
                    coord,
                    inc,
                    id,
                    samples: share,
                    indices,
                },
            );
        }
        self.seq += 1;
        self.queue.push(Reverse((
            self.now + WRITE_TIMEOUT,
            self.seq,
            Event::Timeout { coord, inc, id },
        )));
    }

    fn deliver(&mut self, from: usize, to: usize, msg: Msg) {
        if !self.nodes[to].up || self.cut(from, to) {
            return;
        }
        match msg {
            Msg::Write {
                coord,
                inc,
                id,
                samples,
                indices,
            } => {
                self.apply(to, &samples);
                self.send(
                    to,
                    coord,
                    Msg::WriteAck {
                        from: to,
                        inc,
                        id,
                        indices,
                    },
                );
            }
            Msg::WriteAck {
                from,
                inc,
                id,
                indices,
            } => {
                if self.nodes[to].inc != inc {
                    return;
                }
                let Some(c) = self.nodes[to].coordinating.get_mut(&id) else {
                    return;
                };
                if !c.answered.insert(from) {
                    return;
                }
                c.tracker.stored(&indices, Vec::new());
                if !c.acked && c.tracker.done() {
                    c.acked = true;
                    let samples = c.samples.clone();
                    self.acked.extend(samples);
                }
            }
            Msg::Hint {
                coord,
                hint,
                samples,
            } => {
                self.apply(to, &samples);
                self.send(to, coord, Msg::HintAck { hint });
            }
            Msg::HintAck { hint } => {
                self.nodes[to].hints.remove(&hint);
            }
        }
    }

    /// The write's deadline: owners that did not answer get a durable hint.
    fn timeout(&mut self, coord: usize, inc: u64, id: u64) {
        if self.nodes[coord].inc != inc || !self.nodes[coord].up {
            return;
        }
        let Some(c) = self.nodes[coord].coordinating.remove(&id) else {
            return;
        };
        for (owner, indices) in &c.per_node {
            if !c.answered.contains(owner) {
                let share: Vec<_> = indices.iter().map(|&i| c.samples[i]).collect();
                self.next_hint += 1;
                self.nodes[coord]
                    .hints
                    .insert(self.next_hint, (*owner, share));
            }
        }
    }

    fn deliver_hints(&mut self) {
        for coord in 0..self.nodes.len() {
            if !self.nodes[coord].up {
                continue;
            }
            let hints: Vec<(u64, usize, Vec<_>)> = self.nodes[coord]
                .hints
                .iter()
                .map(|(h, (t, s))| (*h, *t, s.clone()))
                .collect();
            for (hint, target, samples) in hints {
                self.send(
                    coord,
                    target,
                    Msg::Hint {
                        coord,
                        hint,
                        samples,
                    },
                );
            }
        }
    }

    fn crash(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.up = false;
        node.coordinating.clear();
        self.log.push(format!("t={} crash n{n}", self.now));
    }

    fn restart(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if !node.up {
            node.up = true;
            node.inc += 1;
            self.log.push(format!("t={} restart n{n}", self.now));
        }
    }

    /// A read from `reader` over the nodes it can reach, merged as the read path merges.
    fn read(&self, reader: usize) -> (BTreeMap<usize, Vec<Sample>>, Vec<String>) {
        let mut merged: BTreeMap<usize, Vec<Sample>> = BTreeMap::new();
        let mut down = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.up || self.cut(reader, i) {
                down.push(format!("n{i}"));
                continue;
            }
            for (s, samples) in &node.store {
                let list: Vec<Sample> = samples
                    .iter()
                    .map(|(t, v)| Sample::new(*t, *v as f64))
                    .collect();
                let prev = merged.remove(s).unwrap_or_default();
                merged.insert(*s, merge_samples(prev, list));
            }
        }
        (merged, down)
    }

    fn check_read(&self, reader: usize, must_be_complete: bool) -> Result<(), String> {
        let (merged, down) = self.read(reader);
        for (s, samples) in &merged {
            if !samples.windows(2).all(|w| w[0].t < w[1].t) {
                return Err(format!(
                    "series {s}: a timestamp appears twice in an answer"
                ));
            }
        }
        let down_ref: Vec<&str> = down.iter().map(String::as_str).collect();
        let w = Consistency::Quorum.required(self.ring.replication_factor());
        let complete =
            self.ring.min_answering_owners(&down_ref) >= self.ring.replication_factor() + 1 - w;
        if !(complete || must_be_complete) {
            return Ok(());
        }
        for &(s, t, v) in &self.acked {
            let found = merged
                .get(&s)
                .and_then(|list| list.iter().find(|x| x.t == t))
                .map(|x| x.v);
            if found != Some(v as f64) {
                return Err(format!(
                    "acknowledged sample s{s}@{t}={v} missing from a read at n{reader} \
                     (down or cut: {down:?}, judged complete: {complete})"
                ));
            }
        }
        Ok(())
    }

    fn run(&mut self) -> Result<(), String> {
        let n = self.nodes.len();
        // Fault phase.
        for tick in 0..1500u64 {
            self.now = tick;
            while let Some(Reverse((at, _, _))) = self.queue.peek() {
                if *at > self.now {
                    break;
                }
                let Some(Reverse((_, _, ev))) = self.queue.pop() else {
                    break;
                };
                match ev {
                    Event::Deliver { from, to, msg } => self.deliver(from, to, msg),
                    Event::Timeout { coord, inc, id } => self.timeout(coord, inc, id),
                }
            }
            if self.rng.gen_bool(0.3) {
                let c = self.rng.gen_range(0..n);
                self.client_write(c);
            }
            if tick.is_multiple_of(25) {
                self.deliver_hints();
            }
            let r: f64 = self.rng.gen();
            if r < 0.004 {
                let a = self.rng.gen_range(0..n);
                self.crash(a);
            } else if r < 0.012 {
                let a = self.rng.gen_range(0..n);
                self.restart(a);
            } else if r < 0.018 {
                let a = self.rng.gen_range(0..n);
                let b = self.rng.gen_range(0..n);
                if a != b {
                    self.partitioned.insert((a.min(b), a.max(b)));
                    self.log.push(format!("t={tick} cut n{a}-n{b}"));
                }
            } else if r < 0.024 {
                self.partitioned.clear();
                self.log.push(format!("t={tick} heal"));
            }
            if tick.is_multiple_of(50) {
                let reader = self.rng.gen_range(0..n);
                if self.nodes[reader].up {
                    self.check_read(reader, false)?;
                }
            }
        }
        // Heal, restart everyone, let timeouts fire and hints drain.
        self.partitioned.clear();
        for i in 0..n {
            self.restart(i);
        }
        let mut tick = self.now;
        let heal_start = tick;
        loop {
            tick += 1;
            self.now = tick;
            while let Some(Reverse((at, _, _))) = self.queue.peek() {
                if *at > self.now {
                    break;
                }
                let Some(Reverse((_, _, ev))) = self.queue.pop() else {
                    break;
                };
                match ev {
                    Event::Deliver { from, to, msg } => self.deliver(from, to, msg),
                    Event::Timeout { coord, inc, id } => self.timeout(coord, inc, id),
                }
            }
            if tick.is_multiple_of(25) {
                self.deliver_hints();
            }
            let hints: usize = self.nodes.iter().map(|n| n.hints.len()).sum();
            if self.queue.is_empty() && hints == 0 {
                break;
            }
            if tick > heal_start + 100_000 {
                return Err(format!("hints never drained ({hints} left)"));
            }
        }
        for reader in 0..n {
            self.check_read(reader, true)?;
        }
        // Every acknowledged sample sits on at least a quorum of its owners.
        for &(s, t, _) in &self.acked {
            let owners = self.ring.owners(&self.labels[s]);
            let holding = owners
                .iter()
                .filter_map(|o| o.strip_prefix('n')?.parse::<usize>().ok())
                .filter(|&o| {
                    self.nodes[o]
                        .store
                        .get(&s)
                        .is_some_and(|m| m.contains_key(&t))
                })
                .count();
            if holding < 2 {
                return Err(format!("s{s}@{t} acknowledged but on {holding} owners"));
            }
        }
        // Coordinators that crashed before hinting left some owners short; one anti-entropy
        // round makes every owner of a series hold the same samples.
        self.anti_entropy_round();
        for (s, labels) in self.labels.iter().enumerate() {
            let copies: Vec<(&str, Option<&BTreeMap<i64, u64>>)> = self
                .ring
                .owners(labels)
                .into_iter()
                .map(|o| (o, self.nodes[node_index(o)].store.get(&s)))
                .collect();
            if copies.windows(2).any(|w| w[0].1 != w[1].1) {
                return Err(format!(
                    "series {s}: replicas differ after anti-entropy: {copies:?}"
                ));
            }
        }
        Ok(())
    }

    /// Every node compares with each co-owner through the real Merkle summaries and pulls
    /// what it lacks with the real merge rule, as `cluster::anti_entropy` does over gRPC.
    fn anti_entropy_round(&mut self) {
        let n = self.nodes.len();
        let tokens: Vec<u64> = self.labels.iter().map(series_token).collect();
        for me in 0..n {
            let plan = peer_ranges(&self.ring, &format!("n{me}"), Scope::CoOwners);
            for (peer, ranges) in plan {
                let p = node_index(&peer);
                let trees = |node: &SimNode| {
                    let mut w = WindowedLeaves::new(WINDOW_MS);
                    for (s, samples) in &node.store {
                        if ranges.contains(tokens[*s]) {
                            w.add_series(tokens[*s], &as_samples(samples));
                        }
                    }
                    w.trees()
                };
                let (mine, theirs) = (trees(&self.nodes[me]), trees(&self.nodes[p]));
                let mut pulls: Vec<(usize, Vec<Sample>)> = Vec::new();
                for (w, (tree, _)) in &theirs {
                    let empty = MerkleTree::from_leaves(vec![0; LEAVES]).unwrap();
                    let local = mine.get(w).map(|x| &x.0).unwrap_or(&empty);
                    if local.root() == tree.root() {
                        continue;
                    }
                    let buckets = bucket_ranges(&local.differing_leaves(tree)).intersect(&ranges);
                    for (s, samples) in &self.nodes[p].store {
                        if !buckets.contains(tokens[*s]) {
                            continue;
                        }
                        let local = self.nodes[me]
                            .store
                            .get(s)
                            .map(as_samples)
                            .unwrap_or_default();
                        pulls.push((*s, samples_to_pull(&local, &as_samples(samples))));
                    }
                }
                for (s, samples) in pulls {
                    let flat: Vec<SimSample> =
                        samples.iter().map(|x| (s, x.t, x.v as u64)).collect();
                    self.apply(me, &flat);
                }
            }
        }
    }
}

fn node_index(id: &str) -> usize {
    id.trim_start_matches('n')
        .parse()
        .expect("sim node ids are n<i>")
}

fn as_samples(m: &BTreeMap<i64, u64>) -> Vec<Sample> {
    m.iter().map(|(t, v)| Sample::new(*t, *v as f64)).collect()
}

#[test]
fn data_path_survives_partitions_crashes_and_reordering() {
    let mut acked_total = 0usize;
    for seed in 0..seeds() {
        let mut sim = DataSim::new(seed);
        if let Err(e) = sim.run() {
            panic!("seed {seed}: {e}\nfault schedule:\n{}", sim.log.join("\n"));
        }
        acked_total += sim.acked.len();
    }
    // The schedule must leave room for writes to succeed, or the checks are vacuous.
    assert!(
        acked_total > seeds() as usize * 50,
        "only {acked_total} acknowledged samples"
    );
}

// ---------------------------------------------------------------- membership

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn gossip(id: &str, generation: u64, port: u16, seed: u16) -> GossipSettings {
    GossipSettings {
        node_id: id.to_string(),
        generation,
        cluster_id: "sim".into(),
        listen_addr: addr(port),
        advertise_addr: addr(port),
        seeds: vec![addr(seed).to_string()],
        interval: Duration::from_millis(100),
        dead_node_grace: Duration::from_secs(3600),
        grpc_addr: addr(port + 1000),
        http_addr: addr(port + 2000),
        mode: NodeMode::All,
    }
}

async fn membership_round(seed: u64) -> Result<(), String> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let transport = chitchat::transport::ChannelTransport::with_mtu(65_507);
    let n = rng.gen_range(3..=5usize);
    let mut ports: Vec<u16> = (0..n as u16).map(|i| 10_000 + i * 10).collect();
    let mut generation: Vec<u64> = vec![1; n];
    let mut nodes: Vec<Option<Membership>> = Vec::new();
    for i in 0..n {
        let m = Membership::start_with(gossip(&format!("n{i}"), 1, ports[i], ports[0]), &transport)
            .await
            .map_err(|e| e.to_string())?;
        nodes.push(Some(m));
    }
    let mut log = Vec::new();
    let mut cuts: Vec<(u16, u16)> = Vec::new();
    for step in 0..8 {
        match rng.gen_range(0..4) {
            0 | 1 => {
                let a = rng.gen_range(0..n);
                let b = rng.gen_range(0..n);
                if a != b {
                    transport.remove_link(addr(ports[a]), addr(ports[b])).await;
                    cuts.push((ports[a], ports[b]));
                    log.push(format!("step {step}: cut n{a}-n{b}"));
                }
            }
            2 => {
                let a = rng.gen_range(1..n);
                if let Some(m) = nodes[a].take() {
                    m.shutdown();
                    log.push(format!("step {step}: crash n{a}"));
                }
            }
            _ => {
                let a = rng.gen_range(1..n);
                if nodes[a].is_none() {
                    generation[a] += 1;
                    ports[a] += 1;
                    let m = Membership::start_with(
                        gossip(&format!("n{a}"), generation[a], ports[a], ports[0]),
                        &transport,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    nodes[a] = Some(m);
                    log.push(format!("step {step}: restart n{a} gen {}", generation[a]));
                }
            }
        }
        let pause = rng.gen_range(100..3000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    // Heal: links back, every node running.
    for (a, b) in cuts {
        transport.add_link(addr(a), addr(b)).await;
    }
    for a in 0..n {
        if nodes[a].is_none() {
            generation[a] += 1;
            ports[a] += 1;
            nodes[a] = Some(
                Membership::start_with(
                    gossip(&format!("n{a}"), generation[a], ports[a], ports[0]),
                    &transport,
                )
                .await
                .map_err(|e| e.to_string())?,
            );
        }
    }
    // Converged: every node sees every node's newest generation alive, and the same ring.
    let mut last = String::new();
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut rings = Vec::new();
        let mut ok = true;
        for m in nodes.iter().flatten() {
            let members = m.members().await;
            for (i, g) in generation.iter().enumerate() {
                let seen = members
                    .iter()
                    .find(|x| x.node_id == format!("n{i}"))
                    .map(|x| (x.generation, x.live));
                if seen != Some((*g, true)) {
                    ok = false;
                    last = format!("{} sees n{i} as {seen:?}, want gen {g} alive", m.node_id());
                }
            }
            let ids: Vec<String> = members
                .iter()
                .filter(|x| x.in_ring())
                .map(|x| x.node_id.clone())
                .collect();
            rings.push(Ring::new(ids, 3).nodes().to_vec());
        }
        if ok && rings.windows(2).all(|w| w[0] == w[1]) {
            for m in nodes.iter().flatten() {
                m.shutdown();
            }
            return Ok(());
        }
    }
    Err(format!(
        "not converged: {last}\nschedule:\n{}",
        log.join("\n")
    ))
}

#[test]
fn membership_converges_after_partitions_and_restarts() {
    let count = seeds();
    for seed in 0..count {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        if let Err(e) = rt.block_on(membership_round(seed)) {
            panic!("seed {seed}: {e}");
        }
    }
}
