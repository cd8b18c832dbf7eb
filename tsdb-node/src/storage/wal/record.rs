//! WAL record payloads and their byte encoding.
//!
//! Payload layout (the first byte is the record type):
//!
//! ```text
//! Series    = 0x01 | id: uvarint | n: uvarint | n × (name: str | value: str)
//! Samples   = 0x02 | n: uvarint | n × (Δid: ivarint | Δt: ivarint | v: f64 LE)
//! Tombstone = 0x03 | n: uvarint | n × (op: u8 | name: str | value: str)
//!                  | mint: ivarint | maxt: ivarint
//! str       = len: uvarint | UTF-8 bytes
//! ```
//!
//! In `Samples`, `Δid` and `Δt` are wrapping differences to the previous sample of the same
//! record (the first sample is relative to 0), zigzag-encoded: consecutive samples of a batch
//! usually share a timestamp and have nearby ids, so most deltas take one byte. Matcher ops are
//! 0 `=`, 1 `!=`, 2 `=~`, 3 `!~`.

use crate::storage::model::{Label, Labels, MatchOp, Matcher, Sample, SeriesId};

use super::error::DecodeError;
use super::varint::{put_ivarint, put_str, put_uvarint, Reader, MAX_VARINT_LEN};

const TYPE_SERIES: u8 = 0x01;
const TYPE_SAMPLES: u8 = 0x02;
const TYPE_TOMBSTONE: u8 = 0x03;

/// Smallest encoding of one sample: 1-byte Δid, 1-byte Δt, 8-byte value.
const MIN_SAMPLE_LEN: usize = 10;
/// Largest encoding of one sample; used to split huge sample batches into records that fit a
/// frame.
pub(crate) const MAX_SAMPLE_LEN: usize = 2 * MAX_VARINT_LEN + 8;
/// Smallest encoding of one label: two empty strings.
const MIN_LABEL_LEN: usize = 2;
/// Smallest encoding of one matcher: op byte and two empty strings.
const MIN_MATCHER_LEN: usize = 3;

/// One entry of the write-ahead log.
#[derive(Clone, Debug)]
pub enum WalRecord {
    /// A new series and the id the catalog gave it.
    Series { id: SeriesId, labels: Labels },
    /// Samples, in the order they were accepted.
    Samples(Vec<(SeriesId, Sample)>),
    /// Deletion of the matched series' samples in [mint, maxt].
    Tombstone {
        matchers: Vec<Matcher>,
        mint: i64,
        maxt: i64,
    },
}

/// Matchers carry a compiled regex and so have no `PartialEq`; two matchers are equal when
/// they were built from the same name, op and pattern.
impl PartialEq for WalRecord {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (WalRecord::Series { id: a, labels: la }, WalRecord::Series { id: b, labels: lb }) => {
                a == b && la == lb
            }
            (WalRecord::Samples(a), WalRecord::Samples(b)) => a == b,
            (
                WalRecord::Tombstone {
                    matchers: ma,
                    mint: mina,
                    maxt: maxa,
                },
                WalRecord::Tombstone {
                    matchers: mb,
                    mint: minb,
                    maxt: maxb,
                },
            ) => {
                mina == minb
                    && maxa == maxb
                    && ma.len() == mb.len()
                    && ma
                        .iter()
                        .zip(mb)
                        .all(|(x, y)| x.name == y.name && x.op == y.op && x.value == y.value)
            }
            _ => false,
        }
    }
}

