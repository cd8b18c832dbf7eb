//! Authentication and authorisation of HTTP requests (`auth.http: true`).
//!
//! Clients present either `Authorization: Basic` (a configured user, bcrypt-verified) or
//! `Authorization: Bearer` (a token whose SHA-256 is in `auth.tokens`). Each endpoint needs a
//! role: `admin` for `/api/v1/admin/*`, `write` for writes, `read` for everything else;
//! `/health`, `/ready` and `/metrics` stay open so probes and scrapers need no secret.
//!
//! bcrypt costs 50–100 ms per check, far too much per request for a client that sends Basic
//! auth on every call, so successful verifications are cached briefly. The cache key is an
//! HMAC of the credentials under a per-process random key: the plain password is never
//! stored, and the key cannot be used offline to test password guesses.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use parking_lot::Mutex;
use ring::{digest, hmac};
use subtle::ConstantTimeEq;

use crate::auth::{AuthError, FailureThrottle, Role, User, UserDb};
use crate::config::TokenEntry;

/// How long a successful Basic verification is remembered. Short, so that a user removed
/// from configuration (on restart) or a changed password is not honoured for long.
const CACHE_TTL: Duration = Duration::from_secs(60);

/// Cached verifications at most; bounds memory if many distinct users log in.
const CACHE_MAX_ENTRIES: usize = 10_000;

/// Longest `Authorization` header considered. Anything longer is refused before decoding.
const MAX_AUTHORIZATION_BYTES: usize = 4096;

/// Why the token configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TokenConfigError {
    /// `token_sha256` is not 64 hex digits.
    #[error("token for {0:?}: token_sha256 must be 64 hex digits")]
    BadDigest(String),
    /// `username` is empty.
    #[error("a token has an empty username")]
    EmptyUsername,
}

/// A configured bearer token: the SHA-256 of the secret and whom it stands for.
#[derive(Clone)]
pub struct TokenDigest {
    digest: [u8; 32],
    user: User,
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenDigest")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl TokenDigest {
    /// Validates and decodes every configured token.
    pub fn parse_all(entries: &[TokenEntry]) -> Result<Vec<TokenDigest>, TokenConfigError> {
        entries.iter().map(Self::parse).collect()
    }

