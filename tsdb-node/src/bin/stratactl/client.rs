//! The node's HTTP API as seen from the CLI: one blocking agent, Prometheus' response envelope
//! unwrapped, and server errors turned into readable `anyhow` errors.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// Largest response body read; a range query over many series can be large, but an unbounded
/// read would let a misbehaving server exhaust the client's memory.
const MAX_RESPONSE_BYTES: u64 = 512 << 20;

/// A client of one node's HTTP API.
#[derive(Clone)]
pub struct Api {
    agent: ureq::Agent,
    base: String,
}

impl Api {
    /// `server` is the base URL, e.g. `http://127.0.0.1:8181`.
    pub fn new(server: &str) -> Api {
        let agent = ureq::Agent::config_builder()
            // Error statuses carry the server's explanation in the body: read it ourselves.
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        Api {
            agent,
            base: server.trim_end_matches('/').to_string(),
        }
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `GET path?params` and the `data` of a Prometheus success envelope.
    pub fn get_data(&self, path: &str, params: &[(&str, &str)]) -> Result<Value> {
        let url = self.url(path);
        let resp = self
            .agent
            .get(&url)
            .query_pairs(params.iter().copied())
            .call()
            .with_context(|| format!("GET {url}"))?;
        envelope(resp, &url)
    }

    /// `GET path?params` answered with an uncompressed body, read whole but not parsed; the
    /// body's length in bytes. For timing servers alike: none is asked to compress, and the
    /// client's JSON parsing (the same work whoever answered) is not part of the time.
    pub fn get_plain(&self, path: &str, params: &[(&str, &str)]) -> Result<usize> {
        let url = self.url(path);
        let mut resp = self
            .agent
            .get(&url)
            .header("Accept-Encoding", "identity")
            .query_pairs(params.iter().copied())
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .with_context(|| format!("reading the answer of {url}"))?;
        if !(200..300).contains(&status) {
            bail!(
                "{}",
                describe_error(status, &String::from_utf8_lossy(&body))
            );
        }
        Ok(body.len())
    }

    /// `POST path` without a body and the `data` of the success envelope.
    pub fn post_empty(&self, path: &str) -> Result<Value> {
        let url = self.url(path);
        let resp = self
            .agent
            .post(&url)
            .send_empty()
            .with_context(|| format!("POST {url}"))?;
        envelope(resp, &url)
    }

    /// `POST path` with a form body; the `data` of a Prometheus success envelope.
    pub fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Result<Value> {
        let url = self.url(path);
        let resp = self
            .agent
            .post(&url)
            .send_form(form.iter().copied())
            .with_context(|| format!("POST {url}"))?;
        envelope(resp, &url)
    }

    /// `POST` of a write body; Ok when the server answered 2xx, otherwise its explanation.
    pub fn post_write(&self, path_and_query: &str, content_type: &str, body: &[u8]) -> Result<()> {
        let url = self.url(path_and_query);
        let mut resp = self
            .agent
            .post(&url)
            .header("Content-Type", content_type)
            .send(body)
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = read_body(&mut resp).unwrap_or_default();
        Err(anyhow!("{}", describe_error(status, &text)))
    }
}

fn read_body(resp: &mut ureq::http::Response<ureq::Body>) -> Result<String> {
    Ok(resp
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_string()?)
}

/// Unwraps `{"status":"success","data":...}`; any other answer becomes an error carrying the
/// server's `errorType` and message.
fn envelope(mut resp: ureq::http::Response<ureq::Body>, url: &str) -> Result<Value> {
    let status = resp.status().as_u16();
    let text = read_body(&mut resp).with_context(|| format!("reading the answer of {url}"))?;
    if !(200..300).contains(&status) {
        bail!("{}", describe_error(status, &text));
    }
    let v: Value = serde_json::from_str(&text)
        .with_context(|| format!("{url} answered with something that is not JSON"))?;
    match v.get("status").and_then(Value::as_str) {
        Some("success") => Ok(v.get("data").cloned().unwrap_or(Value::Null)),
        _ => bail!("{}", describe_error(status, &text)),
    }
}

/// The server's explanation of a failed request: Prometheus' `errorType: error`, the line
/// protocol's `{"error":..., "invalid_lines":...}`, or the raw body.
pub fn describe_error(status: u16, body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        let body = body.trim();
        return if body.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {body}")
        };
    };
    let message = v
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    let mut out = match v.get("errorType").and_then(Value::as_str) {
        Some(kind) => format!("{kind}: {message} (HTTP {status})"),
        None => format!("{message} (HTTP {status})"),
    };
    if let Some(n) = v.get("invalid_lines").and_then(Value::as_u64) {
        out.push_str(&format!("; {n} invalid line(s)"));
    }
    out
}
