//! The fast path of remote write decoding: the `WriteRequest` bytes read in place, each
//! series' label set taken from a [`LabelCache`](crate::ingest::label_cache::LabelCache) keyed by the series' label fields exactly as
//! encoded.
//!
//! A sender repeats the same series request after request (Prometheus resends every active
//! series each scrape), and in requests of one point per series, decoding every label into
//! owned strings, sorting them and dropping them again was most of the work per sample. Here a
//! series whose label bytes were seen before costs a hash of those bytes.
//!
//! This reader only ever accepts what prost accepts, with the same meaning (repeated fields
//! append, a repeated scalar's last value wins, unknown fields are skipped): anything else,
//! including input prost would take but this reader does not handle (groups), is
//! [`Unhandled`], and the caller decodes the body with prost, which gives the answer or the
//! error. `walk_agrees_with_prost` and the `remote_write` fuzz target hold it to that.

use super::codec::metadata_entry;
use super::{proto, DecodedWrite};
use crate::ingest::label_cache::SharedLabelCache;
use crate::storage::{Label, Labels, Sample};

/// This reader does not decode the input (it may be invalid, or valid in a form this reader
/// leaves to prost).
#[derive(Debug)]
pub(super) struct Unhandled;

type Walk<T> = Result<T, Unhandled>;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// A varint of at most ten bytes whose tenth byte holds only the 64th bit, as prost reads.
    #[inline]
    fn varint(&mut self) -> Walk<u64> {
        // Every key of a write request and most lengths fit one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_long()
    }

    fn varint_long(&mut self) -> Walk<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or(Unhandled)?;
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(Unhandled);
            }
            v |= u64::from(b & 0x7F) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Unhandled)
    }

    /// Field number and wire type; prost refuses keys beyond 32 bits, wire types above 5 and
    /// field number 0.
    fn key(&mut self) -> Walk<(u32, u8)> {
        let key = self.varint()?;
        let key = u32::try_from(key).map_err(|_| Unhandled)?;
        let wire = (key & 7) as u8;
        let field = key >> 3;
        if wire > FIXED32 || field == 0 {
            return Err(Unhandled);
        }
        Ok((field, wire))
    }

    fn bytes(&mut self) -> Walk<&'a [u8]> {
        let len = usize::try_from(self.varint()?).map_err(|_| Unhandled)?;
        let end = self.pos.checked_add(len).ok_or(Unhandled)?;
        let b = self.buf.get(self.pos..end).ok_or(Unhandled)?;
        self.pos = end;
        Ok(b)
    }

    fn fixed64(&mut self) -> Walk<u64> {
        let b = self.buf.get(self.pos..self.pos + 8).ok_or(Unhandled)?;
        self.pos += 8;
        let mut le = [0u8; 8];
        le.copy_from_slice(b);
        Ok(u64::from_le_bytes(le))
    }

    /// Skips an unknown field. Groups (wire types 3 and 4, deprecated) are left to prost.
    fn skip(&mut self, wire: u8) -> Walk<()> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed64().map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => {
                let end = self.pos + 4;
                if end > self.buf.len() {
                    return Err(Unhandled);
                }
                self.pos = end;
                Ok(())
            }
            _ => Err(Unhandled),
        }
    }
}

/// Decodes a decompressed `WriteRequest` as [`super::codec::decode`] does.
pub(super) fn decode_request(raw: &[u8], cache: &SharedLabelCache) -> Walk<DecodedWrite> {
    let mut r = Reader::new(raw);
    let mut out = DecodedWrite::default();
    let mut key = Vec::new();
    while !r.done() {
        match r.key()? {
            (1, LEN) => {
                if let Some(series) = time_series(r.bytes()?, cache, &mut key)? {
                    out.series.push(series);
                }
            }
            (3, LEN) => {
                let m = <proto::MetricMetadata as prost::Message>::decode(r.bytes()?)
                    .map_err(|_| Unhandled)?;
                out.metadata.extend(metadata_entry(&m));
            }
            (1 | 3, _) => return Err(Unhandled),
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(out)
}

/// One `TimeSeries`: its label set (from the cache when its label fields were seen before)
/// and samples; `None` without samples. `key` is scratch space.
fn time_series(
    buf: &[u8],
    cache: &SharedLabelCache,
    key: &mut Vec<u8>,
) -> Walk<Option<(Labels, Vec<Sample>)>> {
    let mut r = Reader::new(buf);
    key.clear();
    let mut samples = Vec::new();
    while !r.done() {
        let start = r.pos;
        match r.key()? {
            (1, LEN) => {
                r.bytes()?;
                key.extend_from_slice(&buf[start..r.pos]);
            }
            (2, LEN) => samples.push(sample(r.bytes()?)?),
            (1 | 2, _) => return Err(Unhandled),
            (_, wire) => r.skip(wire)?,
        }
    }
    // Labels are checked even for a series without samples: prost refuses the whole request
    // when any of its strings is not UTF-8.
    let cached = cache.lock().get(key);
    let labels = match cached {
        Some(labels) => labels,
        None => {
            let labels = labels_of(buf)?;
            cache.lock().insert(key, labels.clone());
            labels
        }
    };
    Ok((!samples.is_empty()).then_some((labels, samples)))
}

/// The label set of a `TimeSeries`, decoded from its label fields.
fn labels_of(buf: &[u8]) -> Walk<Labels> {
    let mut r = Reader::new(buf);
    let mut labels = Vec::new();
    while !r.done() {
        match r.key()? {
            (1, LEN) => labels.push(label(r.bytes()?)?),
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(Labels::new(labels))
}

fn label(buf: &[u8]) -> Walk<Label> {
    let mut r = Reader::new(buf);
    let (mut name, mut value) = ("", "");
    while !r.done() {
        match r.key()? {
            (1, LEN) => name = std::str::from_utf8(r.bytes()?).map_err(|_| Unhandled)?,
            (2, LEN) => value = std::str::from_utf8(r.bytes()?).map_err(|_| Unhandled)?,
            (1 | 2, _) => return Err(Unhandled),
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(Label::new(name, value))
}

fn sample(buf: &[u8]) -> Walk<Sample> {
    let mut r = Reader::new(buf);
    let mut s = Sample::new(0, 0.0);
    while !r.done() {
        match r.key()? {
            (1, FIXED64) => s.v = f64::from_bits(r.fixed64()?),
            // int64 travels as the varint of its two's complement.
            (2, VARINT) => s.t = r.varint()? as i64,
            (1 | 2, _) => return Err(Unhandled),
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(s)
}
