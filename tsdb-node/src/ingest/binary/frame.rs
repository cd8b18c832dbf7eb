//! ZTSD frames (seed 004): a fixed 16-byte header followed by a typed payload, little-endian.
//!
//! ```text
//! header: "ZTSD" | version u8 = 1 | type u8 | payload_len u32 LE | reserved [u8; 6]
//! point:  series_id u64 LE | timestamp_ms i64 LE | value f64 LE      (24 bytes)
//! ```
//!
//! This module is pure: it turns bytes into [`Frame`]s and back and knows nothing about
//! sockets. Decoding is split in two steps ([`decode_header`], then [`Frame::decode_payload`])
//! so that a reader can check the announced length against its cap *before* it allocates or
//! reads the payload.

/// The four bytes every frame starts with.
pub const MAGIC: [u8; 4] = *b"ZTSD";
/// The only protocol version this server speaks.
pub const VERSION: u8 = 0x01;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 16;
/// Size of one encoded data point.
pub const POINT_LEN: usize = 24;
/// Size of a query payload: `series_id u64 | start_ms i64 | end_ms i64`.
pub const QUERY_LEN: usize = 24;
/// Default cap on a payload: large enough for ~700 000 points per batch, small enough that a
/// hostile length field cannot make the server allocate much.
pub const DEFAULT_MAX_PAYLOAD: u32 = 16 << 20;

/// Message type codes from the seed's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MsgType {
    Insert = 0x01,
    InsertBatch = 0x02,
    Query = 0x10,
    Ping = 0x20,
    Ok = 0x80,
    Error = 0x81,
    Data = 0x82,
}

impl MsgType {
    /// The type for a wire code, if the code is known.
    pub fn from_code(code: u8) -> Option<MsgType> {
        Some(match code {
            0x01 => MsgType::Insert,
            0x02 => MsgType::InsertBatch,
            0x10 => MsgType::Query,
            0x20 => MsgType::Ping,
            0x80 => MsgType::Ok,
            0x81 => MsgType::Error,
            0x82 => MsgType::Data,
            _ => return None,
        })
    }
}

/// One data point as it travels on the wire.
#[derive(Clone, Copy, Debug)]
pub struct DataPoint {
    pub series_id: u64,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// Bitwise on the value, so that NaN round trips compare equal and -0.0 differs from 0.0.
impl PartialEq for DataPoint {
    fn eq(&self, other: &Self) -> bool {
        self.series_id == other.series_id
            && self.timestamp_ms == other.timestamp_ms
            && self.value.to_bits() == other.value.to_bits()
    }
}
impl Eq for DataPoint {}

/// A query for one series over `[start_ms, end_ms]` (both inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryRange {
    pub series_id: u64,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// A decoded header: the type code is checked, the length is within the cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub msg_type: MsgType,
    pub payload_len: u32,
}

/// Every message of the protocol, in both directions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Insert(DataPoint),
    InsertBatch(Vec<DataPoint>),
    Query(QueryRange),
    Ping,
    Ok,
    Error(String),
    Data(Vec<DataPoint>),
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad magic {0:02x?}: expected \"ZTSD\"")]
    BadMagic([u8; 4]),
    #[error("unsupported protocol version {0}: this server speaks version 1")]
    UnsupportedVersion(u8),
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    #[error("payload of {len} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge { len: u64, max: u32 },
    #[error("{msg_type:?} payload has {len} bytes: {expected}")]
    BadLength {
        msg_type: MsgType,
        len: usize,
        expected: &'static str,
    },
    #[error("error message is not valid UTF-8")]
    InvalidUtf8,
}

impl FrameError {
    /// Whether the byte stream can no longer be trusted to be aligned on frame boundaries.
    /// After a fatal error the connection must be closed; after any other error the payload
    /// was consumed as announced and the next frame can be read.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            FrameError::BadMagic(_)
                | FrameError::UnsupportedVersion(_)
                | FrameError::PayloadTooLarge { .. }
        )
    }
}

/// Checks a header's magic, version and announced length. The type code is checked apart
/// ([`RawHeader::checked`]) so that a reader can consume the payload of a well-framed message
/// it does not understand and keep the connection.
pub fn decode_header(buf: &[u8; HEADER_LEN], max_payload: u32) -> Result<RawHeader, FrameError> {
    let magic = [buf[0], buf[1], buf[2], buf[3]];
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    if buf[4] != VERSION {
        return Err(FrameError::UnsupportedVersion(buf[4]));
    }
    let payload_len = u32::from_le_bytes([buf[6], buf[7], buf[8], buf[9]]);
    if payload_len > max_payload {
        return Err(FrameError::PayloadTooLarge {
            len: u64::from(payload_len),
            max: max_payload,
        });
    }
    Ok(RawHeader {
        type_code: buf[5],
        payload_len,
    })
}

/// A header whose magic, version and length are valid; the type code is not yet checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawHeader {
    pub type_code: u8,
    pub payload_len: u32,
}

