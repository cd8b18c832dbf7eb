//! The ZTSD binary server over real sockets against a real engine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tsdb_node::ingest::binary::{
    self, frame::DEFAULT_MAX_PAYLOAD, BinaryConfig, BinaryContext, DataPoint, Frame, QueryRange,
};
use tsdb_node::ingest::IngestSink;
use tsdb_node::storage::{Engine, EngineOptions};

struct Server {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    engine: Arc<Engine>,
}

impl Server {
    async fn start(engine: Arc<Engine>, config: BinaryConfig) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let ctx = BinaryContext {
            sink: IngestSink::new(engine.clone()),
            config,
            tls: None,
        };
        let task = tokio::spawn(binary::serve(listener, ctx, async {
            let _ = rx.await;
        }));
        Server {
            addr,
            stop: Some(tx),
            task,
            engine,
        }
    }

    async fn stop(mut self) -> Arc<Engine> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
        self.engine
    }
}

fn open_engine(dir: &std::path::Path, sync: bool) -> Arc<Engine> {
    let mut opts = EngineOptions::new(dir);
    opts.wal_sync = sync;
    Arc::new(Engine::open(opts).unwrap())
}

/// A minimal client: sends encoded frames, reads replies with the crate's own decoder.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, frame: &Frame) {
        let mut out = Vec::new();
        frame.encode(&mut out).unwrap();
        self.send_raw(&out).await;
    }

    /// The next reply, or `None` when the server closed the connection.
    async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = Frame::parse(&self.buf, u32::MAX).unwrap() {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 65536];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .expect("reply in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn call(&mut self, frame: &Frame) -> Frame {
        self.send(frame).await;
        self.recv().await.expect("a reply")
    }
}

fn point(series_id: u64, t: i64, v: f64) -> DataPoint {
    DataPoint {
        series_id,
        timestamp_ms: t,
        value: v,
    }
}

fn header(magic: &[u8; 4], version: u8, ty: u8, len: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(magic);
    h.push(version);
    h.push(ty);
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&[0u8; 6]);
    h
}

fn is_error(frame: &Frame, needle: &str) -> bool {
    matches!(frame, Frame::Error(m) if m.contains(needle))
}

const T0: i64 = 1_700_000_000_000;

#[tokio::test]
async fn insert_query_and_ping() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(open_engine(dir.path(), false), BinaryConfig::default()).await;
    let mut c = Client::connect(server.addr).await;

    assert_eq!(c.call(&Frame::Ping).await, Frame::Ok);
    assert_eq!(c.call(&Frame::Insert(point(42, T0, 1.5))).await, Frame::Ok);
    assert_eq!(
        c.call(&Frame::Insert(point(42, T0 + 10, f64::NAN))).await,
        Frame::Ok
    );
    assert_eq!(c.call(&Frame::Insert(point(7, T0, -3.0))).await, Frame::Ok);

    let reply = c
        .call(&Frame::Query(QueryRange {
            series_id: 42,
            start_ms: T0,
            end_ms: T0 + 10,
        }))
        .await;
    assert_eq!(
        reply,
        Frame::Data(vec![point(42, T0, 1.5), point(42, T0 + 10, f64::NAN)])
    );
    // Inclusive bounds, other series not mixed in, unknown series is empty.
    let reply = c
        .call(&Frame::Query(QueryRange {
            series_id: 42,
            start_ms: T0 + 1,
            end_ms: T0 + 10,
        }))
        .await;
    assert_eq!(reply, Frame::Data(vec![point(42, T0 + 10, f64::NAN)]));
    let reply = c
        .call(&Frame::Query(QueryRange {
            series_id: 999,
            start_ms: 0,
            end_ms: i64::MAX,
        }))
        .await;
    assert_eq!(reply, Frame::Data(vec![]));
    let reply = c
        .call(&Frame::Query(QueryRange {
            series_id: 42,
            start_ms: 10,
            end_ms: 5,
        }))
        .await;
    assert!(is_error(&reply, "after end"), "{reply:?}");

    // Stored as ztsdb_series{series_id="42"}, readable by label.
    let engine = server.stop().await;
    let names = engine
        .select(
            &[tsdb_node::storage::Matcher::equal("series_id", "42")],
            0,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(names.len(), 1);
    assert_eq!(names[0].labels.metric_name(), Some("ztsdb_series"));
}

