//! The gRPC client side: one lazily connected channel per peer address, each call carrying
//! the cluster secret and a deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use super::rpc::{
    self, AggregateRequest, AggregateResponse, DeleteRequest, DeleteResponse, SelectRequest,
    SelectResponse, SeriesResponse, TombstonesRequest, TombstonesResponse, TreeRequest,
    TreeResponse, WriteRequest, WriteResponse,
};

/// Channels to peers, shared by every request. Cheap to clone.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<PeersInner>,
}

struct PeersInner {
    channels: Mutex<HashMap<SocketAddr, Channel>>,
    secret: Option<MetadataValue<tonic::metadata::Ascii>>,
    timeout: Duration,
    max_message_bytes: usize,
}

impl Peers {
    /// `secret` must be printable ASCII (it travels in gRPC metadata).
    pub fn new(
        secret: Option<&str>,
        timeout: Duration,
        max_message_bytes: usize,
    ) -> Result<Peers, String> {
        let secret = match secret {
            Some(s) => Some(
                MetadataValue::try_from(s)
                    .map_err(|_| "the cluster secret must be printable ASCII".to_string())?,
            ),
            None => None,
        };
        Ok(Peers {
            inner: Arc::new(PeersInner {
                channels: Mutex::new(HashMap::new()),
                secret,
                timeout,
                max_message_bytes,
            }),
        })
    }

    fn channel(&self, addr: SocketAddr) -> Result<Channel, Status> {
        let mut map = self.inner.channels.lock();
        if let Some(c) = map.get(&addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Status::internal(format!("peer address {addr}: {e}")))?
            .connect_timeout(self.inner.timeout.min(Duration::from_secs(3)))
            .timeout(self.inner.timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10));
        // Lazy: connects on first use and reconnects by itself after the peer restarts.
        let channel = endpoint.connect_lazy();
        map.insert(addr, channel.clone());
        Ok(channel)
    }

    async fn call<Req, Resp>(
        &self,
        addr: SocketAddr,
        path: &'static str,
        msg: Req,
    ) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.call_within(addr, path, msg, self.inner.timeout).await
    }

    /// A call with its own deadline (at most the configured one).
    async fn call_within<Req, Resp>(
        &self,
        addr: SocketAddr,
        path: &'static str,
        msg: Req,
        timeout: Duration,
    ) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel(addr)?)
            .max_decoding_message_size(self.inner.max_message_bytes)
            .max_encoding_message_size(self.inner.max_message_bytes);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("peer {addr} not ready: {e}")))?;
        let mut req = Request::new(msg);
        req.set_timeout(timeout.min(self.inner.timeout));
        if let Some(s) = &self.inner.secret {
            req.metadata_mut().insert(rpc::SECRET_METADATA, s.clone());
        }
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let resp = grpc
            .unary(req, PathAndQuery::from_static(path), codec)
            .await?;
        Ok(resp.into_inner())
    }

    pub async fn write(
        &self,
        addr: SocketAddr,
        req: WriteRequest,
    ) -> Result<WriteResponse, Status> {
        self.call(addr, rpc::PATH_WRITE, req).await
    }

    pub async fn select(
        &self,
        addr: SocketAddr,
        req: SelectRequest,
    ) -> Result<SelectResponse, Status> {
        self.call(addr, rpc::PATH_SELECT, req).await
    }

    pub async fn series(
        &self,
        addr: SocketAddr,
        req: SelectRequest,
    ) -> Result<SeriesResponse, Status> {
        self.call(addr, rpc::PATH_SERIES, req).await
    }

    /// Push-down: partial aggregates of the node's series in the request's token ranges,
    /// within the query's remaining `timeout`.
    pub async fn aggregate(
        &self,
        addr: SocketAddr,
        req: AggregateRequest,
        timeout: Duration,
    ) -> Result<AggregateResponse, Status> {
        self.call_within(addr, rpc::PATH_AGGREGATE, req, timeout)
            .await
    }

    pub async fn tree(&self, addr: SocketAddr, req: TreeRequest) -> Result<TreeResponse, Status> {
        self.call(addr, rpc::PATH_TREE, req).await
    }

    pub async fn delete(
        &self,
        addr: SocketAddr,
        req: DeleteRequest,
    ) -> Result<DeleteResponse, Status> {
        self.call(addr, rpc::PATH_DELETE, req).await
    }

    pub async fn tombstones(&self, addr: SocketAddr) -> Result<TombstonesResponse, Status> {
        self.call(addr, rpc::PATH_TOMBSTONES, TombstonesRequest {})
            .await
    }
}
