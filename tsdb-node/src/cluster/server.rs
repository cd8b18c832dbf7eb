//! The gRPC server side: routing of `strata.cluster.v1.Cluster` methods to the handler, and
//! the cluster-secret check in front of every call.
//!
//! This is what `tonic-build` would generate for the unary methods, written out so the
//! build needs neither `protoc` nor a build script (see ARCHITECTURE.md).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use subtle::ConstantTimeEq;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use super::handler::RpcHandler;
use super::rpc::{self, SECRET_METADATA};

/// Compares presented secrets with the configured one in constant time. Both sides are
/// hashed first, so the comparison takes the same time whatever the lengths.
#[derive(Clone)]
pub struct SecretCheck {
    digest: Option<[u8; 32]>,
}

fn sha256(s: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, s);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl SecretCheck {
    /// `None` accepts every caller (a warning is logged at start-up).
    pub fn new(secret: Option<&str>) -> Self {
        SecretCheck {
            digest: secret.map(|s| sha256(s.as_bytes())),
        }
    }

    pub fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let Some(want) = &self.digest else {
            return Ok(());
        };
        let given = req
            .metadata()
            .get(SECRET_METADATA)
            .map(|v| sha256(v.as_bytes()))
            .ok_or_else(|| Status::unauthenticated("missing cluster secret"))?;
        if bool::from(given.ct_eq(want)) {
            Ok(())
        } else {
            Err(Status::unauthenticated("wrong cluster secret"))
        }
    }
}

/// The tonic service. Cheap to clone.
#[derive(Clone)]
pub struct ClusterRpcServer {
    handler: Arc<RpcHandler>,
    secret: SecretCheck,
    max_message_bytes: usize,
}

impl ClusterRpcServer {
    pub fn new(handler: Arc<RpcHandler>, secret: SecretCheck, max_message_bytes: usize) -> Self {
        ClusterRpcServer {
            handler,
            secret,
            max_message_bytes,
        }
    }
}

impl NamedService for ClusterRpcServer {
    const NAME: &'static str = rpc::SERVICE;
}

/// Adapts an async function to tonic's unary service interface.
struct Unary<F>(F);

impl<Req, Resp, F, Fut> Service<Request<Req>> for Unary<F>
where
    F: FnMut(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Resp>, Status>>,
{
    type Response = Response<Resp>;
    type Error = Status;
    type Future = Fut;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Req>) -> Fut {
        (self.0)(req)
    }
}

/// Decodes one request, runs `f` after the secret check, encodes the answer. Message sizes
/// are capped in both directions before anything is allocated for them.
async fn unary<B, Req, Resp, F, Fut>(
    req: http::Request<B>,
    secret: SecretCheck,
    max: usize,
    f: F,
) -> Result<http::Response<Body>, Infallible>
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnOnce(Req) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    let codec = tonic_prost::ProstCodec::<Resp, Req>::default();
    let mut grpc = tonic::server::Grpc::new(codec)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let mut f = Some(f);
    let svc = Unary(move |r: Request<Req>| {
        let f = f.take();
        let checked = secret.check(&r);
        async move {
            checked?;
            let f = f.ok_or_else(|| Status::internal("handler called twice"))?;
            f(r.into_inner()).await.map(Response::new)
        }
    });
    Ok(grpc.unary(svc, req).await)
}

impl<B> Service<http::Request<B>> for ClusterRpcServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let h = self.handler.clone();
        let secret = self.secret.clone();
        let max = self.max_message_bytes;
        match req.uri().path() {
            rpc::PATH_WRITE => {
                Box::pin(unary(
                    req,
                    secret,
                    max,
                    move |r| async move { h.write(r).await },
                ))
            }
            rpc::PATH_SELECT => Box::pin(unary(req, secret, max, move |r| async move {
                h.select(r).await
            })),
            rpc::PATH_SERIES => Box::pin(unary(req, secret, max, move |r| async move {
                h.series(r).await
            })),
            rpc::PATH_AGGREGATE => Box::pin(unary(req, secret, max, move |r| async move {
                h.aggregate(r).await
            })),
            rpc::PATH_TREE => Box::pin(unary(
                req,
                secret,
                max,
                move |r| async move { h.tree(r).await },
            )),
            rpc::PATH_DELETE => Box::pin(unary(req, secret, max, move |r| async move {
                h.delete(r).await
            })),
            rpc::PATH_TOMBSTONES => Box::pin(unary(req, secret, max, move |r| async move {
                h.tombstones(r).await
            })),
            _ => {
                Box::pin(
                    async move { Ok(Status::unimplemented("unknown method").into_http::<Body>()) },
                )
            }
        }
    }
}
