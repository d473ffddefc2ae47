//! Connection handling: an ordered list of endpoints, tried in turn, with bounded retries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flotilla_proto::control::control_client::ControlClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::error::{Error, Result};

/// Response metadata in which nodes name the leader's address (`host:port`).
const LEADER_HEADER: &str = "x-flotilla-leader";

/// Tuning for [`Client`]; the defaults suit interactive use.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time to open a TCP connection to one endpoint before trying the next.
    pub connect_timeout: Duration,
    /// Deadline of one Control request on one endpoint (waits such as `wait_sandbox` set
    /// their own). Streams (exec, files) have none: they last as long as the command.
    pub request_timeout: Duration,
    /// How long to keep retrying a retryable failure across all endpoints, e.g. while a new
    /// leader is elected (about a second on a healthy cluster).
    pub retry_for: Duration,
    /// API token (`flt_…`), sent as `authorization: Bearer …` on every call.
    pub token: Option<String>,
    /// CA certificate (PEM) for `https://` endpoints: the nodes' certificates must chain to it.
    pub tls_ca: Option<Vec<u8>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            // The server bounds its own waits (an add-node waits up to 30 s for the node to
            // catch up), so this only catches a server that stopped answering.
            request_timeout: Duration::from_secs(60),
            retry_for: Duration::from_secs(10),
            token: None,
            tls_ca: None,
        }
    }
}

/// A client of one Flotilla cluster. Cheap to clone; share it.
///
/// Requests go to the endpoint that answered last. Every reply names the current leader; when
/// that is one of this client's endpoints, the next request goes straight to it, which saves
/// the follower-to-leader forwarding hop on writes.
#[derive(Clone)]
pub struct Client {
    inner: std::sync::Arc<Inner>,
}

/// A channel that adds the client's token to every call.
pub(crate) type Authed = InterceptedService<Channel, TokenInterceptor>;

/// Adds `authorization: Bearer <token>` when the client has a token.
#[derive(Clone)]
pub(crate) struct TokenInterceptor(Option<MetadataValue<Ascii>>);

impl Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

struct Inner {
    endpoints: Vec<String>,
    channels: Vec<Authed>,
    /// Index of the endpoint that answered last; tried first next time.
    preferred: AtomicUsize,
    options: ClientOptions,
}

