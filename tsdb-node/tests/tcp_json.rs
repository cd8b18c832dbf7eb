//! TCP JSON ingest (seed 000, port 5433) over real sockets against a real engine.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf, WriteHalf,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tsdb_node::auth::{FailureThrottle, Role, ThrottleOptions, UserDb, UserEntry};
use tsdb_node::ingest::tcp_json::{self, TcpJsonContext, TcpJsonOptions};
use tsdb_node::ingest::IngestSink;
use tsdb_node::storage::{Engine, EngineOptions, Labels, Matcher, Retention, Sample, Series};

const SEED_FRAME: &str = r#"{"type":"data","metric":"temperature","timestamp":"2025-06-25T14:12:03Z","value":23.7,"tags":{"location":"room-1","unit":"C"}}"#;
const SEED_T: i64 = 1_750_860_723_000;

fn users() -> Arc<UserDb> {
    // Cost 4 keeps the tests fast; production hashes use 10 or more.
    let entry = |name: &str, pw: &str, roles: Vec<Role>| UserEntry {
        username: name.into(),
        password_hash: bcrypt::hash(pw, 4).unwrap(),
        roles,
    };
    Arc::new(
        UserDb::new(vec![
            entry("user1", "secret", vec![Role::Write]),
            entry("reader", "pw", vec![Role::Read]),
        ])
        .unwrap(),
    )
}

fn engine_options(dir: &Path, wal_sync: bool) -> EngineOptions {
    let mut o = EngineOptions::new(dir);
    o.wal_sync = wal_sync;
    o.retention = Retention::keep_forever();
    o
}

struct Server {
    addr: SocketAddr,
    engine: Arc<Engine>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(
        engine: Arc<Engine>,
        options: TcpJsonOptions,
        throttle: ThrottleOptions,
    ) -> Server {
        Self::start_with(engine, options, throttle, |ctx| ctx).await
    }

    async fn start_with(
        engine: Arc<Engine>,
        options: TcpJsonOptions,
        throttle: ThrottleOptions,
        customise: impl FnOnce(TcpJsonContext) -> TcpJsonContext,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ctx = customise(TcpJsonContext::new(
            IngestSink::new(engine.clone()),
            users(),
            Arc::new(FailureThrottle::new(throttle)),
            options,
        ));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(tcp_json::serve(listener, Arc::new(ctx), async {
            let _ = rx.await;
        }));
        Server {
            addr,
            engine,
            stop: Some(tx),
            task,
        }
    }

    async fn open(dir: &Path, wal_sync: bool) -> Server {
        let engine = Arc::new(Engine::open(engine_options(dir, wal_sync)).unwrap());
        Self::start(
            engine,
            TcpJsonOptions::default(),
            ThrottleOptions::default(),
        )
        .await
    }

    async fn client(&self) -> Client<TcpStream> {
        Client::new(TcpStream::connect(self.addr).await.unwrap())
    }

    async fn shutdown(mut self) -> Arc<Engine> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
        self.engine
    }

    fn select(&self, metric: &str) -> Vec<Series> {
        self.engine
            .select(
                &[Matcher::equal("__name__", metric)],
                i64::MIN + 1,
                i64::MAX,
            )
            .unwrap()
    }
}

struct Client<S> {
    reader: BufReader<ReadHalf<S>>,
    writer: WriteHalf<S>,
}

impl<S: AsyncRead + AsyncWrite> Client<S> {
    fn new(stream: S) -> Self {
        let (r, w) = tokio::io::split(stream);
        Client {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    async fn send(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).await.unwrap();
        self.writer.write_all(b"\n").await.unwrap();
    }

    /// The next reply, or `None` at end of stream.
    async fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
            .await
            .expect("reply within 10 s")
            .ok()?;
        if n == 0 {
            return None;
        }
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad reply {line:?}: {e}")))
    }

    async fn request(&mut self, line: &str) -> Value {
        self.send(line).await;
        self.recv().await.expect("a reply")
    }

    async fn auth(&mut self, user: &str, pw: &str) -> Value {
        self.request(&json!({"type": "auth", "username": user, "password": pw}).to_string())
            .await
    }