impl RawHeader {
    /// The checked header, or [`FrameError::UnknownType`].
    pub fn checked(self) -> Result<Header, FrameError> {
        match MsgType::from_code(self.type_code) {
            Some(msg_type) => Ok(Header {
                msg_type,
                payload_len: self.payload_len,
            }),
            None => Err(FrameError::UnknownType(self.type_code)),
        }
    }
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

fn decode_point(b: &[u8]) -> DataPoint {
    DataPoint {
        series_id: read_u64(&b[0..8]),
        timestamp_ms: read_u64(&b[8..16]) as i64,
        value: f64::from_bits(read_u64(&b[16..24])),
    }
}

/// Decodes `N × 24` bytes; the caller has checked the length is a multiple of 24.
fn decode_points(payload: &[u8]) -> Vec<DataPoint> {
    payload.chunks_exact(POINT_LEN).map(decode_point).collect()
}

fn encode_point(p: &DataPoint, out: &mut Vec<u8>) {
    out.extend_from_slice(&p.series_id.to_le_bytes());
    out.extend_from_slice(&p.timestamp_ms.to_le_bytes());
    out.extend_from_slice(&p.value.to_bits().to_le_bytes());
}

impl Frame {
    /// The message type this frame is sent as.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Frame::Insert(_) => MsgType::Insert,
            Frame::InsertBatch(_) => MsgType::InsertBatch,
            Frame::Query(_) => MsgType::Query,
            Frame::Ping => MsgType::Ping,
            Frame::Ok => MsgType::Ok,
            Frame::Error(_) => MsgType::Error,
            Frame::Data(_) => MsgType::Data,
        }
    }

    /// Decodes a payload of the given type. The slice is exactly the announced payload.
    pub fn decode_payload(msg_type: MsgType, payload: &[u8]) -> Result<Frame, FrameError> {
        let bad = |expected| FrameError::BadLength {
            msg_type,
            len: payload.len(),
            expected,
        };
        match msg_type {
            MsgType::Insert if payload.len() == POINT_LEN => {
                Ok(Frame::Insert(decode_point(payload)))
            }
            MsgType::Insert => Err(bad("expected 24")),
            MsgType::InsertBatch | MsgType::Data if payload.len().is_multiple_of(POINT_LEN) => {
                let points = decode_points(payload);
                Ok(if msg_type == MsgType::Data {
                    Frame::Data(points)
                } else {
                    Frame::InsertBatch(points)
                })
            }
            MsgType::InsertBatch | MsgType::Data => Err(bad("expected a multiple of 24")),
            MsgType::Query if payload.len() == QUERY_LEN => Ok(Frame::Query(QueryRange {
                series_id: read_u64(&payload[0..8]),
                start_ms: read_u64(&payload[8..16]) as i64,
                end_ms: read_u64(&payload[16..24]) as i64,
            })),
            MsgType::Query => Err(bad("expected 24")),
            MsgType::Ping | MsgType::Ok if payload.is_empty() => Ok(if msg_type == MsgType::Ping {
                Frame::Ping
            } else {
                Frame::Ok
            }),
            MsgType::Ping | MsgType::Ok => Err(bad("expected 0")),
            MsgType::Error => std::str::from_utf8(payload)
                .map(|s| Frame::Error(s.to_owned()))
                .map_err(|_| FrameError::InvalidUtf8),
        }
    }

    /// Length of the payload [`Frame::encode`] writes.
    pub fn payload_len(&self) -> usize {
        match self {
            Frame::Insert(_) | Frame::Query(_) => POINT_LEN,
            Frame::InsertBatch(p) | Frame::Data(p) => p.len().saturating_mul(POINT_LEN),
            Frame::Ping | Frame::Ok => 0,
            Frame::Error(m) => m.len(),
        }
    }

    /// Appends the encoded frame (header and payload) to `out`. Fails only when the payload
    /// does not fit the header's 32-bit length field.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let len = self.payload_len();
        let len32 = u32::try_from(len).map_err(|_| FrameError::PayloadTooLarge {
            len: len as u64,
            max: u32::MAX,
        })?;
        out.reserve(HEADER_LEN + len);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.msg_type() as u8);
        out.extend_from_slice(&len32.to_le_bytes());
        out.extend_from_slice(&[0u8; 6]);
        match self {
            Frame::Insert(p) => encode_point(p, out),
            Frame::InsertBatch(ps) | Frame::Data(ps) => {
                ps.iter().for_each(|p| encode_point(p, out))
            }
            Frame::Query(q) => {
                out.extend_from_slice(&q.series_id.to_le_bytes());
                out.extend_from_slice(&q.start_ms.to_le_bytes());
                out.extend_from_slice(&q.end_ms.to_le_bytes());
            }
            Frame::Ping | Frame::Ok => {}
            Frame::Error(m) => out.extend_from_slice(m.as_bytes()),
        }
        Ok(())
    }

    /// Decodes one whole frame from the front of `buf`: `Ok(None)` when more bytes are needed,
    /// otherwise the frame and the number of bytes it used. For tests, fuzzing and clients;
    /// the server reads header and payload separately (see `connection`).
    pub fn parse(buf: &[u8], max_payload: u32) -> Result<Option<(Frame, usize)>, FrameError> {
        let Some(head) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(head);
        let raw = decode_header(&h, max_payload)?;
        let end = HEADER_LEN + raw.payload_len as usize;
        let Some(payload) = buf.get(HEADER_LEN..end) else {
            return Ok(None);
        };
        let header = raw.checked()?;
        Ok(Some((
            Frame::decode_payload(header.msg_type, payload)?,
            end,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: &[u8; 4], version: u8, ty: u8, len: u32) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(magic);
        h[4] = version;
        h[5] = ty;
        h[6..10].copy_from_slice(&len.to_le_bytes());
        h
    }

    #[test]
    fn seed_example_decodes() {
        // The netcat example from seed 004, byte for byte.
        let bytes = b"ZTSD\x01\x01\x18\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x94\x87\x97\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00Y@";
        let (frame, used) = Frame::parse(bytes, DEFAULT_MAX_PAYLOAD).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        match frame {
            Frame::Insert(p) => {
                assert_eq!(p.series_id, 1);
                assert_eq!(p.value, 100.0);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn header_errors() {
        let max = DEFAULT_MAX_PAYLOAD;
        assert_eq!(
            decode_header(&header(b"ZTSX", 1, 1, 24), max),
            Err(FrameError::BadMagic(*b"ZTSX"))
        );
        assert_eq!(
            decode_header(&header(b"ZTSD", 2, 1, 24), max),
            Err(FrameError::UnsupportedVersion(2))
        );
        assert!(matches!(
            decode_header(&header(b"ZTSD", 1, 1, u32::MAX), max),
            Err(FrameError::PayloadTooLarge { .. })
        ));
        let raw = decode_header(&header(b"ZTSD", 1, 0x42, 3), max).unwrap();
        assert_eq!(raw.payload_len, 3);
        assert_eq!(raw.checked(), Err(FrameError::UnknownType(0x42)));
    }

    #[test]
    fn payload_length_errors() {
        for (ty, len) in [
            (MsgType::Insert, 23),
            (MsgType::Insert, 48),
            (MsgType::InsertBatch, 25),
            (MsgType::Query, 16),
            (MsgType::Ping, 1),
            (MsgType::Data, 1),
        ] {
            let err = Frame::decode_payload(ty, &vec![0u8; len]).unwrap_err();
            assert!(matches!(err, FrameError::BadLength { .. }), "{ty:?} {len}");
            assert!(!err.is_fatal());
        }
        assert_eq!(
            Frame::decode_payload(MsgType::Error, &[0xff, 0xfe]),
            Err(FrameError::InvalidUtf8)
        );
    }

    #[test]
    fn incomplete_input_asks_for_more() {
        let mut buf = Vec::new();
        Frame::InsertBatch(vec![
            DataPoint {
                series_id: 7,
                timestamp_ms: -5,
                value: f64::NAN,
            };
            3
        ])
        .encode(&mut buf)
        .unwrap();
        for cut in 0..buf.len() {
            assert_eq!(Frame::parse(&buf[..cut], DEFAULT_MAX_PAYLOAD), Ok(None));
        }
        assert!(Frame::parse(&buf, DEFAULT_MAX_PAYLOAD).unwrap().is_some());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn point() -> impl Strategy<Value = DataPoint> {
        (any::<u64>(), any::<i64>(), any::<u64>()).prop_map(|(id, t, bits)| DataPoint {
            series_id: id,
            timestamp_ms: t,
            value: f64::from_bits(bits),
        })
    }

    fn frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            point().prop_map(Frame::Insert),
            prop::collection::vec(point(), 0..50).prop_map(Frame::InsertBatch),
            prop::collection::vec(point(), 0..50).prop_map(Frame::Data),
            (any::<u64>(), any::<i64>(), any::<i64>()).prop_map(|(series_id, start_ms, end_ms)| {
                Frame::Query(QueryRange {
                    series_id,
                    start_ms,
                    end_ms,
                })
            }),
            Just(Frame::Ping),
            Just(Frame::Ok),
            ".{0,40}".prop_map(Frame::Error),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Frame::parse(&bytes, 1024);
            // Behind a valid header, so that payload decoding is reached for every type.
            let mut framed = b"ZTSD\x01".to_vec();
            framed.extend_from_slice(&bytes);
            let _ = Frame::parse(&framed, 1024);
        }

        #[test]
        fn encode_decode_round_trip(f in frame(), trailing in prop::collection::vec(any::<u8>(), 0..20)) {
            let mut buf = Vec::new();
            f.encode(&mut buf).unwrap();
            let len = buf.len();
            prop_assert_eq!(len, HEADER_LEN + f.payload_len());
            buf.extend_from_slice(&trailing);
            let (back, used) = Frame::parse(&buf, DEFAULT_MAX_PAYLOAD).unwrap().unwrap();
            prop_assert_eq!(used, len);
            prop_assert_eq!(back, f);
        }
    }
}
