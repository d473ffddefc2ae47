//! Request ids: one tracing span per gRPC request, named `rpc` and carrying `request_id` and
//! `method`, so every log line a request causes can be found, on every node it touches.
//!
//! The id is the caller's `x-request-id` header when it sends a usable one (1 to
//! [`MAX_LEN`] visible ASCII characters), otherwise a fresh random one; the reply carries it
//! back in the same header, so a client can quote it. While the request is handled the id is
//! also kept in a task-local, and the node's own calls made on the request's behalf carry it
//! onward with [`propagate`]: a write forwarded to the leader (Peer `Forward`), a read-index
//! request, a Worker call proxied to the node that hosts a sandbox, a function input sent to a
//! peer's replica. The receiving node's span then has the same `request_id`, so
//! `grep <id>` (or a JSON log query on `spans[].request_id`) follows the request across the
//! cluster. Work a handler hands to a task of its own (streaming exec output, say) runs
//! outside the request's span. Work that outlives the request runs in a span of its own that
//! carries the `request_id` its record keeps: a sandbox's actor (`sandbox`) and a durable
//! call's attempts (`call`); the SDKs send a create's or spawn's `request_id` as its
//! `x-request-id` too, so both spans name the same id. Replica actors run in a `replica` span.
//!
//! Each answered request logs one DEBUG line, `request answered`, with the time to the
//! reply's headers (`RUST_LOG=flotilla::request_id=debug`); at the default level the span
//! only adds its fields to the lines the request logs anyway.

use std::sync::Arc;
use std::time::Instant;

use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tracing::Instrument;

/// The header (gRPC metadata key) that carries the id, both ways.
pub const HEADER: &str = "x-request-id";
/// Longest id accepted from a caller; a longer one is replaced by a fresh id.
pub const MAX_LEN: usize = 128;

tokio::task_local! {
    /// The id of the request this task is handling.
    static CURRENT: Arc<str>;
}

/// Adds the current request's id, if this task handles one, to an outgoing call.
pub fn propagate<T>(req: &mut tonic::Request<T>) {
    let _ = CURRENT.try_with(|id| {
        if let Ok(value) = id.parse() {
            req.metadata_mut().insert(HEADER, value);
        }
    });
}

/// The caller's id if usable, else a fresh one.
fn choose(presented: Option<&str>) -> Arc<str> {
    match presented {
        Some(id) if !id.is_empty() && id.len() <= MAX_LEN && id.bytes().all(|b| b.is_ascii_graphic()) => id.into(),
        _ => format!("{:016x}", rand::random::<u64>()).into(),
    }
}

/// The tower layer the gRPC server is built with (`Server::builder().layer(...)`).
#[derive(Clone)]
pub struct RequestSpans {
    /// Parent of every request span: the node's span (with its `id`), which the server's
    /// connection tasks do not inherit on their own.
    parent: tracing::Span,
}

impl RequestSpans {
    /// Request spans become children of the span current at the call (the node's).
    pub fn new() -> Self {
        Self { parent: tracing::Span::current() }
    }
}

impl<S> tower_layer::Layer<S> for RequestSpans {
    type Service = Spanned<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Spanned { inner, parent: self.parent.clone() }
    }
}

/// A service whose every call runs in its own `rpc` span (see the module doc).
#[derive(Clone)]
pub struct Spanned<S> {
    inner: S,
    parent: tracing::Span,
}

impl<S, B, R> Service<http::Request<B>> for Spanned<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let id = choose(req.headers().get(HEADER).and_then(|v| v.to_str().ok()));
        let span = tracing::info_span!(parent: &self.parent, "rpc", request_id = %id, method = %req.uri().path());
        let header = http::HeaderValue::from_str(&id).ok();
        let answer = span.in_scope(|| self.inner.call(req));
        let started = Instant::now();
        let answered = async move {
            let mut resp = answer.await?;
            tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "request answered");
            if let Some(h) = header {
                resp.headers_mut().insert(HEADER, h);
            }
            Ok(resp)
        };
        Box::pin(CURRENT.scope(id, answered.instrument(span)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usable_id_is_kept_and_anything_else_replaced() {
        assert_eq!(&*choose(Some("deploy-42")), "deploy-42");
        for bad in [None, Some(""), Some("has space"), Some("é"), Some(&*"x".repeat(MAX_LEN + 1))] {
            let id = choose(bad);
            assert_eq!(id.len(), 16, "{bad:?} -> {id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(choose(None), choose(None));
    }

    #[tokio::test]
    async fn the_current_id_travels_on_outgoing_calls() {
        let mut outside = tonic::Request::new(());
        propagate(&mut outside);
        assert!(outside.metadata().get(HEADER).is_none());
        let inside = CURRENT
            .scope("abc".into(), async {
                let mut req = tonic::Request::new(());
                propagate(&mut req);
                req
            })
            .await;
        assert_eq!(inside.metadata().get(HEADER).unwrap(), "abc");
    }
}
