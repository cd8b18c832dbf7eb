//! The chunk format and the public entry points of the codec.
//!
//! A chunk holds 1..=[`MAX_CHUNK_SAMPLES`] samples of one series with strictly increasing
//! timestamps. Byte layout:
//!
//! ```text
//! encoding   u8        1 = Gorilla, 2 = Decimal
//! count      uvarint   number of samples, 1..=65536
//! mint       varint    zigzag LEB128: timestamp of the first sample
//! span       uvarint   maxt - mint (as u64): 0 when count = 1, else >= count - 1
//! body                 the encoding's body, to the end of the bytes
//! ```
//!
//! The header alone answers [`chunk_meta`] in O(1). Bodies are described in the `gorilla` and
//! `decimal` modules. Decoders check everything they read: a count that the body cannot hold,
//! non-increasing timestamps, a last timestamp other than `maxt`, out-of-range parameters. No
//! input makes them panic or allocate more than `count` samples (at most 65536).

use super::aggregate::Aggregate;
use super::bitstream::BitReader;
use super::decimal::{self, DecimalDecoder};
use super::error::CodecError;
use super::gorilla::{GorillaAppender, GorillaDecoder, FIRST_SAMPLE_BITS, MIN_BITS_PER_SAMPLE};
use super::varint::{put_uvarint, put_varint, ByteReader};
use crate::storage::model::Sample;

/// Most samples one chunk may hold.
pub const MAX_CHUNK_SAMPLES: usize = 65536;

/// Samples decoded per block by the iterator and the aggregation.
const BLOCK: usize = 128;

/// How a chunk's body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    /// Delta-of-delta timestamps and XOR-ed floats; works for any value.
    Gorilla = 1,
    /// Exact decimal mantissas with delta/delta-of-delta Rice or run-length coding.
    Decimal = 2,
}

impl TryFrom<u8> for Encoding {
    type Error = CodecError;

    fn try_from(b: u8) -> Result<Self, CodecError> {
        match b {
            1 => Ok(Encoding::Gorilla),
            2 => Ok(Encoding::Decimal),
            other => Err(CodecError::BadEncoding(other)),
        }
    }
}

/// What a chunk's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    /// Encoding of the body.
    pub encoding: Encoding,
    /// Number of samples, 1..=`MAX_CHUNK_SAMPLES`.
    pub count: u32,
    /// Timestamp of the first sample.
    pub mint: i64,
    /// Timestamp of the last sample.
    pub maxt: i64,
}

/// Appends the common header.
pub(crate) fn write_header(
    out: &mut Vec<u8>,
    encoding: Encoding,
    count: u32,
    mint: i64,
    maxt: i64,
) {
    out.push(encoding as u8);
    put_uvarint(out, u64::from(count));
    put_varint(out, mint);
    put_uvarint(out, maxt.wrapping_sub(mint) as u64);
}

fn parse_header(bytes: &[u8]) -> Result<(ChunkMeta, &[u8]), CodecError> {
    let mut r = ByteReader::new(bytes);
    let encoding = Encoding::try_from(r.u8()?)?;
    let count = r.uvarint()?;
    if count == 0 || count > MAX_CHUNK_SAMPLES as u64 {
        return Err(CodecError::CountOutOfRange {
            count,
            max: MAX_CHUNK_SAMPLES,
        });
    }
    let count = count as u32;
    let mint = r.varint()?;
    let span = r.uvarint()?;
    let maxt = i128::from(mint) + i128::from(span);
    let fits = if count == 1 {
        span == 0
    } else {
        span >= u64::from(count - 1)
    };
    if !fits || maxt > i128::from(i64::MAX) {
        return Err(CodecError::BadTimeRange { mint, span, count });
    }
    let meta = ChunkMeta {
        encoding,
        count,
        mint,
        maxt: maxt as i64,
    };
    Ok((meta, r.rest()))
}

/// Reads a chunk's header without decoding the body.
pub fn chunk_meta(bytes: &[u8]) -> Result<ChunkMeta, CodecError> {
    parse_header(bytes).map(|(meta, _)| meta)
}

fn validate_input(samples: &[Sample]) -> Result<(), CodecError> {
    if samples.is_empty() {
        return Err(CodecError::Empty);
    }
    if samples.len() > MAX_CHUNK_SAMPLES {
        return Err(CodecError::TooManySamples {
            count: samples.len(),
            max: MAX_CHUNK_SAMPLES,
        });
    }
    for (i, w) in samples.windows(2).enumerate() {
        if w[1].t <= w[0].t {
            return Err(CodecError::NonIncreasingTimestamps {
                index: i + 1,
                prev: w[0].t,
                t: w[1].t,
            });
        }
    }
    Ok(())
}

