//! Sending batches of samples over each ingest protocol and waiting for their durable
//! acknowledgement. Encoding is separate from sending so that `bench` can encode everything
//! before the clock starts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tsdb_node::ingest::binary::frame::{DataPoint, Frame};
use tsdb_node::ingest::remote_write;
use tsdb_node::storage::{Labels, Sample};

use crate::client::Api;

/// Most bytes of a reply frame accepted from the binary server.
const MAX_REPLY_PAYLOAD: u32 = 16 << 20;
/// Longest TCP JSON reply line accepted; replies are short status objects.
const MAX_REPLY_LINE: u64 = 64 << 10;
/// How long to wait for an acknowledgement before giving up.
const ACK_TIMEOUT: Duration = Duration::from_secs(120);

/// The ingest protocols the CLI can send over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// Seed 003 line protocol to `POST /api/v1/write`.
    HttpLine,
    /// Prometheus remote write (protobuf + snappy) to `POST /api/v1/write`.
    RemoteWrite,
    /// InfluxDB 1.x line protocol (`metric,tags value=V T`, millisecond precision) to
    /// `POST /write?db=bench&precision=ms`: the same request a real InfluxDB 1.x accepts.
    InfluxLine,
    /// Seed 000 newline-delimited JSON over TCP, authenticated.
    TcpJson,
    /// ZTSD binary frames; a series is known by its numeric id only.
    Binary,
}

/// Where and as whom to connect.
#[derive(Clone)]
pub struct Endpoints {
    pub api: Api,
    pub tcp_json: String,
    pub binary: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

/// A batch ready to send: the request bytes and how many samples it carries.
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub samples: usize,
    /// TCP JSON only: the frames sent, each of which gets one reply.
    pub frames: usize,
}

/// The series id a binary-protocol sample is sent under: its index in the series table,
/// counted from 1.
pub fn binary_series_id(index: usize) -> u64 {
    index as u64 + 1
}

/// Encodes `(series index, sample)` pairs against the series table `labels`.
pub fn encode(protocol: Protocol, labels: &[Labels], batch: &[(usize, Sample)]) -> Result<Encoded> {
    let label = |i: usize| {
        labels
            .get(i)
            .ok_or_else(|| anyhow!("series index {i} outside the series table"))
    };
    let mut bytes = Vec::new();
    match protocol {
        Protocol::HttpLine => {
            for (i, s) in batch {
                let l = label(*i)?;
                bytes.extend_from_slice(line_key(l).as_bytes());
                bytes.extend_from_slice(format!(" {} {}\n", s.v, s.t).as_bytes());
            }
        }
        Protocol::InfluxLine => {
            for (i, s) in batch {
                let l = label(*i)?;
                bytes.extend_from_slice(line_key(l).as_bytes());
                bytes.extend_from_slice(format!(" value={} {}\n", s.v, s.t).as_bytes());
            }
        }
        Protocol::RemoteWrite => {
            // Group by series, keeping each series' samples in time order.
            let mut by_series: std::collections::BTreeMap<usize, Vec<Sample>> = Default::default();
            for (i, s) in batch {
                by_series.entry(*i).or_default().push(*s);
            }
            let series = by_series
                .into_iter()
                .map(|(i, samples)| Ok((label(i)?.clone(), samples)))
                .collect::<Result<Vec<_>>>()?;
            bytes = remote_write::encode(&series)?;
        }
        Protocol::TcpJson => {
            for (i, s) in batch {
                let l = label(*i)?;
                let tags: serde_json::Map<String, serde_json::Value> = l
                    .iter()
                    .filter(|x| x.name != "__name__")
                    .map(|x| (x.name.clone(), x.value.clone().into()))
                    .collect();
                let frame = serde_json::json!({
                    "type": "data",
                    "metric": l.metric_name().unwrap_or(""),
                    "timestamp": s.t,
                    "value": s.v,
                    "tags": tags,
                });
                serde_json::to_writer(&mut bytes, &frame)?;
                bytes.push(b'\n');
            }
        }
        Protocol::Binary => {
            let points = batch
                .iter()
                .map(|(i, s)| DataPoint {
                    series_id: binary_series_id(*i),
                    timestamp_ms: s.t,
                    value: s.v,
                })
                .collect();
            Frame::InsertBatch(points).encode(&mut bytes)?;
        }
    }
    Ok(Encoded {
        bytes,
        samples: batch.len(),
        frames: batch.len(),
    })
}

/// `metric,tag=value,...` with line-protocol escaping.
fn line_key(l: &Labels) -> String {
    let esc = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            if matches!(c, ',' | ' ' | '=' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    };
    let mut key = esc(l.metric_name().unwrap_or(""));
    for x in l.iter().filter(|x| x.name != "__name__") {
        key.push(',');
        key.push_str(&esc(&x.name));
        key.push('=');
        key.push_str(&esc(&x.value));
    }
    key
}

/// Where InfluxDB line protocol is posted; `db` is required by InfluxDB and ignored by Strata.
pub const INFLUX_WRITE_PATH: &str = "/write?db=bench&precision=ms";