    fn parse(e: &TokenEntry) -> Result<TokenDigest, TokenConfigError> {
        if e.username.is_empty() {
            return Err(TokenConfigError::EmptyUsername);
        }
        let hex = e.token_sha256.as_bytes();
        let bad = || TokenConfigError::BadDigest(e.username.clone());
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut digest = [0u8; 32];
        for (out, pair) in digest.iter_mut().zip(hex.chunks_exact(2)) {
            let hi = hex_value(pair[0]).ok_or_else(bad)?;
            let lo = hex_value(pair[1]).ok_or_else(bad)?;
            *out = hi << 4 | lo;
        }
        Ok(TokenDigest {
            digest,
            user: User {
                username: e.username.clone(),
                roles: e.roles.clone(),
            },
        })
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The credentials a request carries.
#[derive(PartialEq, Eq)]
enum Credentials {
    Basic { username: String, password: String },
    Bearer(String),
}

/// Why a request's credentials were not accepted.
#[derive(Debug, PartialEq, Eq)]
enum Denied {
    /// No or unparseable credentials, or wrong ones: 401.
    Unauthenticated,
    /// The client address is locked out after repeated failures: 429.
    Throttled(Duration),
    /// Authenticated but lacking the role: 403.
    Forbidden(Role),
    /// Verification itself failed: 500.
    Internal,
}

struct CachedUser {
    user: User,
    expires: Instant,
}

/// Verifies HTTP credentials; shared by every request.
pub struct HttpAuth {
    users: Arc<UserDb>,
    tokens: Vec<TokenDigest>,
    throttle: Arc<FailureThrottle>,
    cache_key: hmac::Key,
    cache: Mutex<HashMap<[u8; 32], CachedUser>>,
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuth")
            .field("users", &self.users)
            .field("tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

impl HttpAuth {
    /// Users for Basic auth, tokens for Bearer auth, and the per-address failure throttle.
    pub fn new(
        users: Arc<UserDb>,
        tokens: Vec<TokenDigest>,
        throttle: Arc<FailureThrottle>,
    ) -> HttpAuth {
        let key: [u8; 32] = rand::random();
        HttpAuth {
            users,
            tokens,
            throttle,
            cache_key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Authenticates `creds` from `ip`, going through the throttle on failure.
    async fn authenticate(&self, creds: Option<Credentials>, ip: IpAddr) -> Result<User, Denied> {
        let now = Instant::now();
        self.throttle.check(ip, now).map_err(Denied::Throttled)?;
        let result = match creds {
            None => Err(Denied::Unauthenticated),
            Some(Credentials::Bearer(token)) => self.bearer(&token),
            Some(Credentials::Basic { username, password }) => self.basic(username, password).await,
        };
        match &result {
            Ok(_) => self.throttle.record_success(ip),
            Err(Denied::Unauthenticated) => {
                if let Err(lockout) = self.throttle.record_failure(ip, Instant::now()) {
                    return Err(Denied::Throttled(lockout));
                }
            }
            Err(_) => {}
        }
        result
    }

    /// Compares the token's digest with every configured digest in constant time, without
    /// stopping at a match, so timing reveals neither the token nor which entry matched.
    fn bearer(&self, token: &str) -> Result<User, Denied> {
        let d = digest::digest(&digest::SHA256, token.as_bytes());
        let mut found = None;
        for t in &self.tokens {
            if bool::from(t.digest.as_slice().ct_eq(d.as_ref())) {
                found = Some(&t.user);
            }
        }
        found.cloned().ok_or(Denied::Unauthenticated)
    }

    async fn basic(&self, username: String, password: String) -> Result<User, Denied> {
        let key = self.cache_key_for(&username, &password);
        let now = Instant::now();
        if let Some(c) = self.cache.lock().get(&key) {
            if c.expires > now {
                return Ok(c.user.clone());
            }
        }
        match self.users.verify_async(username, password).await {
            Ok(user) => {
                self.remember(key, &user, Instant::now());
                Ok(user)
            }
            Err(AuthError::InvalidCredentials) => Err(Denied::Unauthenticated),
            Err(e) => {
                tracing::error!(error = %e, "HTTP password verification failed");
                Err(Denied::Internal)
            }
        }
    }

    fn cache_key_for(&self, username: &str, password: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.cache_key);
        // Length-prefixing keeps ("ab", "c") and ("a", "bc") apart.
        ctx.update(&(username.len() as u64).to_le_bytes());
        ctx.update(username.as_bytes());
        ctx.update(password.as_bytes());
        let tag = ctx.sign();
        let mut key = [0u8; 32];
        key.copy_from_slice(tag.as_ref());
        key
    }

    fn remember(&self, key: [u8; 32], user: &User, now: Instant) {
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_MAX_ENTRIES {
            cache.retain(|_, c| c.expires > now);
            if cache.len() >= CACHE_MAX_ENTRIES {
                return;
            }
        }
        cache.insert(
            key,
            CachedUser {
                user: user.clone(),
                expires: now + CACHE_TTL,
            },
        );
    }
}

/// The role an endpoint needs, or `None` for the open ones.
fn required_role(method: &Method, path: &str) -> Option<Role> {
    match path {
        "/health" | "/ready" | "/metrics" => None,
        p if p.starts_with("/api/v1/admin/") => Some(Role::Admin),
        "/api/v1/write" | "/write" => Some(Role::Write),
        // Seed 000's deletion of a device's metric changes data, so it needs more than read.
        "/query" if method == Method::DELETE => Some(Role::Write),
        _ => Some(Role::Read),
    }
}

/// Extracts Basic or Bearer credentials; `None` when absent or malformed.
fn parse_authorization(value: Option<&HeaderValue>) -> Option<Credentials> {
    let value = value?;
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return None;
    }
    let value = value.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (username, password) = text.split_once(':')?;
        Some(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Some(Credentials::Bearer(rest.to_string()))
    } else {
        None
    }
}

/// Middleware: refuses requests without the role their endpoint needs. The authenticated
/// [`User`] is put in the request's extensions for handlers that care.
pub async fn require(State(auth): State<Arc<HttpAuth>>, mut req: Request, next: Next) -> Response {
    let Some(role) = required_role(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    // Without ConnectInfo (never the case when served by the node) all clients share one
    // throttle bucket, which errs on the side of refusing.
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let creds = parse_authorization(req.headers().get(AUTHORIZATION));
    let outcome = auth.authenticate(creds, ip).await.and_then(|user| {
        if user.can(role) {
            Ok(user)
        } else {
            Err(Denied::Forbidden(role))
        }
    });
    match outcome {
        Ok(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(denied) => refuse(denied, ip),
    }
}

fn refuse(denied: Denied, ip: IpAddr) -> Response {
    match denied {
        Denied::Unauthenticated => {
            tracing::debug!(%ip, "HTTP request without valid credentials");
            let mut resp = (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
            let h = resp.headers_mut();
            h.append(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"strata\", charset=\"UTF-8\""),
            );
            h.append(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"strata\""),
            );
            resp
        }
        Denied::Throttled(retry) => {
            let mut resp = (
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed logins from this address\n",
            )
                .into_response();
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry.as_secs().max(1)));
            resp
        }
        Denied::Forbidden(role) => (
            StatusCode::FORBIDDEN,
            format!("this endpoint needs the {role} role\n"),
        )
            .into_response(),
        Denied::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "credential verification failed\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn parses_basic_and_bearer() {
        let b = base64::engine::general_purpose::STANDARD.encode("al:ice:pw");
        assert!(
            parse_authorization(Some(&header(&format!("basic {b}"))))
                == Some(Credentials::Basic {
                    username: "al".into(),
                    password: "ice:pw".into()
                })
        );
        assert!(
            parse_authorization(Some(&header("Bearer abc")))
                == Some(Credentials::Bearer("abc".into()))
        );
        for bad in ["Basic !!!", "Bearer ", "Digest x", "Basic", ""] {
            assert!(parse_authorization(Some(&header(bad))).is_none(), "{bad}");
        }
        let long = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_BYTES));
        assert!(parse_authorization(Some(&header(&long))).is_none());
    }

    #[test]
    fn roles_by_endpoint() {
        assert_eq!(required_role(&Method::GET, "/metrics"), None);
        assert_eq!(required_role(&Method::GET, "/health"), None);
        assert_eq!(
            required_role(&Method::POST, "/api/v1/admin/flush"),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role(&Method::POST, "/api/v1/write"),
            Some(Role::Write)
        );
        assert_eq!(required_role(&Method::DELETE, "/query"), Some(Role::Write));
        assert_eq!(required_role(&Method::POST, "/query"), Some(Role::Read));
        assert_eq!(
            required_role(&Method::GET, "/api/v1/query"),
            Some(Role::Read)
        );
    }

    #[test]
    fn token_digests_are_validated() {
        let entry = |d: &str| TokenEntry {
            username: "g".into(),
            token_sha256: d.into(),
            roles: vec![Role::Read],
        };
        assert!(TokenDigest::parse_all(&[entry(&"aB".repeat(32))]).is_ok());
        assert!(TokenDigest::parse_all(&[entry("abc")]).is_err());
        assert!(TokenDigest::parse_all(&[entry(&"zz".repeat(32))]).is_err());
    }

    #[tokio::test]
    async fn basic_verifications_are_cached_and_bearer_matches() {
        let users = UserDb::new(vec![crate::auth::UserEntry {
            username: "u".into(),
            password_hash: bcrypt::hash("pw", 4).unwrap(),
            roles: vec![Role::Read],
        }])
        .unwrap();
        let token_hex: String = digest::digest(&digest::SHA256, b"tok")
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let tokens = TokenDigest::parse_all(&[TokenEntry {
            username: "grafana".into(),
            token_sha256: token_hex,
            roles: vec![Role::Read],
        }])
        .unwrap();
        let auth = HttpAuth::new(Arc::new(users), tokens, Arc::default());
        let ip = IpAddr::from([127, 0, 0, 1]);
        let basic = |p: &str| {
            Some(Credentials::Basic {
                username: "u".into(),
                password: p.into(),
            })
        };
        assert!(auth.authenticate(basic("pw"), ip).await.is_ok());
        assert_eq!(auth.cache.lock().len(), 1);
        assert!(auth.authenticate(basic("pw"), ip).await.is_ok());
        assert_eq!(
            auth.authenticate(basic("nope"), ip).await,
            Err(Denied::Unauthenticated)
        );
        let user = auth
            .authenticate(Some(Credentials::Bearer("tok".into())), ip)
            .await
            .unwrap();
        assert_eq!(user.username, "grafana");
        assert!(auth
            .authenticate(Some(Credentials::Bearer("tok2".into())), ip)
            .await
            .is_err());
    }
}
