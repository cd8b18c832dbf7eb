//! Synthetic IoT data for `generate` and `bench`: the reference dataset's devices and
//! metrics, cut into batches and spread over connections.

use anyhow::Result;
use tsdb_node::dataset::{IotDataset, METRICS};
use tsdb_node::storage::{Labels, Sample};

/// What to generate.
#[derive(Clone, Debug)]
pub struct Workload {
    pub dataset: IotDataset,
    /// How many of the dataset's metrics per device are sent (1 to 4).
    pub metrics: usize,
}

impl Workload {
    /// The series table that batches index into (every metric of every device).
    pub fn labels(&self) -> Vec<Labels> {
        self.dataset.labels()
    }

    /// Samples that will be sent.
    pub fn sample_count(&self) -> usize {
        self.dataset.devices * self.metrics * self.dataset.steps
    }

    /// Calls `f(connection, batch)` for batches of at most `batch` samples, in time order.
    /// Devices are split over `connections` by `device % connections`, so every series is
    /// sent over one connection only and stays in time order however connections interleave.
    pub fn for_each_batch(
        &self,
        connections: usize,
        batch: usize,
        mut f: impl FnMut(usize, Vec<(usize, Sample)>) -> Result<()>,
    ) -> Result<()> {
        let connections = connections.max(1);
        let batch = batch.max(1);
        let per_device = METRICS.len();
        let mut pending: Vec<Vec<(usize, Sample)>> = vec![Vec::with_capacity(batch); connections];
        let mut generator = self.dataset.generator();
        let mut step = Vec::new();
        while generator.next_step(&mut step) {
            for (i, s) in step.iter().enumerate() {
                if i % per_device >= self.metrics {
                    continue;
                }
                let c = (i / per_device) % connections;
                pending[c].push((i, *s));
                if pending[c].len() >= batch {
                    f(
                        c,
                        std::mem::replace(&mut pending[c], Vec::with_capacity(batch)),
                    )?;
                }
            }
        }
        for (c, rest) in pending.into_iter().enumerate() {
            if !rest.is_empty() {
                f(c, rest)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_sample_once_per_connection_of_its_device() {
        let w = Workload {
            dataset: IotDataset {
                devices: 3,
                interval_ms: 1000,
                steps: 5,
                start_ms: 0,
                seed: 1,
            },
            metrics: 2,
        };
        let mut seen = Vec::new();
        w.for_each_batch(2, 4, |c, b| {
            assert!(b.len() <= 4);
            for (i, s) in b {
                assert_eq!((i / 4) % 2, c);
                assert!(i % 4 < 2);
                seen.push((i, s.t));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), w.sample_count());
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 30);
    }
}