/// One open connection of a protocol.
pub enum Conn {
    Http {
        api: Api,
        protocol: Protocol,
    },
    TcpJson {
        stream: TcpStream,
        reader: BufReader<TcpStream>,
    },
    Binary {
        stream: TcpStream,
        buf: Vec<u8>,
    },
}

impl Conn {
    /// Connects (and for TCP JSON logs in).
    pub fn open(protocol: Protocol, ep: &Endpoints) -> Result<Conn> {
        match protocol {
            Protocol::HttpLine | Protocol::RemoteWrite | Protocol::InfluxLine => Ok(Conn::Http {
                api: ep.api.clone(),
                protocol,
            }),
            Protocol::TcpJson => {
                let stream = connect(&ep.tcp_json)?;
                let reader = BufReader::new(stream.try_clone()?);
                let mut conn = Conn::TcpJson { stream, reader };
                let (Some(user), Some(password)) = (&ep.user, &ep.password) else {
                    bail!("tcp-json needs --user and --password (or STRATA_USER/STRATA_PASSWORD)");
                };
                let auth = serde_json::json!({"type":"auth","username":user,"password":password});
                let mut frame = serde_json::to_vec(&auth)?;
                frame.push(b'\n');
                conn.send(&Encoded {
                    bytes: frame,
                    samples: 0,
                    frames: 1,
                })
                .context("TCP JSON login")?;
                Ok(conn)
            }
            Protocol::Binary => Ok(Conn::Binary {
                stream: connect(&ep.binary)?,
                buf: Vec::new(),
            }),
        }
    }

    /// Sends one encoded batch and returns once the server acknowledged all of it.
    pub fn send(&mut self, e: &Encoded) -> Result<()> {
        match self {
            Conn::Http { api, protocol } => {
                let (path, ct) = match protocol {
                    Protocol::RemoteWrite => ("/api/v1/write", "application/x-protobuf"),
                    Protocol::InfluxLine => (INFLUX_WRITE_PATH, "text/plain; charset=utf-8"),
                    _ => ("/api/v1/write", "text/plain; charset=utf-8"),
                };
                api.post_write(path, ct, &e.bytes)
            }
            Conn::TcpJson { stream, reader } => {
                stream.write_all(&e.bytes)?;
                // One reply per frame, in order: every one must be ok.
                let mut first_error = None;
                let mut line = String::new();
                for _ in 0..e.frames {
                    line.clear();
                    let n = reader
                        .by_ref()
                        .take(MAX_REPLY_LINE)
                        .read_line(&mut line)
                        .context("reading a TCP JSON reply")?;
                    if n == 0 {
                        bail!("the server closed the connection before acknowledging");
                    }
                    let reply: serde_json::Value = serde_json::from_str(line.trim())
                        .with_context(|| format!("bad reply line {:?}", line.trim()))?;
                    if reply.get("status").and_then(|s| s.as_str()) != Some("ok")
                        && first_error.is_none()
                    {
                        first_error = Some(
                            reply
                                .get("message")
                                .and_then(|m| m.as_str())
                                .unwrap_or("error without message")
                                .to_string(),
                        );
                    }
                }
                match first_error {
                    None => Ok(()),
                    Some(m) => bail!("server error: {m}"),
                }
            }
            Conn::Binary { stream, buf } => {
                stream.write_all(&e.bytes)?;
                match read_frame(stream, buf)? {
                    Frame::Ok => Ok(()),
                    Frame::Error(m) => bail!("server error: {m}"),
                    other => bail!("unexpected reply {:?}", other.msg_type()),
                }
            }
        }
    }
}

fn connect(addr: &str) -> Result<TcpStream> {
    let s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(ACK_TIMEOUT))?;
    s.set_write_timeout(Some(ACK_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads one whole reply frame, keeping any bytes after it for the next call.
fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Frame> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((frame, used)) = Frame::parse(buf, MAX_REPLY_PAYLOAD)? {
            buf.drain(..used);
            return Ok(frame);
        }
        let n = stream.read(&mut chunk).context("reading a binary reply")?;
        if n == 0 {
            bail!("the server closed the connection before acknowledging");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_keys_are_escaped() {
        let l = Labels::from_metric("m", &[("a", "x y,z=w")]);
        assert_eq!(line_key(&l), r"m,a=x\ y\,z\=w");
    }

    #[test]
    fn binary_batches_round_trip() {
        let labels = vec![Labels::from_metric("m", &[])];
        let e = encode(Protocol::Binary, &labels, &[(0, Sample::new(5, 1.5))]).unwrap();
        let (f, used) = Frame::parse(&e.bytes, MAX_REPLY_PAYLOAD).unwrap().unwrap();
        assert_eq!(used, e.bytes.len());
        assert_eq!(
            f,
            Frame::InsertBatch(vec![DataPoint {
                series_id: 1,
                timestamp_ms: 5,
                value: 1.5
            }])
        );
        assert!(encode(Protocol::TcpJson, &labels, &[(3, Sample::new(0, 0.0))]).is_err());
    }
}