    async fn expect_closed(&mut self) {
        assert_eq!(self.recv().await, None, "connection should be closed");
    }
}

fn ok() -> Value {
    json!({"status": "ok"})
}

fn error_message(v: &Value) -> &str {
    assert_eq!(v["status"], "error", "{v}");
    v["message"].as_str().unwrap()
}

fn data_frame(metric: &str, t: i64, v: f64, tags: Value) -> String {
    json!({"type": "data", "metric": metric, "timestamp": t, "value": v, "tags": tags}).to_string()
}

#[tokio::test]
async fn happy_path_auth_data_query_close() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(dir.path(), false).await;
    let mut c = server.client().await;
    assert_eq!(c.auth("user1", "secret").await, ok());
    assert_eq!(c.request(SEED_FRAME).await, ok());
    let second = SEED_FRAME
        .replace("14:12:03Z", "14:12:13.5+00:00")
        .replace("23.7", "23.9");
    assert_eq!(c.request(&second).await, ok());
    assert_eq!(
        c.request(&data_frame(
            "temperature",
            SEED_T + 20_000,
            24.0,
            json!({"location": "room-2", "unit": "C"})
        ))
        .await,
        ok()
    );
    assert_eq!(c.request(r#"{"type":"close"}"#).await, ok());
    c.expect_closed().await;

    let series = server.select("temperature");
    assert_eq!(series.len(), 2);
    let room1 = Labels::from_metric("temperature", &[("location", "room-1"), ("unit", "C")]);
    let s = series
        .iter()
        .find(|s| s.labels == room1)
        .expect("room-1 series");
    assert_eq!(
        s.samples,
        vec![
            Sample::new(SEED_T, 23.7),
            Sample::new(SEED_T + 10_500, 23.9)
        ]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(dir.path(), false).await;
    let mut c = server.client().await;
    let wrong = c.auth("user1", "nope").await;
    assert_eq!(
        wrong,
        json!({"status": "error", "message": "Invalid credentials"})
    );
    let unknown = c.auth("mallory", "secret").await;
    assert_eq!(unknown, wrong);
    // Still usable after failures below the per-connection limit.
    assert_eq!(c.auth("user1", "secret").await, ok());
    assert_eq!(c.request(SEED_FRAME).await, ok());
    server.shutdown().await;
}

#[tokio::test]
async fn three_failures_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(dir.path(), false).await;
    let mut c = server.client().await;
    for _ in 0..3 {
        assert_eq!(
            error_message(&c.auth("user1", "nope").await),
            "Invalid credentials"
        );
    }
    c.expect_closed().await;
    server.shutdown().await;
}

#[tokio::test]
async fn user_without_write_role_cannot_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(dir.path(), false).await;
    let mut c = server.client().await;
    assert!(error_message(&c.auth("reader", "pw").await).contains("Permission denied"));
    assert!(error_message(&c.request(SEED_FRAME).await).starts_with("Not authenticated"));
    server.shutdown().await;
}