/// Encodes samples (1..=`MAX_CHUNK_SAMPLES`, strictly increasing timestamps) as a chunk.
///
/// Every applicable encoding is tried and the smallest result kept; Decimal wins ties since it
/// decodes faster. Every result is decoded again and compared bit for bit before it is
/// returned, so a chunk from this function always decodes to exactly `samples`.
pub fn encode_chunk(samples: &[Sample]) -> Result<Vec<u8>, CodecError> {
    validate_input(samples)?;
    let mut appender = GorillaAppender::new();
    for s in samples {
        appender.append(s.t, s.v)?;
    }
    let gorilla_size = appender.encoded_size();
    if let Some(dec) = decimal::encode(samples) {
        if dec.len() <= gorilla_size {
            // decimal::encode verified its output already.
            return Ok(dec);
        }
    }
    let chunk = appender.to_chunk()?;
    let mut check = Vec::with_capacity(samples.len());
    match decode_chunk(&chunk, &mut check) {
        Ok(()) if check.as_slice() == samples => Ok(chunk),
        result => {
            tracing::error!(
                ?result,
                samples = samples.len(),
                "Gorilla chunk failed its round-trip check"
            );
            Err(CodecError::VerificationFailed(Encoding::Gorilla))
        }
    }
}

/// The encoding [`encode_chunk`] would give the samples of a Gorilla chunk that a
/// [`GorillaAppender`] wrote: `Some` decimal bytes when they are no larger (verified like every
/// result of `encode_chunk`), `None` when the Gorilla bytes are already the answer. The head
/// seals chunks as their appender's bytes and settles them with this, off the write path.
/// Fails if `gorilla` does not decode to a valid chunk's samples.
pub fn settle_gorilla_chunk(gorilla: &[u8]) -> Result<Option<Vec<u8>>, CodecError> {
    let mut samples = Vec::new();
    decode_chunk(gorilla, &mut samples)?;
    validate_input(&samples)?;
    // The appender's bytes are what `encode_chunk`'s own appender would write for these
    // samples, so their length is the size `encode_chunk` weighs decimal against.
    Ok(decimal::encode(&samples).filter(|dec| dec.len() <= gorilla.len()))
}

/// A body decoder of either encoding.
// Boxing the larger variant would cost an allocation per chunk opened; the enum lives on
// the stack or inline in a `ChunkIter`, where a few hundred bytes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Body<'a> {
    Gorilla(GorillaDecoder<'a>),
    Decimal(DecimalDecoder<'a>),
}

impl<'a> Body<'a> {
    fn open(bytes: &'a [u8]) -> Result<(ChunkMeta, Self), CodecError> {
        let (meta, body) = parse_header(bytes)?;
        let dec = match meta.encoding {
            Encoding::Gorilla => {
                let need = FIRST_SAMPLE_BITS + MIN_BITS_PER_SAMPLE * u64::from(meta.count - 1);
                if need > body.len() as u64 * 8 {
                    return Err(CodecError::CountExceedsBody {
                        count: meta.count,
                        body_bytes: body.len(),
                    });
                }
                Body::Gorilla(GorillaDecoder::new(
                    BitReader::new(body),
                    meta.count,
                    meta.mint,
                    meta.maxt,
                ))
            }
            Encoding::Decimal => {
                Body::Decimal(DecimalDecoder::new(body, meta.count, meta.mint, meta.maxt)?)
            }
        };
        Ok((meta, dec))
    }

    #[inline]
    fn remaining(&self) -> usize {
        match self {
            Body::Gorilla(d) => d.remaining(),
            Body::Decimal(d) => d.remaining(),
        }
    }

    /// Decodes the next `min(ts.len(), remaining())` samples into the front of `ts`/`vs` and
    /// returns how many; 0 at the end.
    #[inline]
    fn fill(&mut self, ts: &mut [i64], vs: &mut [f64]) -> Result<usize, CodecError> {
        let n = ts.len().min(vs.len()).min(self.remaining());
        let (ts, vs) = (&mut ts[..n], &mut vs[..n]);
        match self {
            Body::Gorilla(d) => d.fill(ts, vs)?,
            Body::Decimal(d) => d.fill(ts, vs)?,
        }
        Ok(n)
    }
}

/// Appends a chunk's samples to `out`.
///
/// On error `out` may already hold a prefix of the chunk's samples (whole decoded blocks);
/// callers that need all-or-nothing truncate `out` back to its previous length.
pub fn decode_chunk(bytes: &[u8], out: &mut Vec<Sample>) -> Result<(), CodecError> {
    let (meta, mut body) = Body::open(bytes)?;
    out.reserve(meta.count as usize);
    let mut ts = [0i64; BLOCK];
    let mut vs = [0f64; BLOCK];
    loop {
        let n = body.fill(&mut ts, &mut vs)?;
        if n == 0 {
            return Ok(());
        }
        out.extend(ts[..n].iter().zip(&vs[..n]).map(|(&t, &v)| Sample { t, v }));
    }
}

/// Folds the samples with `t0 <= t < t1` into `agg` while decoding, without materialising
/// them; the result is bitwise what [`Aggregate::add`] on each such sample in order gives.
///
/// An empty window (`t0 >= t1`) and chunks whose `[mint, maxt]` misses the window are
/// answered from the header alone (only header errors are reported), and
/// decoding stops at the first sample at or after `t1`; corruption in parts of the body that
/// are not decoded is therefore not reported. On error `agg` may already include a prefix of
/// the window's samples; discard it.
pub fn aggregate_chunk(
    bytes: &[u8],
    t0: i64,
    t1: i64,
    agg: &mut Aggregate,
) -> Result<(), CodecError> {
    let meta = chunk_meta(bytes)?;
    if t0 >= t1 || meta.maxt < t0 || meta.mint >= t1 {
        return Ok(());
    }
    let (_, mut body) = Body::open(bytes)?;
    let mut ts = [0i64; BLOCK];
    let mut vs = [0f64; BLOCK];
    loop {
        let n = body.fill(&mut ts, &mut vs)?;
        let (ts, vs) = (&ts[..n], &vs[..n]);
        match ts.last() {
            None => return Ok(()),
            Some(&last) if last < t0 => continue,
            Some(_) => {}
        }
        let lo = ts.partition_point(|&t| t < t0);
        let hi = ts.partition_point(|&t| t < t1);
        agg.fold(&ts[lo..hi], &vs[lo..hi]);
        if hi < n {
            return Ok(());
        }
    }
}

/// Streaming decoder of one chunk, decoding a block of samples at a time.
///
/// Yields `Ok(sample)` in time order, or one `Err` after which it ends. Use
/// [`ChunkIter::next_sample`] to avoid the `Option<Result<..>>` shape.
#[derive(Debug, Clone)]
pub struct ChunkIter<'a> {
    body: Body<'a>,
    meta: ChunkMeta,
    ts: [i64; BLOCK],
    vs: [f64; BLOCK],
    pos: usize,
    len: usize,
    failed: bool,
}