impl Client {
    /// Connects to a cluster through any of `endpoints` (`http://host:port`), with default options.
    pub async fn connect<I, S>(endpoints: I) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::connect_with(endpoints, ClientOptions::default()).await
    }

    /// Connects with explicit options. Fails only on malformed endpoints: connections are made
    /// lazily, so a cluster that is still starting can be reached once it is up.
    pub async fn connect_with<I, S>(endpoints: I, options: ClientOptions) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let token = match &options.token {
            Some(t) if !t.is_empty() => Some(
                format!("Bearer {t}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| Error::InvalidArgument("token: must be printable ASCII".into()))?,
            ),
            _ => None,
        };
        let mut names = Vec::new();
        let mut channels = Vec::new();
        for e in endpoints {
            let e = e.as_ref().trim();
            if e.is_empty() {
                continue;
            }
            let url = if e.contains("://") { e.to_string() } else { format!("http://{e}") };
            let endpoint = Endpoint::from_shared(url.clone())
                .map_err(|err| Error::InvalidArgument(format!("endpoint {e:?}: {err}")))?
                .connect_timeout(options.connect_timeout)
                .tcp_nodelay(true);
            let endpoint = match &options.tls_ca {
                Some(ca) if url.starts_with("https://") => endpoint
                    .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
                    .map_err(|err| Error::InvalidArgument(format!("tls_ca: {err}")))?,
                _ => endpoint,
            };
            channels.push(InterceptedService::new(endpoint.connect_lazy(), TokenInterceptor(token.clone())));
            names.push(url);
        }
        if channels.is_empty() {
            return Err(Error::InvalidArgument("endpoint: at least one endpoint is required".into()));
        }
        Ok(Client {
            inner: std::sync::Arc::new(Inner { endpoints: names, channels, preferred: AtomicUsize::new(0), options }),
        })
    }

    /// Runs `call` with each endpoint's index and channel in turn, the preferred one first,
    /// until one succeeds or fails with something other than "unavailable", retrying the whole
    /// list with a growing pause until `retry_for` has passed. A node that dies while it holds
    /// the request (the connection is reset or closed) counts as unavailable too, so the same
    /// request, with the same request id, goes to the next endpoint (see `Error`'s
    /// `From<tonic::Status>`).
    async fn attempts<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(usize, Authed) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let inner = &self.inner;
        let n = inner.channels.len();
        let deadline = tokio::time::Instant::now() + inner.options.retry_for;
        let mut backoff = Duration::from_millis(50);
        loop {
            let start = inner.preferred.load(Ordering::Relaxed);
            let mut last = Error::Unavailable("no endpoint answered".into());
            for k in 0..n {
                let i = (start + k) % n;
                match call(i, inner.channels[i].clone()).await {
                    Ok(v) => return Ok(v),
                    Err(e) if e.is_retryable() => {
                        tracing::debug!(endpoint = %inner.endpoints[i], error = %e, "endpoint failed, trying the next");
                        last = e.on_endpoint(&inner.endpoints[i]);
                    }
                    Err(e) => return Err(e),
                }
            }
            if tokio::time::Instant::now() + backoff > deadline {
                return Err(last);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    /// [`Self::attempts`] for calls on services other than Control (streams, bootstrap),
    /// which read their whole answer inside `call`.
    pub(crate) async fn on_endpoints<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(Authed) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.attempts(|_, channel| call(channel)).await
    }

    /// A client with this one's options (token, TLS) that talks only to the member at `addr`
    /// (`host:port`, as the cluster's membership names it), over this client's scheme, and
    /// gives up on it after `retry_for`.
    pub async fn member(&self, addr: &str, retry_for: Duration) -> Result<Client> {
        let scheme = self.inner.endpoints[0].split_once("://").map_or("http", |(s, _)| s);
        let options = ClientOptions { retry_for, ..self.inner.options.clone() };
        Self::connect_with([format!("{scheme}://{addr}")], options).await
    }

    /// The endpoints this client tries, in order.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// The index of the endpoint the server named as leader, if it is one of ours. Nodes name
    /// the leader by its advertised address, which may differ from how this client reaches it
    /// (e.g. through a published port); then the hint is not used.
    fn leader_index<T>(&self, resp: &tonic::Response<T>) -> Option<usize> {
        let leader = resp.metadata().get(LEADER_HEADER)?.to_str().ok()?;
        self.inner
            .endpoints
            .iter()
            .position(|e| e.split_once("://").map_or(e.as_str(), |(_, rest)| rest).trim_end_matches('/') == leader)
    }

    /// `message` as a request carrying `request_id` as its `x-request-id` too: the node then
    /// logs the request, and the work it starts (a sandbox's actor, a call's attempts), under
    /// the one id the record keeps.
    pub(crate) fn tagged<M>(message: M, request_id: &str) -> tonic::Request<M> {
        let mut req = tonic::Request::new(message);
        if let Ok(value) = request_id.parse() {
            req.metadata_mut().insert("x-request-id", value);
        }
        req
    }

    /// A Control call on the endpoints in turn (see [`Self::attempts`]), each attempt bounded
    /// by `request_timeout`; the leader named in the reply is tried first next time.
    pub(crate) async fn control<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(ControlClient<Authed>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.control_for(self.inner.options.request_timeout, call).await
    }

    /// [`Self::control`] for calls the server may hold longer than `request_timeout` (waits).
    pub(crate) async fn control_for<T, F, Fut>(&self, timeout: Duration, call: F) -> Result<T>
    where
        F: Fn(ControlClient<Authed>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.attempts(|i, channel| {
            let call = call(ControlClient::new(channel).max_decoding_message_size(64 << 20));
            async move {
                let Ok(resp) = tokio::time::timeout(timeout, call).await else {
                    // The endpoint took the call and never answered (a hung or cut-off node).
                    // The outcome is unknown, so this call is not retried; the next one starts
                    // at the next endpoint, or every call would wait on the hung node
                    // (docs/reliability.md R3).
                    let next = (i + 1) % self.inner.channels.len();
                    let _ = self.inner.preferred.compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed);
                    return Err(Error::Timeout(format!("no answer within {timeout:?}")));
                };
                let resp = resp?;
                self.inner.preferred.store(self.leader_index(&resp).unwrap_or(i), Ordering::Relaxed);
                Ok(resp.into_inner())
            }
        })
        .await
    }
}