#[tokio::test]
async fn insert_batch_of_ten_thousand() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(open_engine(dir.path(), false), BinaryConfig::default()).await;
    let mut c = Client::connect(server.addr).await;
    let points: Vec<DataPoint> = (0..10_000)
        .map(|i| point(i % 10, T0 + i as i64, i as f64 * 0.5))
        .collect();
    assert_eq!(c.call(&Frame::InsertBatch(points.clone())).await, Frame::Ok);
    for id in 0..10u64 {
        let reply = c
            .call(&Frame::Query(QueryRange {
                series_id: id,
                start_ms: T0,
                end_ms: T0 + 10_000,
            }))
            .await;
        let want: Vec<DataPoint> = points
            .iter()
            .copied()
            .filter(|p| p.series_id == id)
            .collect();
        assert_eq!(reply, Frame::Data(want));
    }
    // An empty batch is valid and stores nothing.
    assert_eq!(c.call(&Frame::InsertBatch(vec![])).await, Frame::Ok);
    server.stop().await;
}

#[tokio::test]
async fn refused_points_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(open_engine(dir.path(), false), BinaryConfig::default()).await;
    let mut c = Client::connect(server.addr).await;
    assert_eq!(c.call(&Frame::Insert(point(1, T0, 1.0))).await, Frame::Ok);
    // Far older than the out-of-order window.
    let reply = c
        .call(&Frame::InsertBatch(vec![
            point(1, T0 + 1, 2.0),
            point(1, 0, 3.0),
        ]))
        .await;
    assert!(is_error(&reply, "1 of 2 points stored"), "{reply:?}");
    // Stored grouped by series (2, then 1's points): the refusal still names the client's
    // point number.
    let reply = c
        .call(&Frame::InsertBatch(vec![
            point(1, T0 + 2, 2.0),
            point(2, T0, 1.0),
            point(1, 0, 3.0),
            point(2, T0 + 1, 1.0),
        ]))
        .await;
    assert!(
        is_error(
            &reply,
            "3 of 4 points stored; 1 refused, the first (point 2)"
        ),
        "{reply:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_magic_gets_error_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(open_engine(dir.path(), false), BinaryConfig::default()).await;
    let mut c = Client::connect(server.addr).await;
    c.send_raw(&header(b"HTTP", 1, 1, 24)).await;
    let reply = c.recv().await.unwrap();
    assert!(is_error(&reply, "bad magic"), "{reply:?}");
    assert_eq!(c.recv().await, None, "connection closed after bad magic");
    server.stop().await;
}

#[tokio::test]
async fn bad_version_gets_error_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(open_engine(dir.path(), false), BinaryConfig::default()).await;
    let mut c = Client::connect(server.addr).await;
    c.send_raw(&header(b"ZTSD", 9, 0x20, 0)).await;
    let reply = c.recv().await.unwrap();
    assert!(is_error(&reply, "version 9"), "{reply:?}");
    assert_eq!(c.recv().await, None);
    server.stop().await;
}

#[tokio::test]
async fn unknown_type_and_bad_length_keep_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(open_engine(dir.path(), false), BinaryConfig::default()).await;
    let mut c = Client::connect(server.addr).await;
    let mut raw = header(b"ZTSD", 1, 0x55, 5);
    raw.extend_from_slice(b"hello");
    c.send_raw(&raw).await;
    let reply = c.recv().await.unwrap();
    assert!(is_error(&reply, "unknown message type 0x55"), "{reply:?}");

    let mut raw = header(b"ZTSD", 1, 0x01, 23);
    raw.extend_from_slice(&[0u8; 23]);
    c.send_raw(&raw).await;
    let reply = c.recv().await.unwrap();
    assert!(is_error(&reply, "23 bytes"), "{reply:?}");

    // A reply type sent by a client.
    let reply = c.call(&Frame::Ok).await;
    assert!(is_error(&reply, "server reply"), "{reply:?}");

    assert_eq!(c.call(&Frame::Ping).await, Frame::Ok, "still usable");
    server.stop().await;
}

#[tokio::test]
async fn oversized_length_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(open_engine(dir.path(), false), BinaryConfig::default()).await;
    let mut c = Client::connect(server.addr).await;
    // 4 GiB announced; nothing follows. The server must answer at once, not wait or allocate.
    c.send_raw(&header(b"ZTSD", 1, 0x02, u32::MAX)).await;
    let reply = c.recv().await.unwrap();
    assert!(is_error(&reply, "exceeds the limit"), "{reply:?}");
    assert_eq!(c.recv().await, None);
    let mut c = Client::connect(server.addr).await;
    let just_over = DEFAULT_MAX_PAYLOAD + 1;
    c.send_raw(&header(b"ZTSD", 1, 0x02, just_over)).await;
    let reply = c.recv().await.unwrap();
    assert!(is_error(&reply, "exceeds the limit"), "{reply:?}");
    server.stop().await;
}

