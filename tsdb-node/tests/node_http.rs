//! The node over real sockets: HTTP writes in every format, the Prometheus query API, the
//! seeds' endpoints, the binary protocol, bad input, `/metrics` (checked by promtool), promtool
//! queries, and a restart that keeps everything acknowledged.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tsdb_node::ingest::binary::frame::{DataPoint, Frame, QueryRange};
use tsdb_node::ingest::remote_write;
use tsdb_node::storage::{Labels, Sample};

mod common;

type Running = common::RunningNode;

fn start(dir: &Path) -> Running {
    let extra = format!(
        "{}limits:\n  max_request_bytes: 1048576\n",
        Running::sensor_user()
    );
    Running::start(dir, "", &extra)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn get_json(url: &str) -> (u16, Value) {
    let mut r = agent().get(url).call().unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(Value::Null))
}

fn post(url: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut r = agent()
        .post(url)
        .header("Content-Type", content_type)
        .send(body)
        .unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}

fn instant(node: &Running, q: &str, time: f64) -> Value {
    let url = node.url(&format!("/api/v1/query?query={}&time={time}", urlencode(q)));
    let (status, v) = get_json(&url);
    assert_eq!(status, 200, "{q}: {v}");
    v["data"].clone()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn binary_roundtrip(addr: SocketAddr, frame: &Frame) -> Frame {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    frame.encode(&mut buf).unwrap();
    s.write_all(&buf).unwrap();
    let mut acc = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some((f, _))) = Frame::parse(&acc, 16 << 20) {
            return f;
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before a reply");
        acc.extend_from_slice(&chunk[..n]);
    }
}

const T0: i64 = 1_700_000_000_000;

