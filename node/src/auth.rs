//! Client authentication with bearer tokens.
//!
//! A token reads `flt_<id>_<secret>`: `id` (16 hex digits) finds the record in the catalog,
//! which holds the SHA-256 of the whole string; the secret (32 random bytes, hex) exists only
//! in the reply that created the token. Every Control and Worker call must carry
//! `authorization: Bearer <token>` when auth is on; each node checks it against its own
//! applied catalog, so a revocation takes effect on a node as soon as that node applies it
//! (well under a second on a healthy cluster). A token the node has not applied yet makes it
//! catch up with the leader first (see [`check`]), so a new token works everywhere at once. The only unauthenticated call is the
//! `Bootstrap` service's, which works only while the cluster has no token at all.

use flotilla_raft::network::constant_time_eq;
use flotilla_raft::store::CatalogView;
use sha2::{Digest, Sha256};
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::server::NamedService;
use tonic::Status;

use crate::cluster::Cluster;

/// Metadata key of the bearer token.
pub const AUTHORIZATION: &str = "authorization";

/// A freshly made token: its id, the bearer string to hand out once, and the hash to store.
pub struct NewToken {
    pub id: String,
    pub secret: String,
    pub hash: String,
}

/// Makes a new random token.
pub fn new_token() -> NewToken {
    let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    let random: [u8; 32] = rand::random();
    let secret = format!("flt_{id}_{}", hex::encode(random));
    let hash = hash(&secret);
    NewToken { id, secret, hash }
}

/// Shortest request id [`token_for_request`] accepts: 32 characters. The token's secret is
/// derived from it, so it must carry at least as much randomness as a guess should need.
pub const MIN_TOKEN_REQUEST_ID: usize = 32;

/// The token a create request with this `request_id` makes: id and secret are derived from
/// the request id (SHA-256 under two labels), so a retry of the same request, on any node,
/// makes the same token and the catalog records it once. The request id is as secret as the
/// token; the caller draws it at random (see [`MIN_TOKEN_REQUEST_ID`]) and sends it only in
/// the create call. Nothing logs or stores it.
pub fn token_for_request(request_id: &str) -> NewToken {
    let derive = |label: &str| hex::encode(Sha256::digest(format!("flotilla-token-{label}\0{request_id}").as_bytes()));
    let id = derive("id")[..16].to_string();
    let secret = format!("flt_{id}_{}", derive("secret"));
    let hash = hash(&secret);
    NewToken { id, secret, hash }
}

/// Hex SHA-256 of a bearer string.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// What the local catalog says about a presented bearer string.
enum Verdict {
    Accepted,
    /// Refused for good: no token, a malformed one, a wrong secret, or a revoked token.
    Refused(Status),
    /// A well-formed token whose id this node has not applied (yet).
    Unknown,
}

fn verdict(view: &CatalogView, presented: Option<&str>) -> Verdict {
    let Some(bearer) = presented.and_then(|h| h.strip_prefix("Bearer ")) else {
        return Verdict::Refused(Status::unauthenticated(
            "missing token: pass --token or FLOTILLA_TOKEN (authorization: Bearer …)",
        ));
    };
    let id = bearer.strip_prefix("flt_").and_then(|rest| rest.split_once('_')).map(|(id, _)| id).unwrap_or("");
    let digest = hash(bearer);
    let found = view.read(|c| {
        c.tokens.get(id).map(|t| t.revoked_at_ms.is_none() && constant_time_eq(t.hash.as_bytes(), digest.as_bytes()))
    });
    match found {
        Some(true) => Verdict::Accepted,
        None if !id.is_empty() => Verdict::Unknown,
        _ => Verdict::Refused(invalid()),
    }
}

fn invalid() -> Status {
    Status::unauthenticated("invalid or revoked token")
}

/// Checks a presented bearer string. A token this node has not heard of may have been created
/// a moment ago and acknowledged by the leader before this node applied it: the node then
/// catches up to the leader's commit (a linearizable read) and looks again, so a token the
/// cluster acknowledged works on every node at once. Revocations need no catch-up: they only
/// ever take effect later, never earlier, than the leader acknowledged them.
pub async fn check(cluster: &Cluster, presented: Option<&str>) -> Result<(), Status> {
    match verdict(&cluster.view, presented) {
        Verdict::Accepted => Ok(()),
        Verdict::Refused(status) => Err(status),
        Verdict::Unknown => {
            if let Err(e) = cluster.linearizable().await {
                tracing::debug!(error = %e, "could not catch up to check an unknown token");
                return Err(invalid());
            }
            match verdict(&cluster.view, presented) {
                Verdict::Accepted => Ok(()),
                Verdict::Refused(status) => Err(status),
                Verdict::Unknown => Err(invalid()),
            }
        }
    }
}

/// Wraps an authenticated gRPC service (Control, Worker): every call must carry a token that
/// [`check`] accepts. With `enabled` false every call passes. A tonic interceptor cannot wait,
/// and the catch-up for an unknown token does, hence a service wrapper.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    cluster: Cluster,
    enabled: bool,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, cluster: Cluster, enabled: bool) -> Self {
        Self { inner, cluster, enabled }
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Guarded<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The clone that was made ready serves this call; the fresh one stays for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !self.enabled {
            return Box::pin(inner.call(req));
        }
        let cluster = self.cluster.clone();
        Box::pin(async move {
            let presented = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
            match check(&cluster, presented).await {
                Ok(()) => inner.call(req).await,
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hash_to_their_record() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(&format!("flt_{}_", a.id)));
        assert_eq!(hash(&a.secret), a.hash);
        assert_eq!(a.hash.len(), 64);
    }
}