#[tokio::test]
async fn data_before_auth_is_refused_and_connection_stays() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(dir.path(), false).await;
    let mut c = server.client().await;
    assert!(error_message(&c.request(SEED_FRAME).await).starts_with("Not authenticated"));
    assert!(error_message(&c.request("garbage").await).starts_with("invalid JSON frame"));
    assert_eq!(c.auth("user1", "secret").await, ok());
    assert_eq!(c.request(SEED_FRAME).await, ok());
    assert_eq!(server.select("temperature").len(), 1);

    // A client that never authenticates is dropped after ten refused frames.
    let mut c = server.client().await;
    for _ in 0..9 {
        assert!(error_message(&c.request(SEED_FRAME).await).starts_with("Not authenticated"));
    }
    c.send(SEED_FRAME).await;
    assert!(error_message(&c.recv().await.unwrap()).starts_with("Not authenticated"));
    assert!(error_message(&c.recv().await.unwrap()).contains("too many frames"));
    c.expect_closed().await;
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_frames_get_errors_and_the_connection_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(dir.path(), false).await;
    let mut c = server.client().await;
    assert_eq!(c.auth("user1", "secret").await, ok());
    let cases = [
        (r#"{"type":"data","metric":"#, "invalid JSON frame"),
        (
            r#"{"type":"data","timestamp":0,"value":1}"#,
            "missing field \"metric\"",
        ),
        (
            r#"{"type":"data","metric":"m","timestamp":"25.6.2025","value":1}"#,
            "invalid timestamp",
        ),
        (
            r#"{"type":"data","metric":"m","timestamp":0,"value":"warm"}"#,
            "invalid value",
        ),
        (r#"{"type":"bogus"}"#, "unknown frame type"),
        (
            r#"{"type":"auth","username":"user1","password":"secret"}"#,
            "already authenticated",
        ),
    ];
    for (frame, expected) in cases {
        let reply = c.request(frame).await;
        assert!(error_message(&reply).contains(expected), "{frame}: {reply}");
    }
    assert_eq!(c.request(SEED_FRAME).await, ok());
    assert_eq!(server.select("temperature")[0].samples.len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_metric_name_reports_the_engine_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(dir.path(), false).await;
    let mut c = server.client().await;
    assert_eq!(c.auth("user1", "secret").await, ok());
    let bad = data_frame("room-temperature", SEED_T, 1.0, json!({}));
    assert!(error_message(&c.request(&bad).await).contains("invalid metric name"));
    let bad_tag = data_frame("temperature", SEED_T, 1.0, json!({"bad-tag": "x"}));
    assert!(error_message(&c.request(&bad_tag).await).contains("invalid label name"));
    // In one pipelined batch, only the bad frame is refused.
    c.send(SEED_FRAME).await;
    c.send(&bad).await;
    c.send(&data_frame(
        "temperature",
        SEED_T + 1000,
        2.0,
        json!({"location": "room-1", "unit": "C"}),
    ))
    .await;
    assert_eq!(c.recv().await.unwrap(), ok());
    assert!(error_message(&c.recv().await.unwrap()).contains("invalid metric name"));
    assert_eq!(c.recv().await.unwrap(), ok());
    assert_eq!(server.select("temperature")[0].samples.len(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn samples_older_than_the_window_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(dir.path(), false).await;
    let mut c = server.client().await;
    assert_eq!(c.auth("user1", "secret").await, ok());
    assert_eq!(c.request(SEED_FRAME).await, ok());
    let old = data_frame("temperature", SEED_T - 2 * 3_600_000, 1.0, json!({}));
    assert!(error_message(&c.request(&old).await).contains("older than the out-of-order window"));
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_frame_is_refused_without_buffering_then_good_frame_works() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(engine_options(dir.path(), false)).unwrap());
    let options = TcpJsonOptions {
        max_frame_bytes: 4096,
        ..TcpJsonOptions::default()
    };
    let server = Server::start(engine, options, ThrottleOptions::default()).await;
    let mut c = server.client().await;
    assert_eq!(c.auth("user1", "secret").await, ok());
    // 8 MiB without a newline, written while the replies are read.
    let (mut reader, mut writer) = (c.reader, c.writer);
    let send = tokio::spawn(async move {
        let chunk = vec![b'a'; 64 * 1024];
        writer
            .write_all(br#"{"type":"data","metric":""#)
            .await
            .unwrap();
        for _ in 0..128 {
            writer.write_all(&chunk).await.unwrap();
        }
        writer.write_all(b"\n").await.unwrap();
        writer.write_all(SEED_FRAME.as_bytes()).await.unwrap();
        writer.write_all(b"\n").await.unwrap();
        writer
    });
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert!(error_message(&v).contains("frame too large"), "{v}");
    line.clear();
    reader.read_line(&mut line).await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), ok());
    send.await.unwrap();
    assert_eq!(server.select("temperature").len(), 1);
    server.shutdown().await;
}

/// Sends `n` frames from a separate task while reading replies; returns the replies.
async fn pipeline(c: Client<TcpStream>, frames: Vec<String>) -> Vec<Value> {
    let n = frames.len();
    let Client {
        mut reader,
        mut writer,
    } = c;
    let send = tokio::spawn(async move {
        let mut buf = Vec::with_capacity(256 * 1024);
        for f in frames {
            buf.extend_from_slice(f.as_bytes());
            buf.push(b'\n');
            if buf.len() > 200 * 1024 {
                writer.write_all(&buf).await.unwrap();
                buf.clear();
            }
        }
        writer.write_all(&buf).await.unwrap();
        writer
    });
    let mut replies = Vec::with_capacity(n);
    let mut line = String::new();
    while replies.len() < n {
        line.clear();
        let read = tokio::time::timeout(Duration::from_secs(30), reader.read_line(&mut line))
            .await
            .expect("replies keep coming")
            .unwrap();
        assert!(
            read > 0,
            "connection closed after {} replies",
            replies.len()
        );
        replies.push(serde_json::from_str(&line).unwrap());
    }
    send.await.unwrap();
    replies
}

#[tokio::test]
async fn pipelined_frames_are_all_acknowledged_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(dir.path(), false).await;
    let mut c = server.client().await;
    assert_eq!(c.auth("user1", "secret").await, ok());
    let n = 10_000;
    let frames: Vec<String> = (0..n)
        .map(|i| {
            data_frame(
                "load",
                SEED_T + i as i64,
                i as f64,
                json!({"sensor": format!("s{}", i % 10)}),
            )
        })
        .collect();
    let replies = pipeline(c, frames).await;
    assert!(replies.iter().all(|r| *r == ok()));
    let series = server.select("load");
    assert_eq!(series.len(), 10);
    assert_eq!(series.iter().map(|s| s.samples.len()).sum::<usize>(), n);
    server.shutdown().await;
}

#[tokio::test]
async fn acknowledged_frames_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(dir.path(), true).await;
    let mut c = server.client().await;
    assert_eq!(c.auth("user1", "secret").await, ok());
    for i in 0..50 {
        let f = data_frame(
            "temperature",
            SEED_T + i * 10_000,
            i as f64,
            json!({"location": "room-1"}),
        );
        assert_eq!(c.request(&f).await, ok());
    }
    let frames = (50..1050)
        .map(|i| {
            data_frame(
                "temperature",
                SEED_T + i * 10_000,
                i as f64,
                json!({"location": "room-1"}),
            )
        })
        .collect();
    assert!(pipeline(c, frames).await.iter().all(|r| *r == ok()));
    let engine = server.shutdown().await;
    let engine = Arc::try_unwrap(engine).unwrap_or_else(|_| panic!("engine still shared"));
    drop(engine);

    let engine = Engine::open(engine_options(dir.path(), true)).unwrap();
    let series = engine
        .select(
            &[Matcher::equal("__name__", "temperature")],
            i64::MIN + 1,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(series.len(), 1);
    let samples = &series[0].samples;
    assert_eq!(samples.len(), 1050);
    assert!(samples
        .iter()
        .enumerate()
        .all(|(i, s)| *s == Sample::new(SEED_T + i as i64 * 10_000, i as f64)));
}

#[tokio::test]
async fn throttle_locks_out_an_address_after_repeated_failures() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(engine_options(dir.path(), false)).unwrap());
    let throttle = ThrottleOptions {
        max_failures: 4,
        ..ThrottleOptions::default()
    };
    let server = Server::start(engine, TcpJsonOptions::default(), throttle).await;
    let mut c = server.client().await;
    for _ in 0..3 {
        assert_eq!(
            error_message(&c.auth("user1", "guess").await),
            "Invalid credentials"
        );
    }
    c.expect_closed().await;
    let mut c = server.client().await;
    c.send(&json!({"type": "auth", "username": "user1", "password": "guess"}).to_string())
        .await;
    assert_eq!(
        error_message(&c.recv().await.unwrap()),
        "Invalid credentials"
    );
    assert!(error_message(&c.recv().await.unwrap()).starts_with("Too many failed login attempts"));
    c.expect_closed().await;
    // Now even the right password is refused, without being checked.
    let mut c = server.client().await;
    assert!(error_message(&c.auth("user1", "secret").await)
        .starts_with("Too many failed login attempts"));
    c.expect_closed().await;
    server.shutdown().await;
}

