//! Verified push-down: the pieces that let a coordinator check that each replica answering
//! an aggregation held every acknowledged write of its arcs.
//!
//! One replica answers per ring arc. Alone, it cannot know whether a write acknowledged at
//! `quorum` is still in flight to it, whether another node hinted one for it less than a
//! gossip round ago, or whether a full hint budget refused one. So, besides the answering
//! replica, `R − 1` other owners of the arc digest the samples the evaluation reads (same
//! matchers, same time window, the arc's tokens): `R = RF − W + 1` for the verified write
//! consistency `W`. A write acknowledged at `W` sits on `W` owners, so it is on at least one
//! of any `R` of the `RF` owners; when all `R` digests are equal, all `R` hold the same
//! samples, so the answering one holds that write too. Any difference sends the query to the
//! raw path. The answering replica digests the very read it evaluates (see
//! [`evaluate_share`]): a digest taken later could include a write that landed after the
//! evaluation read, and vouch for an answer that lacks it.
//!
//! The digest unit is a span of a ring arc ([`units`]): every node agrees on them, and
//! failed or replaced replicas are retried per unit.

use crate::promql::pushdown::{
    evaluate_and_digest, DigestUnits, Partials, PushdownQuery, ReadDigest,
};
use crate::promql::QueryError;
use crate::storage::Engine;

use super::ring::{series_token, Ring};
use super::rpc::{MalformedMessage, TokenRange};
use super::token_ranges::TokenRanges;
use super::Consistency;

/// `cluster.pushdown_verify`: which acknowledged writes a pushed-down answer must contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyMode {
    /// No verification: exact for writes acknowledged at `all` (and, as before, for
    /// whatever the answering replica happens to hold).
    Off,
    /// Writes acknowledged at `quorum`: `RF − ⌊RF/2⌋` owners per arc must agree.
    Quorum,
    /// Writes acknowledged at `one`: every owner live in gossip must agree (and at least as
    /// many as the configured consistency needs for a complete raw read).
    All,
}

impl VerifyMode {
    pub fn parse(s: &str) -> Option<VerifyMode> {
        Some(match s {
            "off" => VerifyMode::Off,
            "quorum" => VerifyMode::Quorum,
            "all" => VerifyMode::All,
            _ => return None,
        })
    }

    /// The mode that covers writes acknowledged at the cluster's default consistency.
    pub fn for_consistency(c: Consistency) -> VerifyMode {
        match c {
            Consistency::One => VerifyMode::All,
            Consistency::Quorum => VerifyMode::Quorum,
            Consistency::All => VerifyMode::Off,
        }
    }

    /// Owners of an arc, the answering one included, whose digests must agree: `live` is how
    /// many of the arc's owners gossip sees alive, `configured` the write consistency.
    pub fn required(self, rf: usize, live: usize, configured: Consistency) -> usize {
        let read_quorum = |c: Consistency| rf + 1 - c.required(rf).max(1);
        match self {
            VerifyMode::Off => 1,
            VerifyMode::Quorum => read_quorum(Consistency::Quorum),
            VerifyMode::All => live.max(read_quorum(configured)),
        }
        .clamp(1, rf.max(1))
    }
}

/// A digest unit: an inclusive span of tokens inside one ring arc, and the arc's owners
/// (node indices of the ring, primary first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub first: u64,
    pub last: u64,
    pub owners: Vec<usize>,
}

/// The ring's arcs as disjoint spans sorted by first token (an arc wrapping past `u64::MAX`
/// is two units), covering the circle.
pub fn units(ring: &Ring) -> Vec<Unit> {
    let arcs = ring.ranges();
    let mut out: Vec<Unit> = Vec::with_capacity(arcs.len() + 1);
    for (start, end, owners) in arcs.iter() {
        // Two virtual nodes on one token leave an empty arc, which `from_arcs` would read as
        // the whole circle (as in `answering::assign`).
        if start == end && arcs.len() > 1 {
            continue;
        }
        for &(first, last) in TokenRanges::from_arcs([(*start, *end)]).spans() {
            out.push(Unit {
                first,
                last,
                owners: owners.clone(),
            });
        }
    }
    out.sort_by_key(|u| u.first);
    out
}