#[test]
fn writes_in_every_format_query_back_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    assert_eq!(get_json(&node.url("/health")).0, 200);
    assert_eq!(get_json(&node.url("/ready")).0, 200);

    // Seed 003 line protocol (ms timestamps) and InfluxDB form.
    let body =
        format!("cpu_usage,host=server1 45.2 {T0}\ncpu_usage,host=server2 value=50.5 {T0}\n");
    assert_eq!(
        post(&node.url("/api/v1/write"), "text/plain", body.as_bytes()).0,
        204
    );
    let influx = format!(
        "weather,station=a temperature=21.5,humidity=40i {}\n",
        T0 / 1000
    );
    assert_eq!(
        post(
            &node.url("/write?db=x&precision=s"),
            "text/plain",
            influx.as_bytes()
        )
        .0,
        204
    );
    // Prometheus remote write.
    let series: Vec<(Labels, Vec<Sample>)> = vec![(
        Labels::from_metric("rw_counter", &[("job", "test")]),
        (0..20)
            .map(|i| Sample::new(T0 + i * 15_000, i as f64 * 10.0))
            .collect(),
    )];
    let rw = remote_write::encode(&series).unwrap();
    assert_eq!(
        post(&node.url("/api/v1/write"), "application/x-protobuf", &rw).0,
        204
    );
    // Seed 000 TCP JSON: auth first, then a data frame acknowledged once durable.
    {
        let mut s = TcpStream::connect(node.addrs.tcp_json).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        let mut say = |frame: &str| -> String {
            s.write_all(frame.as_bytes()).unwrap();
            s.write_all(b"\n").unwrap();
            line.clear();
            std::io::BufRead::read_line(&mut r, &mut line).unwrap();
            line.clone()
        };
        assert!(say(
            r#"{"type":"data","metric":"t","timestamp":"2023-11-14T22:13:20Z","value":1}"#
        )
        .contains("error"));
        assert!(say(r#"{"type":"auth","username":"sensor","password":"wrong"}"#).contains("error"));
        assert!(say(r#"{"type":"auth","username":"sensor","password":"s3cret"}"#).contains("ok"));
        let ack = say(
            r#"{"type":"data","metric":"temperature","timestamp":"2023-11-14T22:13:20Z","value":23.7,"tags":{"location":"room-1","unit":"C"}}"#,
        );
        assert!(ack.contains("ok"), "{ack}");
    }
    // Binary protocol.
    let points: Vec<DataPoint> = (0..10)
        .map(|i| DataPoint {
            series_id: 42,
            timestamp_ms: T0 + i * 1000,
            value: i as f64,
        })
        .collect();
    assert!(matches!(
        binary_roundtrip(node.addrs.binary, &Frame::InsertBatch(points)),
        Frame::Ok
    ));

    let t = (T0 + 60_000) as f64 / 1000.0;
    let v = instant(&node, "sum(cpu_usage)", t);
    assert_eq!(v["result"][0]["value"][1], "95.7");
    let v = instant(&node, r#"temperature{location="room-1"}"#, t);
    assert_eq!(v["result"][0]["value"][1], "23.7");
    let v = instant(&node, "weather_temperature", t);
    assert_eq!(v["result"][0]["metric"]["station"], "a");
    assert_eq!(
        instant(&node, "weather_humidity", t)["result"][0]["value"][1],
        "40"
    );
    let (s, v) = get_json(&node.url(&format!(
        "/api/v1/query_range?query=rate(rw_counter[1m])&start={}&end={}&step=15s",
        (T0 + 60_000) / 1000,
        (T0 + 240_000) / 1000
    )));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "matrix");
    assert!(!v["data"]["result"][0]["values"]
        .as_array()
        .unwrap()
        .is_empty());
    // Seed 000 and seed 004 queries.
    let (s, v) = get_json(&node.url(&format!(
        "/query?metric=cpu_usage&host=server1&from={}&to={}",
        T0 - 1,
        T0 + 1
    )));
    assert_eq!(s, 200);
    assert_eq!(v["values"][0][1], 45.2);
    let (_, v) = get_json(&node.url(&format!("/query?series=42&start={T0}&end={}", T0 + 100_000)));
    assert_eq!(v["count"], 10);
    // Binary query.
    let q = Frame::Query(QueryRange {
        series_id: 42,
        start_ms: T0,
        end_ms: T0 + 4_000,
    });
    match binary_roundtrip(node.addrs.binary, &q) {
        Frame::Data(points) => assert_eq!(points.len(), 5),
        other => panic!("unexpected reply {other:?}"),
    }
    // Metadata endpoints.
    let (_, v) = get_json(&node.url("/api/v1/labels"));
    assert!(v["data"].as_array().unwrap().iter().any(|x| x == "host"));
    let (_, v) = get_json(&node.url("/api/v1/label/__name__/values"));
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x == "rw_counter"));
    let (_, v) = get_json(&node.url("/api/v1/series?match[]=cpu_usage"));
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    // Seed 001 aggregate.
    let (s, body) = post(
        &node.url("/query"),
        "application/json",
        br#"{"device_id":"x","metric_name":"cpu_usage","operation":"avg"}"#,
    );
    assert_eq!(s, 200, "{body}");

    // Restart: everything acknowledged is still there.
    node.stop();
    let node = start(dir.path());
    let v = instant(&node, "count(rw_counter) + count(cpu_usage)", t);
    assert_eq!(v["result"][0]["value"][1], "3");
    node.stop();
}

#[test]
fn bad_input_gets_clear_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    // One bad line: 400 naming the line; the good line is stored.
    let body = format!("good_metric 1 {T0}\nbad metric here\n");
    let (s, msg) = post(&node.url("/api/v1/write"), "text/plain", body.as_bytes());
    assert_eq!(s, 400);
    assert!(msg.contains("line 2"), "{msg}");
    // Corrupt snappy and corrupt protobuf.
    let (s, msg) = post(
        &node.url("/api/v1/write"),
        "application/x-protobuf",
        b"\xff\xff\xff\xffgarbage",
    );
    assert_eq!(s, 400, "{msg}");
    let not_proto = remote_write::compress(b"\x0a\xff\xff\xff\xff\x0f").unwrap();
    let (s, _) = post(
        &node.url("/api/v1/write"),
        "application/x-protobuf",
        &not_proto,
    );
    assert_eq!(s, 400);
    // Oversized body: refused without reading it all, so the server may answer 413 and close
    // while the client is still sending (the client then sees a broken pipe or a reset).
    let big = vec![b'a'; 2 << 20];
    match agent()
        .post(&node.url("/api/v1/write"))
        .header("Content-Type", "text/plain")
        .send(&big[..])
    {
        Ok(r) => assert_eq!(r.status().as_u16(), 413),
        Err(ureq::Error::Io(e)) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "oversized body: {e}"
        ),
        Err(e) => panic!("oversized body: {e}"),
    }
    // Bad PromQL and bad parameters.
    let (s, v) = get_json(&node.url("/api/v1/query?query=sum(&time=1"));
    assert_eq!((s, v["errorType"].as_str()), (400, Some("bad_data")));
    let (s, _) = get_json(&node.url("/api/v1/query_range?query=up&start=10&end=1&step=1"));
    assert_eq!(s, 400);
    let (s, _) = get_json(&node.url("/api/v1/series"));
    assert_eq!(s, 400);
    // Bad binary magic: an error frame, and the server still answers.
    let mut sock = TcpStream::connect(node.addrs.binary).unwrap();
    sock.write_all(b"NOPE\x01\x20\0\0\0\0\0\0\0\0\0\0").unwrap();
    let mut reply = [0u8; 64];
    let n = sock.read(&mut reply).unwrap();
    assert!(n >= 16 && &reply[..4] == b"ZTSD" && reply[5] == 0x81);
    assert!(matches!(
        binary_roundtrip(node.addrs.binary, &Frame::Ping),
        Frame::Ok
    ));
    // Still serving, and the good line was kept.
    let v = instant(&node, "good_metric", (T0 + 1000) as f64 / 1000.0);
    assert_eq!(v["result"][0]["value"][1], "1");
    node.stop();
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn promtool_checks_metrics_and_queries_the_node() {
    assert!(
        have("promtool"),
        "promtool is required (apt-get install -y prometheus); .ci/run installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let now = chrono::Utc::now().timestamp_millis();
    let body = format!("promtool_probe,room=a 21.5 {now}\n");
    assert_eq!(
        post(&node.url("/api/v1/write"), "text/plain", body.as_bytes()).0,
        204
    );
    let mut r = agent().get(&node.url("/metrics")).call().unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let server = format!("http://{}", node.addrs.http);
    let out = Command::new("promtool")
        .args(["query", "instant", &server, "promtool_probe"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("21.5"),
        "promtool query instant: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = ((now - 60_000) / 1000).to_string();
    let end = ((now + 60_000) / 1000).to_string();
    let out = Command::new("promtool")
        .args([
            "query",
            "range",
            "--start",
            &start,
            "--end",
            &end,
            "--step",
            "15s",
            &server,
            "promtool_probe",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("21.5"),
        "promtool query range: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.stop();
}
