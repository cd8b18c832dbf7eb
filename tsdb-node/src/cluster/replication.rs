//! The decisions of the replicated write path, without I/O: which owner gets which samples,
//! and when a batch has enough acknowledgements. The write path (`write.rs`) and the
//! deterministic simulation (`tests/cluster_sim.rs`) both drive these.

use std::collections::HashMap;

use super::ring::{series_token, Ring};
use super::Consistency;
use crate::storage::{AppendOutcome, Labels, Rejection, Sample};

/// A batch split by owner.
#[derive(Debug)]
pub struct WritePlan {
    /// Ring node index → the batch indices it must store, in batch order.
    pub per_node: Vec<(usize, Vec<usize>)>,
    /// Per batch index: acknowledgements needed.
    pub required: Vec<usize>,
}

/// Splits `batch` by the owners `ring` gives each series.
pub fn plan(ring: &Ring, consistency: Consistency, batch: &[(Labels, Sample)]) -> WritePlan {
    let mut per_node: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut required = vec![0usize; batch.len()];
    let mut owners_of: HashMap<&Labels, Vec<usize>> = HashMap::new();
    for (i, (labels, _)) in batch.iter().enumerate() {
        let owners = owners_of
            .entry(labels)
            .or_insert_with(|| ring.owner_indices(series_token(labels)));
        required[i] = consistency.required(owners.len());
        for &o in owners.iter() {
            per_node.entry(o).or_default().push(i);
        }
    }
    let mut per_node: Vec<(usize, Vec<usize>)> = per_node.into_iter().collect();
    per_node.sort_by_key(|(n, _)| *n);
    WritePlan { per_node, required }
}

/// Counts acknowledgements per sample as owners answer.
#[derive(Debug)]
pub struct AckTracker {
    required: Vec<usize>,
    acks: Vec<usize>,
    rejected: HashMap<usize, Rejection>,
}

impl AckTracker {
    pub fn new(required: Vec<usize>) -> Self {
        AckTracker {
            acks: vec![0; required.len()],
            required,
            rejected: HashMap::new(),
        }
    }

    /// An owner stored `indices` except the `refused` ones.
    pub fn stored(&mut self, indices: &[usize], refused: Vec<(usize, Rejection)>) {
        let mut refused_idx: Vec<usize> = refused.iter().map(|(i, _)| *i).collect();
        refused_idx.sort_unstable();
        for &i in indices {
            if refused_idx.binary_search(&i).is_err() {
                if let Some(a) = self.acks.get_mut(i) {
                    *a += 1;
                }
            }
        }
        for (i, why) in refused {
            self.rejected.entry(i).or_insert(why);
        }
    }

    fn satisfied(&self, i: usize) -> bool {
        self.acks[i] >= self.required[i] || self.rejected.contains_key(&i)
    }

    /// Every sample has its acknowledgements (or was refused).
    pub fn done(&self) -> bool {
        (0..self.required.len()).all(|i| self.satisfied(i))
    }

    /// Samples still short of their acknowledgements.
    pub fn short(&self) -> usize {
        (0..self.required.len())
            .filter(|&i| !self.satisfied(i))
            .count()
    }

    /// The outcome reported to the client once [`AckTracker::done`].
    pub fn into_outcome(self) -> AppendOutcome {
        let n = self.required.len();
        let mut rejected: Vec<(usize, Rejection)> = self.rejected.into_iter().collect();
        rejected.sort_by_key(|(i, _)| *i);
        AppendOutcome {
            appended: n - rejected.len(),
            rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_needs_two_of_three() {
        let ring = Ring::new(["a", "b", "c"], 3);
        let l = Labels::from_metric("m", &[]);
        let batch = vec![(l.clone(), Sample::new(1, 1.0)), (l, Sample::new(2, 2.0))];
        let p = plan(&ring, Consistency::Quorum, &batch);
        assert_eq!(p.per_node.len(), 3);
        assert_eq!(p.required, vec![2, 2]);
        let mut t = AckTracker::new(p.required);
        t.stored(&[0, 1], vec![]);
        assert!(!t.done());
        t.stored(&[0, 1], vec![(1, Rejection::Replica("no".into()))]);
        assert_eq!(t.short(), 0);
        assert!(t.done());
        let o = t.into_outcome();
        assert_eq!(o.appended, 1);
        assert_eq!(o.rejected.len(), 1);
    }
}
