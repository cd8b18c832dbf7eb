//! `GET /api/v1/stream?match[]=<selector>`: a WebSocket that pushes samples as they are
//! durably written.
//!
//! Each written batch that has samples matching any selector becomes one text message: a JSON
//! array of `{"metric":{"__name__":"cpu","host":"a"},"timestamp":1700000000000,"value":0.5}`
//! (timestamp in milliseconds; a NaN or infinite value is `null`). A subscriber that falls
//! behind is not allowed to slow ingest: it misses the oldest batches and is told so by a
//! `{"dropped":<batches>}` message. Messages from the client are ignored except Close.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::params;
use super::{ApiError, AppState};
use crate::ingest::LiveBatch;
use crate::storage::{Labels, Matcher, Sample};

/// Subscribers at once unless configured otherwise.
const DEFAULT_MAX_SUBSCRIBERS: usize = 256;

/// Largest message accepted from a client; the client has nothing to send but Close.
const MAX_CLIENT_MESSAGE_BYTES: usize = 64 << 10;

/// Caps how many live-stream WebSockets are open at once.
#[derive(Clone, Debug)]
pub struct StreamLimits {
    permits: Arc<Semaphore>,
}

impl StreamLimits {
    /// At most `max_subscribers` streams at once.
    pub fn new(max_subscribers: usize) -> Self {
        StreamLimits {
            permits: Arc::new(Semaphore::new(max_subscribers)),
        }
    }
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SUBSCRIBERS)
    }
}

/// Upgrades to a WebSocket streaming the samples that match `match[]`.
pub async fn stream(
    State(ctx): State<AppState>,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let pairs = params::pairs(query.as_deref(), None)?;
    let selectors = params::selectors(&pairs)?;
    if selectors.is_empty() {
        return Err(ApiError::bad_data(
            "at least one match[] selector is required",
        ));
    }
    let permit = ctx
        .streams
        .permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::unavailable("too many live stream subscribers; try again later"))?;
    // Subscribe before upgrading so that nothing written after the 101 reply is missed.
    let rx = ctx.sink.subscribe();
    Ok(ws
        .max_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .on_upgrade(move |socket| run(socket, rx, selectors, permit)))
}

async fn run(
    mut socket: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<LiveBatch>,
    selectors: Vec<Vec<Matcher>>,
    _permit: OwnedSemaphorePermit,
) {
    loop {
        let outgoing = tokio::select! {
            batch = rx.recv() => match batch {
                Ok(batch) => match render(&batch, &selectors) {
                    Some(text) => text,
                    None => continue,
                },
                Err(RecvError::Lagged(n)) => json!({ "dropped": n }).to_string(),
                Err(RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                // Pings are answered by the WebSocket layer; data from the client is ignored.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            },
        };
        if socket.send(Message::Text(outgoing.into())).await.is_err() {
            break;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

/// The samples of `batch` matching any selector, as a JSON array; `None` if none match.
fn render(batch: &[(Labels, Sample)], selectors: &[Vec<Matcher>]) -> Option<String> {
    let items: Vec<Value> = batch
        .iter()
        .filter(|(labels, _)| {
            selectors
                .iter()
                .any(|set| set.iter().all(|m| m.matches_labels(labels)))
        })
        .map(|(labels, sample)| {
            let metric: Map<String, Value> = labels
                .iter()
                .map(|l| (l.name.clone(), Value::String(l.value.clone())))
                .collect();
            json!({ "metric": metric, "timestamp": sample.t, "value": sample.v })
        })
        .collect();
    (!items.is_empty()).then(|| Value::Array(items).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_matching_samples_only() {
        let sel = params::parse_selector(r#"cpu{host="a"}"#).unwrap();
        let batch = vec![
            (
                Labels::from_metric("cpu", &[("host", "a")]),
                Sample { t: 5, v: 1.5 },
            ),
            (
                Labels::from_metric("cpu", &[("host", "b")]),
                Sample { t: 6, v: 2.0 },
            ),
            (
                Labels::from_metric("cpu", &[("host", "a")]),
                Sample { t: 7, v: f64::NAN },
            ),
        ];
        let v: Value = serde_json::from_str(&render(&batch, &sel).unwrap()).unwrap();
        assert_eq!(
            v,
            json!([
                {"metric": {"__name__": "cpu", "host": "a"}, "timestamp": 5, "value": 1.5},
                {"metric": {"__name__": "cpu", "host": "a"}, "timestamp": 7, "value": null}
            ])
        );
        assert!(render(&batch[1..2], &sel).is_none());
    }
}