/// The spans a node digests, sorted and disjoint; a digest is answered per span, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DigestSpans(Vec<(u64, u64)>);

impl DigestSpans {
    /// `spans` must be sorted and disjoint (the coordinator's units are).
    pub fn new(spans: Vec<(u64, u64)>) -> DigestSpans {
        debug_assert!(spans.windows(2).all(|w| w[0].1 < w[1].0));
        DigestSpans(spans)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The span holding `token`.
    pub fn find(&self, token: u64) -> Option<usize> {
        let i = self.0.partition_point(|s| s.1 < token);
        self.0.get(i).filter(|s| s.0 <= token).map(|_| i)
    }

    pub fn to_wire(&self) -> Vec<TokenRange> {
        self.0
            .iter()
            .map(|&(first, last)| TokenRange { first, last })
            .collect()
    }

    /// Reversed, unsorted or overlapping spans are malformed: digests answer per span in
    /// order, so they cannot be merged silently.
    pub fn from_wire(r: &[TokenRange]) -> Result<DigestSpans, MalformedMessage> {
        for (i, s) in r.iter().enumerate() {
            if s.first > s.last {
                return Err(MalformedMessage(format!(
                    "digest span {}..={} is reversed",
                    s.first, s.last
                )));
            }
            if i > 0 && r[i - 1].last >= s.first {
                return Err(MalformedMessage(
                    "digest spans are not sorted and disjoint".into(),
                ));
            }
        }
        Ok(DigestSpans(r.iter().map(|s| (s.first, s.last)).collect()))
    }
}

/// One node's share of a pushed-down query: partial aggregates of its series in `evaluate`,
/// and a digest per span of `digest` of exactly the samples the same read saw (a series is
/// read once for both, from one snapshot of the engine).
pub fn evaluate_share(
    engine: &Engine,
    q: &PushdownQuery,
    evaluate: &TokenRanges,
    digest: &DigestSpans,
    threads: usize,
) -> Result<(Partials, Vec<ReadDigest>), QueryError> {
    let unit_of = |l: &crate::storage::Labels| {
        let t = series_token(l);
        digest.find(t).map(|u| (u, t))
    };
    let units = DigestUnits {
        units: digest.len(),
        unit_of: &unit_of,
    };
    evaluate_and_digest(
        engine,
        q,
        &|l| evaluate.contains(series_token(l)),
        (!digest.is_empty()).then_some(&units),
        threads,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::tombstones::{ClusterTombstone, TombstoneStore};
    use crate::storage::options::EngineOptions;
    use crate::storage::{Labels, MatchOp, Matcher, Sample};

    fn engine(dir: &std::path::Path) -> Engine {
        let mut o = EngineOptions::new(dir);
        o.wal_sync = false;
        o.out_of_order_window_ms = 0;
        Engine::open(o).unwrap()
    }

    /// 40 series of `m` (and one of `other`, which the query does not select), 30 samples
    /// each, 10 s apart.
    fn data() -> Vec<(Labels, Vec<Sample>)> {
        let mut out: Vec<(Labels, Vec<Sample>)> = (0..40)
            .map(|i| {
                let l = Labels::from_metric("m", &[("d", &i.to_string())]);
                let s = (0..30)
                    .map(|k| Sample::new(1_000_000 + k * 10_000, (i * k) as f64 + 0.5))
                    .collect();
                (l, s)
            })
            .collect();
        out.push((
            Labels::from_metric("other", &[]),
            vec![Sample::new(1_000_000, 1.0)],
        ));
        out
    }

    fn query() -> PushdownQuery {
        PushdownQuery {
            query: "sum(m)".into(),
            start: 1_000_000,
            end: 1_290_000,
            step: 30_000,
            lookback_ms: 300_000,
            max_samples: 1_000_000,
            deadline: std::time::Instant::now() + std::time::Duration::from_secs(30),
        }
    }

    /// Four units (quarters of the circle).
    fn quarters() -> DigestSpans {
        let q = u64::MAX / 4;
        DigestSpans::new(vec![
            (0, q),
            (q + 1, 2 * q),
            (2 * q + 1, 3 * q),
            (3 * q + 1, u64::MAX),
        ])
    }

    fn digests(e: &Engine, evaluate: &TokenRanges) -> Vec<ReadDigest> {
        evaluate_share(e, &query(), evaluate, &quarters(), 2)
            .unwrap()
            .1
    }

    #[test]
    fn digests_ignore_order_and_storage_and_see_one_sample() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let (a, b, c) = (
            engine(dirs[0].path()),
            engine(dirs[1].path()),
            engine(dirs[2].path()),
        );
        let all = data();
        a.append_repair(&all).unwrap();
        // b: the same samples in another order, half of them flushed to a segment first.
        let mut rev = all.clone();
        rev.reverse();
        b.append_repair(&rev[..20]).unwrap();
        b.flush().unwrap();
        b.append_repair(&rev[20..]).unwrap();
        let none = TokenRanges::default();
        let da = digests(&a, &none);
        assert_eq!(da, digests(&b, &none));
        // Evaluating as well as digesting reads the same samples.
        assert_eq!(da, digests(&a, &TokenRanges::full()));
        assert_eq!(da.iter().map(|d| d.samples).sum::<u64>(), 40 * 30);
        assert!(da.iter().all(|d| d.samples > 0 && d.sum != 0));

        // c lacks one sample of one series: exactly that series' unit differs.
        let mut short = all.clone();
        let (lost, _) = short[7].clone();
        short[7].1.remove(12);
        c.append_repair(&short).unwrap();
        let dc = digests(&c, &none);
        let unit = quarters().find(series_token(&lost)).unwrap();
        for (u, (x, y)) in da.iter().zip(&dc).enumerate() {
            assert_eq!(x == y, u != unit, "unit {u}");
        }
        // The same sample with another value differs too, with an equal count.
        c.append_repair(&[(lost.clone(), vec![Sample::new(1_120_000, -1.0)])])
            .unwrap();
        let dc = digests(&c, &none);
        assert_eq!(dc[unit].samples, da[unit].samples);
        assert_ne!(dc[unit].sum, da[unit].sum);

        // Samples outside the window the evaluation reads do not count.
        a.append_repair(&[(lost.clone(), vec![Sample::new(5_000_000, 1.0)])])
            .unwrap();
        assert_eq!(digests(&a, &none), da);
    }

    #[test]
    fn a_delete_applied_on_one_replica_only_shows_until_applied_on_both() {
        let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
        let (a, b, c) = (
            engine(dirs[0].path()),
            engine(dirs[1].path()),
            engine(dirs[2].path()),
        );
        let (sa, sb) = (
            TombstoneStore::open(dirs[3].path()).unwrap(),
            TombstoneStore::open(dirs[4].path()).unwrap(),
        );
        let all = data();
        a.append_repair(&all).unwrap();
        // b holds part of the data in a segment, so the delete hides an older source there.
        b.append_repair(&all[..25]).unwrap();
        b.flush().unwrap();
        b.append_repair(&all[25..]).unwrap();
        let m = |n: &str, v: &str| Matcher::new(MatchOp::Equal, n, v).unwrap();
        let t = ClusterTombstone {
            id: 1,
            matchers: vec![m("__name__", "m"), m("d", "3")],
            mint: 1_050_000,
            maxt: 1_150_000,
            deleted_at_ms: 2_000_000_000_000,
        };
        let none = TokenRanges::default();
        let before = digests(&a, &none);
        crate::cluster::deletes::apply(&a, &sa, vec![t.clone()]).unwrap();
        let after = digests(&a, &none);
        assert_ne!(after, digests(&b, &none), "a pending delete must show");
        assert_ne!(after, before);
        crate::cluster::deletes::apply(&b, &sb, vec![t]).unwrap();
        assert_eq!(after, digests(&b, &none));
        // Deleted samples count as never written.
        let mut kept = all.clone();
        kept[3]
            .1
            .retain(|s| !(1_050_000..=1_150_000).contains(&s.t));
        c.append_repair(&kept).unwrap();
        assert_eq!(after, digests(&c, &none));
    }

    #[test]
    fn required_owners_per_mode() {
        use Consistency::*;
        assert_eq!(VerifyMode::Quorum.required(3, 3, Quorum), 2);
        assert_eq!(VerifyMode::Quorum.required(5, 5, Quorum), 3);
        assert_eq!(VerifyMode::Quorum.required(1, 1, Quorum), 1);
        // RF=2: quorum is both owners, so one copy already holds every such write.
        assert_eq!(VerifyMode::Quorum.required(2, 2, Quorum), 1);
        assert_eq!(VerifyMode::Off.required(3, 3, One), 1);
        assert_eq!(VerifyMode::All.required(3, 3, Quorum), 3);
        // One owner down: the live ones, but never fewer than a complete raw read needs.
        assert_eq!(VerifyMode::All.required(3, 2, Quorum), 2);
        assert_eq!(VerifyMode::All.required(3, 1, Quorum), 2);
        assert_eq!(VerifyMode::All.required(3, 2, One), 3);
        assert_eq!(VerifyMode::for_consistency(Quorum), VerifyMode::Quorum);
        assert_eq!(VerifyMode::for_consistency(One), VerifyMode::All);
        assert_eq!(VerifyMode::for_consistency(All), VerifyMode::Off);
    }

    #[test]
    fn units_partition_the_circle_and_keep_their_owners() {
        for rf in 1..=3 {
            let ring = Ring::new(["a", "b", "c"], rf);
            let us = units(&ring);
            assert_eq!(us.first().unwrap().first, 0);
            assert_eq!(us.last().unwrap().last, u64::MAX);
            for w in us.windows(2) {
                assert_eq!(w[0].last.wrapping_add(1), w[1].first, "gap or overlap");
            }
            let spans = DigestSpans::new(us.iter().map(|u| (u.first, u.last)).collect());
            for k in 0..5_000u64 {
                let t = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let u = spans.find(t).unwrap();
                assert_eq!(us[u].owners, ring.owner_indices(t), "token {t}");
            }
        }
        // One node: its 150 arcs, all its own, still cover the circle.
        let us = units(&Ring::new(["a"], 1));
        assert_eq!((us[0].first, us.last().unwrap().last), (0, u64::MAX));
        assert!(us.iter().all(|u| u.owners == [0]));
    }

    #[test]
    fn digest_spans_wire_checks() {
        let s = DigestSpans::new(vec![(1, 4), (9, 9), (20, 30)]);
        assert_eq!(DigestSpans::from_wire(&s.to_wire()).unwrap(), s);
        assert_eq!(s.find(0), None);
        assert_eq!(s.find(4), Some(0));
        assert_eq!(s.find(9), Some(1));
        assert_eq!(s.find(10), None);
        assert_eq!(s.find(30), Some(2));
        let w = |v: &[(u64, u64)]| {
            v.iter()
                .map(|&(first, last)| TokenRange { first, last })
                .collect::<Vec<_>>()
        };
        assert!(DigestSpans::from_wire(&w(&[(5, 1)])).is_err());
        assert!(DigestSpans::from_wire(&w(&[(5, 9), (1, 2)])).is_err());
        assert!(DigestSpans::from_wire(&w(&[(1, 5), (5, 9)])).is_err());
        assert!(DigestSpans::from_wire(&[]).unwrap().is_empty());
    }
}
