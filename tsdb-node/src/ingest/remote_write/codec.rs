//! Remote write bodies: snappy (block format) around a protobuf `WriteRequest`.
//!
//! Both sizes are checked before any work: the body against [`RemoteWriteLimits::max_body`],
//! and the decompressed length, which the snappy block header announces, against
//! [`RemoteWriteLimits::max_decompressed`] before the output buffer is allocated.

use crate::ingest::label_cache::SharedLabelCache;
use crate::metadata::MetricMetadata;
use crate::storage::{self, Labels};

use super::{proto, walk};
use super::{DecodedWrite, RemoteWriteLimits};

/// Why a remote write body was refused.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    #[error("request body of {len} bytes exceeds the limit of {max} bytes")]
    BodyTooLarge { len: usize, max: usize },
    #[error("decompressed body would be {len} bytes, over the limit of {max} bytes")]
    DecompressedTooLarge { len: usize, max: usize },
    #[error("body is not valid snappy block-format data: {0}")]
    Snappy(#[source] snap::Error),
    #[error("body is not a valid prometheus.WriteRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("request could not be compressed: {0}")]
    Compress(#[source] snap::Error),
}

/// Decodes a `Content-Encoding: snappy`, `Content-Type: application/x-protobuf` body.
///
/// Labels are sorted (upstream requires senders to sort them, but we do not rely on it);
/// empty label values are dropped, as in Prometheus. Values are kept bit for bit, so the
/// staleness marker NaN survives. Series without samples are left out. Label names are not
/// validated here: the storage catalog refuses invalid series per sample.
pub fn decode(body: &[u8], limits: &RemoteWriteLimits) -> Result<DecodedWrite, RemoteWriteError> {
    decode_prost(&decompress(body, limits)?)
}

/// [`decode`], taking the label sets of series seen in earlier requests from `cache` and
/// leaving new ones there (see [`super::walk`]). The outcome is the same as [`decode`]'s.
pub fn decode_cached(
    body: &[u8],
    limits: &RemoteWriteLimits,
    cache: &SharedLabelCache,
) -> Result<DecodedWrite, RemoteWriteError> {
    let raw = decompress(body, limits)?;
    match walk::decode_request(&raw, cache) {
        Ok(decoded) => Ok(decoded),
        Err(walk::Unhandled) => decode_prost(&raw),
    }
}

/// The decompressed request, its sizes checked first.
fn decompress(body: &[u8], limits: &RemoteWriteLimits) -> Result<Vec<u8>, RemoteWriteError> {
    if body.len() > limits.max_body {
        return Err(RemoteWriteError::BodyTooLarge {
            len: body.len(),
            max: limits.max_body,
        });
    }
    let len = snap::raw::decompress_len(body).map_err(RemoteWriteError::Snappy)?;
    if len > limits.max_decompressed {
        return Err(RemoteWriteError::DecompressedTooLarge {
            len,
            max: limits.max_decompressed,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(RemoteWriteError::Snappy)
}

fn decode_prost(raw: &[u8]) -> Result<DecodedWrite, RemoteWriteError> {
    let request = <proto::WriteRequest as prost::Message>::decode(raw)?;
    let mut series = Vec::with_capacity(request.timeseries.len());
    for ts in request.timeseries {
        if ts.samples.is_empty() {
            continue;
        }
        let labels = Labels::new(
            ts.labels
                .into_iter()
                .map(|l| storage::Label::new(l.name, l.value))
                .collect(),
        );
        let samples = ts
            .samples
            .into_iter()
            .map(|s| storage::Sample::new(s.timestamp, s.value))
            .collect();
        series.push((labels, samples));
    }
    let metadata = request.metadata.iter().filter_map(metadata_entry).collect();
    Ok(DecodedWrite { series, metadata })
}

/// A metadata entry as stored: `(metric family, metadata)`; none without a family name.
pub(super) fn metadata_entry(m: &proto::MetricMetadata) -> Option<(String, MetricMetadata)> {
    (!m.metric_family_name.is_empty()).then(|| {
        (
            m.metric_family_name.clone(),
            MetricMetadata::from_remote_write(m.r#type, &m.help, &m.unit),
        )
    })
}

/// Builds a body as Prometheus sends it, for tests and the load generator. As with every
/// proto3 encoder (Prometheus' included), a value of -0.0 equals the default 0.0 and is left
/// out, so it arrives as 0.0; every other value, NaN payloads included, is sent bit for bit.
pub fn encode(series: &[(Labels, Vec<storage::Sample>)]) -> Result<Vec<u8>, RemoteWriteError> {
    compress(&prost::Message::encode_to_vec(&write_request(series)))
}

/// The `WriteRequest` message of `series`, before encoding.
pub fn write_request(series: &[(Labels, Vec<storage::Sample>)]) -> proto::WriteRequest {
    proto::WriteRequest {
        timeseries: series
            .iter()
            .map(|(labels, samples)| proto::TimeSeries {
                labels: labels
                    .iter()
                    .map(|l| proto::Label {
                        name: l.name.clone(),
                        value: l.value.clone(),
                    })
                    .collect(),
                samples: samples
                    .iter()
                    .map(|s| proto::Sample {
                        value: s.v,
                        timestamp: s.t,
                    })
                    .collect(),
            })
            .collect(),
        metadata: Vec::new(),
    }
}

/// Snappy block-format compression of an already serialised request.
pub fn compress(raw: &[u8]) -> Result<Vec<u8>, RemoteWriteError> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .map_err(RemoteWriteError::Compress)
}
