//! The operator's view of a storage node's cluster API (DESIGN.md "Node"):
//! `GET /api/v1/cluster/members` and `POST /api/v1/admin/decommission`.

use std::time::Duration;

use serde::Deserialize;

/// Largest members document read from a node; a ring of a thousand nodes fits easily.
const MAX_MEMBERS_BYTES: u64 = 4 << 20;

/// Errors talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeApiError {
    /// The node could not be reached or answered with an error status.
    #[error("node {url}: {message}")]
    Request { url: String, message: String },
    /// The node answered something that is not a members document.
    #[error("node {url}: unexpected members document: {message}")]
    Decode { url: String, message: String },
}

/// One ring member as a node reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Node id (the pod name in Kubernetes).
    pub id: String,
    /// `joining`, `active`, `leaving` or `left`.
    pub state: String,
    /// Hinted-handoff writes waiting for this member, when the node reports them.
    pub pending_hints: u64,
}

impl Member {
    /// Active and owed no hints: safe to take another node down.
    pub fn is_healthy(&self) -> bool {
        self.state == "active" && self.pending_hints == 0
    }

    /// A member that has left the ring. Gossip keeps departed nodes for days so that
    /// every peer learns of the departure; they own nothing and must not gate operations.
    pub fn has_left(&self) -> bool {
        self.state == "left"
    }
}

/// How the controller reaches nodes. The HTTP implementation is the real one; the trait lets
/// the controller tests record the calls in order with the Kubernetes requests.
#[async_trait::async_trait]
pub trait NodeApi: Send + Sync {
    /// The ring as `base` (`http://host:port`) sees it. `Ok(None)` when the node serves no
    /// cluster API (a single-node build), so that health falls back to pod readiness.
    async fn members(&self, base: &str) -> Result<Option<Vec<Member>>, NodeApiError>;
    /// Asks the node at `base` to hand its data off and leave the ring. Idempotent.
    async fn decommission(&self, base: &str) -> Result<(), NodeApiError>;
}

/// Members documents as nodes may shape them: a bare list, `{"members": [...]}`, or the
/// Prometheus-style envelope `{"status": "success", "data": ...}` around either.
#[derive(Deserialize)]
#[serde(untagged)]
enum MembersDoc {
    List(Vec<MemberDoc>),
    Wrapped { members: Vec<MemberDoc> },
    Envelope { data: Box<MembersDoc> },
}

#[derive(Deserialize)]
struct MemberDoc {
    #[serde(alias = "node_id", alias = "nodeId", alias = "name")]
    id: String,
    #[serde(alias = "status")]
    state: String,
    // strata-node reports the bytes of hints it holds for the member (`pending_hint_bytes`);
    // any non-zero amount means the member is owed writes.
    #[serde(
        default,
        alias = "pending_hint_bytes",
        alias = "hints_pending",
        alias = "pendingHints"
    )]
    pending_hints: u64,
}

impl MembersDoc {
    fn into_members(self) -> Vec<Member> {
        match self {
            MembersDoc::List(l) | MembersDoc::Wrapped { members: l } => l
                .into_iter()
                .map(|m| Member {
                    id: m.id,
                    state: m.state.to_ascii_lowercase(),
                    pending_hints: m.pending_hints,
                })
                .collect(),
            MembersDoc::Envelope { data } => data.into_members(),
        }
    }
}

/// Parses a members document (see [`MembersDoc`] for the accepted shapes).
pub fn parse_members(body: &[u8]) -> Result<Vec<Member>, serde_json::Error> {
    Ok(serde_json::from_slice::<MembersDoc>(body)?.into_members())
}

/// Why a CA bundle for node certificates is unusable.
#[derive(Debug, thiserror::Error)]
pub enum CaBundleError {
    /// A PEM section could not be read.
    #[error("reading the CA bundle: {0}")]
    Pem(#[source] ureq::Error),
    /// The bundle holds no certificate.
    #[error("the CA bundle holds no certificate")]
    Empty,
}

/// The real client: HTTP or HTTPS (the base URL says which; clusters with `spec.tls` are
/// `https://`) to the pod's DNS name through the headless Service.
pub struct HttpNodeApi {
    agent: ureq::Agent,
}

impl HttpNodeApi {
    /// A client with short timeouts: a reconcile must not hang on one unreachable node.
    /// HTTPS is verified against Mozilla's roots.
    pub fn new() -> HttpNodeApi {
        Self::with_tls(ureq::tls::TlsConfig::default())
    }

    /// A client whose HTTPS trusts exactly the certificates in `pem` (the CA that signs the
    /// nodes' certificates, e.g. the `ca.crt` of their TLS Secret). The node certificates
    /// must name the pods' DNS names through the peers Service
    /// (`*.<cluster>-peers.<namespace>.svc`).
    pub fn with_ca_pem(pem: &[u8]) -> Result<HttpNodeApi, CaBundleError> {
        let roots = ca_certificates(pem)?;
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(roots)))
            .build();
        Ok(Self::with_tls(tls))
    }

    fn with_tls(tls: ureq::tls::TlsConfig) -> HttpNodeApi {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .tls_config(tls)
            .build();
        HttpNodeApi {
            agent: config.into(),
        }
    }
}