impl WalRecord {
    /// Appends this record's payload (type byte included, frame header excluded) to `buf`.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        match self {
            WalRecord::Series { id, labels } => {
                buf.push(TYPE_SERIES);
                put_uvarint(buf, *id);
                put_uvarint(buf, labels.len() as u64);
                for l in labels.iter() {
                    put_str(buf, &l.name);
                    put_str(buf, &l.value);
                }
            }
            WalRecord::Samples(samples) => encode_samples(samples, buf),
            WalRecord::Tombstone {
                matchers,
                mint,
                maxt,
            } => {
                buf.push(TYPE_TOMBSTONE);
                put_uvarint(buf, matchers.len() as u64);
                for m in matchers {
                    buf.push(op_to_byte(m.op));
                    put_str(buf, &m.name);
                    put_str(buf, &m.value);
                }
                put_ivarint(buf, *mint);
                put_ivarint(buf, *maxt);
            }
        }
    }

    /// Number of samples the record carries (0 for non-sample records).
    pub fn sample_count(&self) -> usize {
        match self {
            WalRecord::Samples(s) => s.len(),
            _ => 0,
        }
    }

    /// Decodes one payload. Never panics, and allocates at most in proportion to `bytes.len()`.
    pub fn decode(bytes: &[u8]) -> Result<WalRecord, DecodeError> {
        let mut r = Reader::new(bytes);
        let ty = r.u8().map_err(|_| DecodeError::Empty)?;
        let rec = match ty {
            TYPE_SERIES => {
                let id = r.uvarint()?;
                let n = r.count(MIN_LABEL_LEN)?;
                let mut labels = Vec::with_capacity(n);
                for _ in 0..n {
                    let name = r.string()?;
                    let value = r.string()?;
                    labels.push(Label { name, value });
                }
                WalRecord::Series {
                    id,
                    labels: Labels::new(labels),
                }
            }
            TYPE_SAMPLES => {
                let n = r.count(MIN_SAMPLE_LEN)?;
                let mut samples = Vec::with_capacity(n);
                let (mut id, mut t) = (0u64, 0i64);
                for _ in 0..n {
                    id = id.wrapping_add(r.ivarint()? as u64);
                    t = t.wrapping_add(r.ivarint()?);
                    let v = r.f64_le()?;
                    samples.push((id, Sample { t, v }));
                }
                WalRecord::Samples(samples)
            }
            TYPE_TOMBSTONE => {
                let n = r.count(MIN_MATCHER_LEN)?;
                let mut matchers = Vec::with_capacity(n);
                for _ in 0..n {
                    let op = op_from_byte(r.u8()?)?;
                    let name = r.string()?;
                    let value = r.string()?;
                    matchers.push(Matcher::new(op, name, value)?);
                }
                let mint = r.ivarint()?;
                let maxt = r.ivarint()?;
                WalRecord::Tombstone {
                    matchers,
                    mint,
                    maxt,
                }
            }
            other => return Err(DecodeError::UnknownType(other)),
        };
        r.finish()?;
        Ok(rec)
    }
}

/// Encodes a `Samples` payload from a slice, so the writer can split an oversized batch into
/// several records without copying it into new `WalRecord`s.
pub(crate) fn encode_samples(samples: &[(SeriesId, Sample)], buf: &mut Vec<u8>) {
    // One reservation up front: typical deltas are 1 byte each, plus the 8-byte value.
    buf.reserve(1 + MAX_VARINT_LEN + samples.len() * MIN_SAMPLE_LEN);
    buf.push(TYPE_SAMPLES);
    put_uvarint(buf, samples.len() as u64);
    let (mut prev_id, mut prev_t) = (0u64, 0i64);
    for &(id, s) in samples {
        put_ivarint(buf, id.wrapping_sub(prev_id) as i64);
        put_ivarint(buf, s.t.wrapping_sub(prev_t));
        buf.extend_from_slice(&s.v.to_bits().to_le_bytes());
        prev_id = id;
        prev_t = s.t;
    }
}

fn op_to_byte(op: MatchOp) -> u8 {
    match op {
        MatchOp::Equal => 0,
        MatchOp::NotEqual => 1,
        MatchOp::RegexMatch => 2,
        MatchOp::RegexNoMatch => 3,
    }
}

