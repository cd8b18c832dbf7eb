//! Prometheus remote write 1.0: `POST /api/v1/write` with `Content-Type:
//! application/x-protobuf` and `Content-Encoding: snappy`.
//!
//! [`decode`] turns a body into series with their samples; [`decode_cached`] does the same
//! reading the request in place and taking repeated series' label sets from a cache (`walk`);
//! [`encode`] builds one (tests, load generator). The message definitions are in [`proto`].
//!
//! # Memory
//!
//! The body and its decompressed size are capped before anything is allocated
//! ([`RemoteWriteLimits`]). Protobuf decoding can still expand: a hostile body of minimal
//! messages turns every 2 bytes into a 48-byte `Label`, so the worst case is about 24× the
//! decompressed limit. The default of 32 MiB keeps that under 1 GiB while being about ten
//! times what Prometheus sends in one request (`max_samples_per_send` 2000, by default).
//! Samples are returned grouped by series ([`DecodedWrite`]) rather than as one label set
//! per sample, which would multiply the label bytes by the number of samples; callers flatten
//! in bounded chunks ([`DecodedWrite::chunks`]).

pub mod codec;
pub mod proto;
mod walk;

use crate::storage::{Labels, Sample};

pub use codec::{compress, decode, decode_cached, encode, RemoteWriteError};

/// Size limits for one request.
#[derive(Clone, Copy, Debug)]
pub struct RemoteWriteLimits {
    /// Largest (compressed) body accepted, in bytes.
    pub max_body: usize,
    /// Largest decompressed body accepted, in bytes.
    pub max_decompressed: usize,
}

impl Default for RemoteWriteLimits {
    fn default() -> Self {
        RemoteWriteLimits {
            max_body: 16 << 20,
            max_decompressed: 32 << 20,
        }
    }
}

/// A decoded request: each series once, with its samples in the order sent, and the metric
/// metadata it carried.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecodedWrite {
    pub series: Vec<(Labels, Vec<Sample>)>,
    /// `(metric family, metadata)`, texts capped (see [`crate::metadata`]).
    pub metadata: Vec<(String, crate::metadata::MetricMetadata)>,
}

impl DecodedWrite {
    /// Number of samples over all series.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|(_, s)| s.len()).sum()
    }

    /// Every sample with its label set, in request order.
    pub fn into_pairs(self) -> Vec<(Labels, Sample)> {
        let mut out = Vec::with_capacity(self.sample_count());
        for (labels, samples) in self.series {
            out.extend(samples.into_iter().map(|s| (labels.clone(), s)));
        }
        out
    }

    /// The series in batches of at most `max` samples (at least one), in request order; a
    /// series with more samples than that is split over consecutive batches. For
    /// [`IngestSink::write_series`](crate::ingest::IngestSink::write_series), which stores
    /// each label set once.
    pub fn into_series_chunks(self, max: usize) -> Vec<Vec<(Labels, Vec<Sample>)>> {
        crate::ingest::series_chunks::series_chunks(self.series, max)
    }

    /// The samples as `(Labels, Sample)` batches of at most `max` samples (at least one), in
    /// request order, for writing through the ingest sink without holding all copies of the
    /// label sets at once.
    pub fn chunks(&self, max: usize) -> impl Iterator<Item = Vec<(Labels, Sample)>> + '_ {
        let max = max.max(1);
        let mut flat = self
            .series
            .iter()
            .flat_map(|(labels, samples)| samples.iter().map(move |s| (labels, *s)))
            .peekable();
        std::iter::from_fn(move || {
            flat.peek()?;
            Some(
                flat.by_ref()
                    .take(max)
                    .map(|(l, s)| (l.clone(), s))
                    .collect(),
            )
        })
    }
}

#[cfg(test)]
mod tests;