#[tokio::test]
async fn unauthenticated_connections_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(engine_options(dir.path(), false)).unwrap());
    let options = TcpJsonOptions {
        auth_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(400),
        ..TcpJsonOptions::default()
    };
    let server = Server::start(engine, options, ThrottleOptions::default()).await;
    let mut c = server.client().await;
    let started = Instant::now();
    assert!(error_message(&c.recv().await.unwrap()).contains("unauthenticated"));
    c.expect_closed().await;
    assert!(started.elapsed() >= Duration::from_millis(200));

    let mut c = server.client().await;
    assert_eq!(c.auth("user1", "secret").await, ok());
    assert!(error_message(&c.recv().await.unwrap()).contains("idle"));
    c.expect_closed().await;
    server.shutdown().await;
}

#[tokio::test]
async fn connection_limit_refuses_extra_clients() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(engine_options(dir.path(), false)).unwrap());
    let options = TcpJsonOptions {
        max_connections: 1,
        ..TcpJsonOptions::default()
    };
    let server = Server::start(engine, options, ThrottleOptions::default()).await;
    let mut first = server.client().await;
    assert_eq!(first.auth("user1", "secret").await, ok());
    let mut second = server.client().await;
    assert_eq!(
        error_message(&second.recv().await.unwrap()),
        "too many connections"
    );
    second.expect_closed().await;
    assert_eq!(first.request(r#"{"type":"close"}"#).await, ok());
    first.expect_closed().await;
    // The slot is free again once the first connection has ended.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut third = server.client().await;
        let reply = third.auth("user1", "secret").await;
        if reply == ok() {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed: {reply}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_returns() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(dir.path(), false).await;
    let mut c = server.client().await;
    assert_eq!(c.auth("user1", "secret").await, ok());
    assert_eq!(c.request(SEED_FRAME).await, ok());
    let addr = server.addr;
    server.shutdown().await;
    c.expect_closed().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener is closed"
    );
}

#[tokio::test]
async fn tls_connections_work() {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.key_pair.serialize_pem()).unwrap();
    let acceptor = tcp_json::tls::acceptor_from_pem_files(&cert_path, &key_path).unwrap();
    // The DER form builds an acceptor as well.
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    tcp_json::tls::acceptor(vec![certified.cert.der().clone()], key).unwrap();
    assert!(tcp_json::tls::acceptor_from_pem_files(&key_path, &key_path).is_err());

    let engine = Arc::new(Engine::open(engine_options(&dir.path().join("db"), false)).unwrap());
    let server = Server::start_with(
        engine,
        TcpJsonOptions::default(),
        ThrottleOptions::default(),
        |ctx| ctx.with_tls(acceptor),
    )
    .await;

    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(certified.cert.der().to_vec()))
        .unwrap();
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut c = Client::new(tls);
    assert_eq!(c.auth("user1", "secret").await, ok());
    assert_eq!(c.request(SEED_FRAME).await, ok());
    assert_eq!(c.request(r#"{"type":"close"}"#).await, ok());
    assert_eq!(server.select("temperature").len(), 1);

    // A plain-text client gets no service from a TLS listener.
    let mut plain = server.client().await;
    plain
        .send(r#"{"type":"auth","username":"user1","password":"secret"}"#)
        .await;
    let mut line = String::new();
    let n = plain.reader.read_line(&mut line).await.unwrap_or(0);
    assert!(n == 0 || !line.contains("\"ok\""), "{line}");
    server.shutdown().await;
}

/// Loopback throughput of one pipelining client. Run with
/// `cargo test --release -p tsdb-node --test tcp_json -- --ignored --nocapture throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(dir.path(), true).await;
    let mut c = server.client().await;
    assert_eq!(c.auth("user1", "secret").await, ok());
    let n = 1_000_000usize;
    let frames: Vec<String> = (0..n)
        .map(|i| {
            data_frame(
                "temperature",
                SEED_T + (i / 100) as i64 * 1000,
                i as f64 * 0.1,
                json!({"location": format!("room-{}", i % 100), "unit": "C"}),
            )
        })
        .collect();
    let started = Instant::now();
    let replies = pipeline(c, frames).await;
    let elapsed = started.elapsed();
    assert!(replies.iter().all(|r| *r == ok()));
    println!(
        "{n} frames in {:.2} s: {:.0} frames/s (wal_sync=true)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    server.shutdown().await;
}