fn op_from_byte(b: u8) -> Result<MatchOp, DecodeError> {
    Ok(match b {
        0 => MatchOp::Equal,
        1 => MatchOp::NotEqual,
        2 => MatchOp::RegexMatch,
        3 => MatchOp::RegexNoMatch,
        other => return Err(DecodeError::UnknownMatchOp(other)),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(rec: &WalRecord) -> WalRecord {
        let mut buf = Vec::new();
        rec.encode_into(&mut buf);
        WalRecord::decode(&buf).expect("decodes")
    }

    #[test]
    fn every_record_type_round_trips() {
        let recs = [
            WalRecord::Series {
                id: 42,
                labels: Labels::from_metric("cpu", &[("host", "a"), ("ünï", "cödé")]),
            },
            WalRecord::Series {
                id: u64::MAX,
                labels: Labels::default(),
            },
            WalRecord::Samples(vec![
                (7, Sample::new(1_700_000_000_000, 1.5)),
                (3, Sample::new(1_700_000_000_000, f64::NAN)),
                (u64::MAX, Sample::new(i64::MIN, -0.0)),
                (0, Sample::new(i64::MAX, f64::INFINITY)),
            ]),
            WalRecord::Samples(vec![]),
            WalRecord::Tombstone {
                matchers: vec![
                    Matcher::equal("__name__", "cpu"),
                    Matcher::new(MatchOp::NotEqual, "a", "b").unwrap(),
                    Matcher::new(MatchOp::RegexMatch, "host", "web-.*").unwrap(),
                    Matcher::new(MatchOp::RegexNoMatch, "dc", "eu|us").unwrap(),
                ],
                mint: i64::MIN,
                maxt: i64::MAX,
            },
        ];
        for rec in &recs {
            assert_eq!(&round_trip(rec), rec);
        }
    }

    #[test]
    fn samples_are_compact() {
        let samples: Vec<_> = (0..1000u64)
            .map(|i| (1000 + i, Sample::new(1_700_000_000_000, i as f64)))
            .collect();
        let mut buf = Vec::new();
        WalRecord::Samples(samples).encode_into(&mut buf);
        // 8-byte value + 1-byte Δid + 1-byte Δt per sample, plus the first sample's full values.
        assert!(buf.len() < 1000 * 10 + 16, "{}", buf.len());
    }

    #[test]
    fn bad_regex_is_corruption() {
        let mut buf = vec![TYPE_TOMBSTONE, 1, 2];
        put_str(&mut buf, "a");
        put_str(&mut buf, "(");
        put_ivarint(&mut buf, 0);
        put_ivarint(&mut buf, 0);
        assert!(matches!(
            WalRecord::decode(&buf),
            Err(DecodeError::InvalidMatcher(_))
        ));
    }

    #[test]
    fn malformed_payloads_are_errors() {
        assert!(matches!(WalRecord::decode(&[]), Err(DecodeError::Empty)));
        assert!(matches!(
            WalRecord::decode(&[0x09]),
            Err(DecodeError::UnknownType(0x09))
        ));
        // A count far beyond the input must fail before allocating.
        let mut buf = vec![TYPE_SAMPLES];
        put_uvarint(&mut buf, u64::MAX);
        assert!(matches!(
            WalRecord::decode(&buf),
            Err(DecodeError::CountTooLarge { .. })
        ));
        let mut buf = Vec::new();
        WalRecord::Samples(vec![(1, Sample::new(1, 1.0))]).encode_into(&mut buf);
        buf.push(0);
        assert!(matches!(
            WalRecord::decode(&buf),
            Err(DecodeError::TrailingBytes(1))
        ));
    }

    pub(crate) fn arb_labels() -> impl Strategy<Value = Labels> {
        proptest::collection::vec(("[a-z_]{1,8}", "\\PC{0,8}"), 0..6).prop_map(|pairs| {
            Labels::new(pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect())
        })
    }

    fn arb_matcher() -> impl Strategy<Value = Matcher> {
        (0u8..4, "[a-z_]{0,8}", "[a-z0-9.*|]{0,8}")
            .prop_filter_map("regex must compile", |(op, name, value)| {
                Matcher::new(op_from_byte(op).ok()?, name, value).ok()
            })
    }

    pub(crate) fn arb_record() -> impl Strategy<Value = WalRecord> {
        prop_oneof![
            (any::<u64>(), arb_labels()).prop_map(|(id, labels)| WalRecord::Series { id, labels }),
            proptest::collection::vec((any::<u64>(), any::<i64>(), any::<u64>()), 0..50).prop_map(
                |v| WalRecord::Samples(
                    v.into_iter()
                        .map(|(id, t, bits)| (id, Sample::new(t, f64::from_bits(bits))))
                        .collect()
                )
            ),
            (
                proptest::collection::vec(arb_matcher(), 0..4),
                any::<i64>(),
                any::<i64>()
            )
                .prop_map(|(matchers, mint, maxt)| WalRecord::Tombstone {
                    matchers,
                    mint,
                    maxt
                }),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_records_round_trip(rec in arb_record()) {
            prop_assert_eq!(round_trip(&rec), rec);
        }

        #[test]
        fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(rec) = WalRecord::decode(&bytes) {
                prop_assert_eq!(round_trip(&rec), rec);
            }
        }

        #[test]
        fn typed_garbage_never_panics(ty in 1u8..4, bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = vec![ty];
            buf.extend_from_slice(&bytes);
            if let Ok(rec) = WalRecord::decode(&buf) {
                prop_assert_eq!(round_trip(&rec), rec);
            }
        }
    }
}
