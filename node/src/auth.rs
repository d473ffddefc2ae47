//! Client authentication with bearer tokens.
//!
//! A token reads `flt_<id>_<secret>`: `id` (16 hex digits) finds the record in the catalog,
//! which holds the SHA-256 of the whole string; the secret (32 random bytes, hex) exists only
//! in the reply that created the token. Every Control and Worker call must carry
//! `authorization: Bearer <token>` when auth is on; each node checks it against its own
//! applied catalog, so a revocation takes effect on a node as soon as that node applies it
//! (well under a second on a healthy cluster). The only unauthenticated call is the
//! `Bootstrap` service's, which works only while the cluster has no token at all.

use flotilla_raft::network::constant_time_eq;
use flotilla_raft::store::CatalogView;
use sha2::{Digest, Sha256};
use tonic::{Request, Status};

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

/// Hex SHA-256 of a bearer string.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Checks a presented bearer string against the catalog.
pub fn check(view: &CatalogView, presented: Option<&str>) -> Result<(), Status> {
    let Some(bearer) = presented.and_then(|h| h.strip_prefix("Bearer ")) else {
        return Err(Status::unauthenticated("missing token: pass --token or FLOTILLA_TOKEN (authorization: Bearer …)"));
    };
    let id = bearer.strip_prefix("flt_").and_then(|rest| rest.split_once('_')).map(|(id, _)| id).unwrap_or("");
    let digest = hash(bearer);
    let ok = view.read(|c| {
        c.tokens
            .get(id)
            .is_some_and(|t| t.revoked_at_ms.is_none() && constant_time_eq(t.hash.as_bytes(), digest.as_bytes()))
    });
    if ok {
        Ok(())
    } else {
        Err(Status::unauthenticated("invalid or revoked token"))
    }
}

/// The interceptor for authenticated services; with `enabled` false every call passes.
pub fn interceptor(view: CatalogView, enabled: bool) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        if enabled {
            check(&view, req.metadata().get(AUTHORIZATION).and_then(|v| v.to_str().ok()))?;
        }
        Ok(req)
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