#[tokio::test]
async fn truncated_frame_does_not_hang_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(open_engine(dir.path(), false), BinaryConfig::default()).await;
    // Client closes mid-header and mid-payload.
    for cut in [3usize, 16 + 10] {
        let mut c = Client::connect(server.addr).await;
        let mut bytes = Vec::new();
        Frame::Insert(point(5, T0, 1.0)).encode(&mut bytes).unwrap();
        c.send_raw(&bytes[..cut]).await;
        c.stream.shutdown().await.unwrap();
        assert_eq!(c.recv().await, None, "closed without a reply");
    }
    // A client that stalls mid-frame is dropped after the read timeout.
    let config = BinaryConfig {
        read_timeout: Duration::from_millis(200),
        ..BinaryConfig::default()
    };
    let slow = Server::start(open_engine(&dir.path().join("slow"), false), config).await;
    let mut c = Client::connect(slow.addr).await;
    c.send_raw(b"ZTSD\x01").await;
    let started = Instant::now();
    assert_eq!(c.recv().await, None);
    assert!(started.elapsed() < Duration::from_secs(5));
    slow.stop().await;

    // Nothing was stored, and the server still serves.
    let mut c = Client::connect(server.addr).await;
    assert_eq!(c.call(&Frame::Ping).await, Frame::Ok);
    let engine = server.stop().await;
    assert_eq!(engine.stats().series, 0);
}

#[tokio::test]
async fn connection_limit_refuses_with_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = BinaryConfig {
        max_connections: 1,
        ..BinaryConfig::default()
    };
    let server = Server::start(open_engine(dir.path(), false), config).await;
    let mut first = Client::connect(server.addr).await;
    assert_eq!(first.call(&Frame::Ping).await, Frame::Ok);
    let mut second = Client::connect(server.addr).await;
    let reply = second.recv().await.unwrap();
    assert!(is_error(&reply, "too many connections"), "{reply:?}");
    drop(first);
    // The slot is released once the first connection is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Client::connect(server.addr).await;
        c.send(&Frame::Ping).await;
        if c.recv().await == Some(Frame::Ok) {
            break;
        }
        assert!(Instant::now() < deadline, "slot never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn acknowledged_data_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(open_engine(dir.path(), true), BinaryConfig::default()).await;
    let mut c = Client::connect(server.addr).await;
    let points: Vec<DataPoint> = (0..500).map(|i| point(3, T0 + i, i as f64)).collect();
    assert_eq!(c.call(&Frame::InsertBatch(points.clone())).await, Frame::Ok);
    assert_eq!(
        c.call(&Frame::Insert(point(3, T0 + 1000, 9.0))).await,
        Frame::Ok
    );
    drop(c);
    let engine = server.stop().await;
    // No close/flush: acknowledged means in the fsynced WAL.
    drop(engine);

    let server = Server::start(open_engine(dir.path(), true), BinaryConfig::default()).await;
    let mut c = Client::connect(server.addr).await;
    let reply = c
        .call(&Frame::Query(QueryRange {
            series_id: 3,
            start_ms: T0,
            end_ms: T0 + 1000,
        }))
        .await;
    let mut want = points;
    want.push(point(3, T0 + 1000, 9.0));
    assert_eq!(reply, Frame::Data(want));
    server.stop().await;
}

#[tokio::test]
async fn query_reply_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let config = BinaryConfig {
        max_reply_points: 10,
        ..BinaryConfig::default()
    };
    let server = Server::start(open_engine(dir.path(), false), config).await;
    let mut c = Client::connect(server.addr).await;
    let points: Vec<DataPoint> = (0..11).map(|i| point(1, T0 + i, 0.0)).collect();
    assert_eq!(c.call(&Frame::InsertBatch(points)).await, Frame::Ok);
    let q = |end| {
        Frame::Query(QueryRange {
            series_id: 1,
            start_ms: T0,
            end_ms: end,
        })
    };
    assert!(is_error(&c.call(&q(T0 + 10)).await, "narrower range"));
    assert!(matches!(c.call(&q(T0 + 9)).await, Frame::Data(p) if p.len() == 10));
    server.stop().await;
}

/// Loopback throughput of `insert_batch`; run with
/// `cargo test -p tsdb-node --release --test binary_protocol -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn insert_batch_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(open_engine(dir.path(), true), BinaryConfig::default()).await;
    let clients = 4u64;
    let batches = 200i64;
    let batch_len = 5_000i64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for cid in 0..clients {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            for b in 0..batches {
                let points: Vec<DataPoint> = (0..batch_len)
                    .map(|i| {
                        point(
                            cid * 1000 + (i % 100) as u64,
                            T0 + b * batch_len + i,
                            i as f64,
                        )
                    })
                    .collect();
                assert_eq!(c.call(&Frame::InsertBatch(points)).await, Frame::Ok);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let samples = clients as f64 * batches as f64 * batch_len as f64;
    println!(
        "binary insert_batch: {samples} samples in {elapsed:?} = {:.0} samples/s ({clients} clients, {batch_len}-point batches, fsync on)",
        samples / elapsed.as_secs_f64()
    );
    server.stop().await;
}