/// The certificates of a PEM bundle (keys and other sections are ignored).
fn ca_certificates(pem: &[u8]) -> Result<Vec<ureq::tls::Certificate<'static>>, CaBundleError> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        if let ureq::tls::PemItem::Certificate(c) = item.map_err(CaBundleError::Pem)? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(CaBundleError::Empty);
    }
    Ok(certs)
}

impl Default for HttpNodeApi {
    fn default() -> Self {
        Self::new()
    }
}

fn request_error(url: &str, e: impl std::fmt::Display) -> NodeApiError {
    NodeApiError::Request {
        url: url.into(),
        message: e.to_string(),
    }
}

#[async_trait::async_trait]
impl NodeApi for HttpNodeApi {
    async fn members(&self, base: &str) -> Result<Option<Vec<Member>>, NodeApiError> {
        let url = format!("{base}/api/v1/cluster/members");
        let agent = self.agent.clone();
        // ureq is blocking; the pool keeps the reconcile loop's executor free.
        tokio::task::spawn_blocking(move || {
            let mut resp = agent.get(&url).call().map_err(|e| request_error(&url, e))?;
            match resp.status().as_u16() {
                404 => return Ok(None),
                200 => {}
                s => return Err(request_error(&url, format!("HTTP {s}"))),
            }
            let body = resp
                .body_mut()
                .with_config()
                .limit(MAX_MEMBERS_BYTES)
                .read_to_vec()
                .map_err(|e| request_error(&url, e))?;
            parse_members(&body)
                .map(Some)
                .map_err(|e| NodeApiError::Decode {
                    url: url.clone(),
                    message: e.to_string(),
                })
        })
        .await
        .map_err(|e| request_error(base, e))?
    }

    async fn decommission(&self, base: &str) -> Result<(), NodeApiError> {
        let url = format!("{base}/api/v1/admin/decommission");
        let agent = self.agent.clone();
        tokio::task::spawn_blocking(move || {
            let resp = agent
                .post(&url)
                .send_empty()
                .map_err(|e| request_error(&url, e))?;
            let status = resp.status().as_u16();
            // 409: already leaving, which is what we asked for.
            if (200..300).contains(&status) || status == 409 {
                Ok(())
            } else {
                Err(request_error(&url, format!("HTTP {status}")))
            }
        })
        .await
        .map_err(|e| request_error(base, e))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_shapes() {
        let bare = br#"[{"node_id":"a-0","state":"active"},{"id":"a-1","state":"LEAVING","pending_hints":3}]"#;
        let m = parse_members(bare).unwrap();
        assert_eq!(m[1].state, "leaving");
        assert_eq!(m[1].pending_hints, 3);
        assert!(m[0].is_healthy());
        assert!(!m[1].is_healthy());
        // The shape strata-node serves.
        let node = br#"{"status":"success","data":[{"node_id":"a-2","state":"active","pending_hint_bytes":512}]}"#;
        let m = parse_members(node).unwrap();
        assert_eq!(m[0].pending_hints, 512);
        assert!(!m[0].is_healthy());
        let wrapped = br#"{"status":"success","data":{"members":[{"name":"a-0","status":"left","addr":"x"}]}}"#;
        assert_eq!(
            parse_members(wrapped).unwrap(),
            vec![Member {
                id: "a-0".into(),
                state: "left".into(),
                pending_hints: 0
            }]
        );
    }

    #[test]
    fn ca_bundles_need_a_certificate() {
        assert!(matches!(ca_certificates(b""), Err(CaBundleError::Empty)));
        assert!(matches!(
            ca_certificates(b"not pem at all"),
            Err(CaBundleError::Empty)
        ));
        let key_only = b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHh0ZXN0a2V5\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            ca_certificates(key_only),
            Err(CaBundleError::Empty)
        ));
        // A Secret's ca.crt may hold several CAs (e.g. during a CA rotation).
        let a = rcgen::generate_simple_self_signed(vec!["a".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".into()]).unwrap();
        let bundle = format!("{}{}", a.cert.pem(), b.cert.pem());
        assert_eq!(ca_certificates(bundle.as_bytes()).unwrap().len(), 2);
        assert!(HttpNodeApi::with_ca_pem(bundle.as_bytes()).is_ok());
    }

    #[test]
    fn refuses_garbage() {
        assert!(parse_members(b"").is_err());
        assert!(parse_members(b"{\"members\": 3}").is_err());
        assert!(parse_members(&[0xff, 0x00]).is_err());
    }
}
