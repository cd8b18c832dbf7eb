//! A real Prometheus remote-writes to a minimal HTTP endpoint that decodes with
//! `ingest::remote_write`. Needs the `prometheus` binary (Debian package `prometheus`); run with
//! `cargo test -p tsdb-node --test remote_write_prometheus -- --ignored --nocapture`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::KillOnDrop;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tsdb_node::ingest::remote_write::{decode, DecodedWrite, RemoteWriteLimits};

/// Serves HTTP/1.1 POSTs on one connection (Prometheus keeps connections alive), sending
/// each decoded body to `tx` and answering 204, or 400 with the error.
async fn serve_connection(mut stream: TcpStream, tx: mpsc::UnboundedSender<DecodedWrite>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        assert!(head.starts_with("post /api/v1/write "), "{head}");
        assert!(head.contains("content-encoding: snappy"), "{head}");
        assert!(
            head.contains("content-type: application/x-protobuf"),
            "{head}"
        );
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("content-length");
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..head_end + len).skip(head_end).collect();
        let reply = match decode(&body, &RemoteWriteLimits::default()) {
            Ok(decoded) => {
                let _ = tx.send(decoded);
                "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n".to_string()
            }
            Err(e) => {
                let msg = e.to_string();
                format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n{msg}",
                    msg.len()
                )
            }
        };
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
#[ignore]
async fn real_prometheus_remote_write_decodes() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("prometheus not installed; skipping");
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let write_addr = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_connection(stream, tx.clone()));
        }
    });

    // A free port for Prometheus' own web listener, which it scrapes as job "self".
    let web_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['{web_addr}']\n\
         remote_write:\n  - url: http://{write_addr}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n"
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let _prometheus = KillOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut requests, mut samples) = (0usize, 0usize);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let decoded = tokio::time::timeout(remaining, rx.recv())
            .await
            .expect("Prometheus sent `up{job=\"self\"} 1` within 90 s")
            .unwrap();
        requests += 1;
        samples += decoded.sample_count();
        for (labels, _) in &decoded.series {
            let names: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(names, sorted, "labels are sorted");
        }
        let up = decoded
            .series
            .iter()
            .find(|(l, _)| l.metric_name() == Some("up") && l.get("job") == Some("self"));
        if let Some((labels, points)) = up {
            assert_eq!(labels.get("instance"), Some(web_addr.to_string().as_str()));
            assert!(points.iter().all(|s| s.v == 1.0));
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            assert!(points.iter().all(|s| (now_ms - s.t).abs() < 120_000));
            println!(
                "decoded {samples} samples in {requests} remote-write requests from Prometheus"
            );
            return;
        }
    }
}