impl<'a> ChunkIter<'a> {
    /// Parses the header and prepares to decode; fails on a corrupt header.
    pub fn new(bytes: &'a [u8]) -> Result<Self, CodecError> {
        let (meta, body) = Body::open(bytes)?;
        Ok(ChunkIter {
            body,
            meta,
            ts: [0; BLOCK],
            vs: [0.0; BLOCK],
            pos: 0,
            len: 0,
            failed: false,
        })
    }

    /// The chunk's header.
    pub fn meta(&self) -> ChunkMeta {
        self.meta
    }

    /// Decodes the next block; false at the end.
    #[inline(never)]
    fn refill(&mut self) -> Result<bool, CodecError> {
        if self.failed {
            return Ok(false);
        }
        match self.body.fill(&mut self.ts, &mut self.vs) {
            Ok(n) => {
                self.pos = 0;
                self.len = n;
                Ok(n > 0)
            }
            Err(e) => {
                self.failed = true;
                self.pos = 0;
                self.len = 0;
                Err(e)
            }
        }
    }

    /// The next sample, `Ok(None)` at the end. After an error, returns `Ok(None)`.
    #[inline]
    pub fn next_sample(&mut self) -> Result<Option<Sample>, CodecError> {
        if self.pos >= self.len && !self.refill()? {
            return Ok(None);
        }
        let i = self.pos;
        self.pos += 1;
        Ok(Some(Sample {
            t: self.ts[i],
            v: self.vs[i],
        }))
    }

    /// Skips samples before `t`: the next sample returned is the first not yet returned with
    /// timestamp `>= t` (it never moves backwards). Skipped samples are still decoded (values
    /// are delta-coded) but not returned one by one; a `t` past `maxt` drains the chunk.
    pub fn seek(&mut self, t: i64) -> Result<(), CodecError> {
        if t > self.meta.maxt {
            // Nothing at or after t: drain without materialising.
            while self.refill()? {}
            self.pos = self.len;
            return Ok(());
        }
        loop {
            if self.pos < self.len {
                let block = &self.ts[self.pos..self.len];
                if block.last().is_some_and(|&last| last >= t) {
                    self.pos += block.partition_point(|&x| x < t);
                    return Ok(());
                }
            }
            if !self.refill()? {
                return Ok(());
            }
        }
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = Result<Sample, CodecError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.next_sample().transpose()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.failed {
            return (0, Some(0));
        }
        let n = self.len - self.pos + self.body.remaining();
        (0, Some(n))
    }
}
