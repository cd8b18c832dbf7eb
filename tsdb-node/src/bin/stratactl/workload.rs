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

/// How a benchmark request is cut from the dataset: `series` series per request, each with
/// `points` consecutive points. `points = 1` is the shape of a live stream (every request
/// carries the newest point of many series); larger values are the shape of a batching
/// forwarder such as Prometheus' remote write queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub series: usize,
    pub points: usize,
}

impl Workload {
    /// Calls `f(connection, batch)` for batches cut by `shape`. Devices are split over
    /// connections by `device % connections` (so every series stays in time order on one
    /// connection); each connection's series are grouped `shape.series` at a time, and every
    /// group gets one batch per `shape.points` time steps, series-major inside the batch.
    pub fn for_each_shaped(
        &self,
        connections: usize,
        shape: Shape,
        mut f: impl FnMut(usize, Vec<(usize, Sample)>) -> Result<()>,
    ) -> Result<()> {
        let connections = connections.max(1);
        let group = shape.series.max(1);
        let points = shape.points.max(1);
        let per_device = METRICS.len();
        let series: Vec<Vec<usize>> = (0..connections)
            .map(|c| {
                (0..self.dataset.devices * per_device)
                    .filter(|i| {
                        (i / per_device) % connections == c && i % per_device < self.metrics
                    })
                    .collect()
            })
            .collect();
        let mut generator = self.dataset.generator();
        // `window[k][i]`: sample of series `i` at the k-th step of the current block of steps.
        let mut window: Vec<Vec<Sample>> = Vec::with_capacity(points);
        loop {
            window.clear();
            let mut step = Vec::new();
            while window.len() < points && generator.next_step(&mut step) {
                window.push(std::mem::take(&mut step));
            }
            if window.is_empty() {
                return Ok(());
            }
            for (c, mine) in series.iter().enumerate() {
                for ids in mine.chunks(group) {
                    let mut batch = Vec::with_capacity(ids.len() * window.len());
                    for &i in ids {
                        for w in &window {
                            if let Some(s) = w.get(i) {
                                batch.push((i, *s));
                            }
                        }
                    }
                    f(c, batch)?;
                }
            }
        }
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
    #[test]
    fn shaped_batches_hold_series_times_points() {
        let w = Workload {
            dataset: IotDataset {
                devices: 4,
                interval_ms: 1000,
                steps: 5,
                start_ms: 0,
                seed: 1,
            },
            metrics: 4,
        };
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        w.for_each_shaped(
            2,
            Shape {
                series: 3,
                points: 2,
            },
            |c, b| {
                sizes.push(b.len());
                for (i, _) in &b {
                    assert_eq!((i / 4) % 2, c);
                }
                // Series-major: each series' points are adjacent and in time order.
                for pair in b.windows(2) {
                    if pair[0].0 == pair[1].0 {
                        assert!(pair[0].1.t < pair[1].1.t);
                    }
                }
                seen.extend(b.into_iter().map(|(i, s)| (i, s.t)));
                Ok(())
            },
        )
        .unwrap();
        // 8 series per connection in groups of 3, 3, 2; steps in blocks of 2, 2, 1.
        assert_eq!(sizes.iter().sum::<usize>(), 80);
        assert_eq!(sizes[..3], [6, 6, 4]);
        assert_eq!(*sizes.last().unwrap(), 2);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 80);
    }
}
