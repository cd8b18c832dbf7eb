//! The node's HTTP API over real sockets with `auth.http` (Basic and Bearer, roles, the
//! failure throttle), with TLS on HTTP and the binary listener, and the live WebSocket stream.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt;
use rustls_pki_types::pem::PemObject;
use tsdb_node::ingest::binary::frame::Frame;

mod common;

type Running = common::RunningNode;

/// A node on ephemeral ports with `extra` appended to its configuration.
fn start(dir: &Path, extra: &str) -> Running {
    Running::start(dir, "  wal_sync: false\n", extra)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

/// Status and `WWW-Authenticate` values of a request with an optional `Authorization`.
fn call(method: &str, url: &str, auth: Option<&str>, body: &str) -> (u16, Vec<String>) {
    let a = agent();
    let resp = match method {
        "GET" => {
            let mut r = a.get(url);
            if let Some(h) = auth {
                r = r.header("Authorization", h);
            }
            r.call()
        }
        _ => {
            let mut r = a.post(url).header("Content-Type", "text/plain");
            if let Some(h) = auth {
                r = r.header("Authorization", h);
            }
            r.send(body)
        }
    }
    .unwrap();
    let challenges = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    (resp.status().as_u16(), challenges)
}

fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const T0: i64 = 1_700_000_000_000;

#[test]
fn http_auth_roles_tokens_and_throttle() {
    let dir = tempfile::tempdir().unwrap();
    let h = bcrypt::hash("pw", 4).unwrap();
    let extra = format!(
        "auth:\n  http: true\n  users:\n    - {{username: reader, password_hash: \"{h}\", roles: [read]}}\n    - {{username: writer, password_hash: \"{h}\", roles: [write]}}\n    - {{username: boss, password_hash: \"{h}\", roles: [admin]}}\n  tokens:\n    - {{username: grafana, token_sha256: \"{}\"}}\n",
        sha256_hex("tok-123")
    );
    let node = start(dir.path(), &extra);
    let url = |p: &str| format!("http://{}{p}", node.addrs.http);
    let query = url("/api/v1/query?query=up");
    let line = format!("auth_test,host=a 1 {T0}\n");

    // Probes and scrapes stay open.
    for open in ["/health", "/ready", "/metrics"] {
        assert_eq!(call("GET", &url(open), None, "").0, 200, "{open}");
    }
    // Missing credentials: 401 with a challenge for both schemes.
    let (s, challenges) = call("GET", &query, None, "");
    assert_eq!(s, 401);
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic ")),
        "{challenges:?}"
    );
    assert!(
        challenges.iter().any(|c| c.starts_with("Bearer ")),
        "{challenges:?}"
    );

    // Roles.
    let (reader, writer, boss) = (
        basic("reader", "pw"),
        basic("writer", "pw"),
        basic("boss", "pw"),
    );
    assert_eq!(call("GET", &query, Some(&reader), "").0, 200);
    // A second call is served from the verification cache (and must still succeed).
    assert_eq!(call("GET", &query, Some(&reader), "").0, 200);
    assert_eq!(call("GET", &query, Some(&writer), "").0, 403);
    assert_eq!(
        call("POST", &url("/api/v1/write"), Some(&reader), &line).0,
        403
    );
    assert_eq!(
        call("POST", &url("/api/v1/write"), Some(&writer), &line).0,
        204
    );
    assert_eq!(
        call("POST", &url("/api/v1/admin/flush"), Some(&writer), "").0,
        403
    );
    assert_eq!(
        call("POST", &url("/api/v1/admin/flush"), Some(&boss), "").0,
        200
    );
    assert_eq!(call("GET", &query, Some(&boss), "").0, 200);

    // Bearer tokens.
    assert_eq!(call("GET", &query, Some("Bearer tok-123"), "").0, 200);
    assert_eq!(
        call("POST", &url("/api/v1/write"), Some("Bearer tok-123"), &line).0,
        403
    );
    assert_eq!(call("GET", &query, Some("Bearer tok-124"), "").0, 401);

    // Repeated failures lock the address out, even for correct credentials. A success clears
    // the count, so one failure (the wrong token) stands so far; the fifth locks out.
    assert_eq!(call("GET", &query, Some(&basic("reader", "no")), "").0, 401);
    assert_eq!(call("GET", &query, Some("Digest x"), "").0, 401);
    assert_eq!(call("GET", &query, Some(&basic("nobody", "pw")), "").0, 401);
    assert_eq!(call("GET", &query, Some("Basic %%%"), "").0, 429);
    assert_eq!(call("GET", &query, Some(&reader), "").0, 429);
    assert_eq!(call("GET", &url("/health"), None, "").0, 200);
    node.stop();
}

/// A self-signed certificate for 127.0.0.1, written as PEM files into `dir`.
fn self_signed(dir: &Path) -> Vec<u8> {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let pem = ck.cert.pem();
    std::fs::write(dir.join("cert.pem"), &pem).unwrap();
    std::fs::write(dir.join("key.pem"), ck.key_pair.serialize_pem()).unwrap();
    pem.into_bytes()
}

#[test]
fn tls_on_http_and_binary_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let cert_pem = self_signed(dir.path());
    let extra = format!(
        "tls:\n  cert_file: {d}/cert.pem\n  key_file: {d}/key.pem\n",
        d = dir.path().display()
    );
    let node = start(dir.path(), &extra);

    let cert = ureq::tls::Certificate::from_pem(&cert_pem).unwrap();
    let tls_agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
                .build(),
        )
        .build()
        .into();
    let https = format!("https://{}", node.addrs.http);
    let r = tls_agent
        .post(format!("{https}/api/v1/write"))
        .header("Content-Type", "text/plain")
        .send(format!("tls_test 7 {T0}\n"))
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let mut r = tls_agent
        .get(format!(
            "{https}/api/v1/query?query=tls_test&time={}",
            T0 / 1000
        ))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.body_mut().read_json().unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "7", "{v}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert!(agent()
        .get(format!("http://{}/health", node.addrs.http))
        .call()
        .is_err());

    // The binary protocol over TLS.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reply = rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(&cert_pem) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(node.addrs.binary)
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut s = connector.connect(name, tcp).await.unwrap();
        let mut buf = Vec::new();
        Frame::Ping.encode(&mut buf).unwrap();
        s.write_all(&buf).await.unwrap();
        let mut acc = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Ok(Some((f, _))) = Frame::parse(&acc, 1 << 20) {
                return f;
            }
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "connection closed before a reply");
            acc.extend_from_slice(&chunk[..n]);
        }
    });
    assert_eq!(reply, Frame::Ok);
    node.stop();
}

#[test]
fn websocket_stream_pushes_matching_writes() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), "");
    let http = node.addrs.http;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("ws://{http}/api/v1/stream?match[]=ws_temp%7Broom%3D%22a%22%7D");
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        // A bad selector is refused before the upgrade.
        assert!(
            tokio_tungstenite::connect_async(format!("ws://{http}/api/v1/stream?match[]=%7B"))
                .await
                .is_err()
        );
        let body = format!("ws_temp,room=b 1 {T0}\nws_temp,room=a 21.5 {T0}\nother 3 {T0}\n");
        let status = tokio::task::spawn_blocking(move || {
            call("POST", &format!("http://{http}/api/v1/write"), None, &body).0
        })
        .await
        .unwrap();
        assert_eq!(status, 204);
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no stream message within 10 s")
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{
                "metric": {"__name__": "ws_temp", "room": "a"},
                "timestamp": T0,
                "value": 21.5
            }])
        );
        ws.close(None).await.unwrap();
    });
    node.stop();
}
