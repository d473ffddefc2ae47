//! API tokens. The catalog keeps a token's id, name and the SHA-256 of its secret, never the
//! secret itself; the node that created the token showed the secret once to its caller.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{Rejection, Response};

/// A client API token as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    /// Public part of the token (`flt_<id>_<secret>`), used to find the record.
    pub id: String,
    /// Who or what the token is for.
    pub name: String,
    /// Hex SHA-256 of the whole bearer string.
    pub hash: String,
    /// Unix ms, leader clock.
    pub created_at_ms: i64,
    /// Set once revoked; a revoked token is refused on every node as soon as this entry is
    /// applied there.
    pub revoked_at_ms: Option<i64>,
}

pub(super) fn create(
    tokens: &mut BTreeMap<String, Token>,
    id: String,
    name: String,
    hash: String,
    first: bool,
    at_ms: i64,
) -> Response {
    // A retried request (its token's id and secret are derived from the request id, see the
    // node's `auth::token_for_request`) gets the token it made the first time.
    if let Some(existing) = tokens.get(&id).filter(|t| t.hash == hash && t.name == name) {
        return Response::Token(existing.clone());
    }
    if first && !tokens.is_empty() {
        return Response::Rejected(Rejection::Conflict(
            "the cluster already has tokens; create more with an existing token".into(),
        ));
    }
    if id.is_empty() || hash.len() != 64 || tokens.contains_key(&id) {
        return Response::Rejected(Rejection::Invalid {
            field: "id".into(),
            message: "empty, taken, or bad hash".into(),
        });
    }
    let token = Token { id: id.clone(), name, hash, created_at_ms: at_ms, revoked_at_ms: None };
    tokens.insert(id, token.clone());
    Response::Token(token)
}

pub(super) fn revoke(tokens: &mut BTreeMap<String, Token>, id: &str, at_ms: i64) -> Response {
    match tokens.get_mut(id) {
        None => Response::Rejected(Rejection::TokenNotFound(id.to_string())),
        Some(t) => {
            t.revoked_at_ms.get_or_insert(at_ms);
            Response::Token(t.clone())
        }
    }
}

/// [`revoke`], refused when `id` is the last token not yet revoked.
pub(super) fn revoke_unless_last(tokens: &mut BTreeMap<String, Token>, id: &str, at_ms: i64) -> Response {
    let live = |t: &Token| t.revoked_at_ms.is_none();
    if tokens.get(id).is_some_and(live) && tokens.values().filter(|t| live(t)).count() == 1 {
        return Response::Rejected(Rejection::Precondition(format!(
            "token {id} is the last token not revoked: revoking it locks every client out of the cluster \
             for good; create another token first, or pass --force"
        )));
    }
    revoke(tokens, id, at_ms)
}

#[cfg(test)]
mod tests {
    use crate::{Catalog, Command, Rejection, Response};

    fn create(id: &str, first: bool) -> Command {
        Command::CreateToken { id: id.into(), name: "ci".into(), hash: "a".repeat(64), first, at_ms: 5 }
    }

    #[test]
    fn bootstrap_only_into_an_empty_table() {
        let mut c = Catalog::default();
        assert!(matches!(c.apply(create("t1", true)), Response::Token(_)));
        assert!(matches!(c.apply(create("t2", true)), Response::Rejected(Rejection::Conflict(_))));
        assert!(matches!(c.apply(create("t2", false)), Response::Token(_)));
        // The same id with another secret is taken (the same id and secret is a retry).
        let taken =
            Command::CreateToken { id: "t2".into(), name: "ci".into(), hash: "b".repeat(64), first: false, at_ms: 5 };
        assert!(matches!(c.apply(taken), Response::Rejected(Rejection::Invalid { .. })));
    }

    #[test]
    fn a_retried_create_gets_the_token_it_made() {
        let mut c = Catalog::default();
        let Response::Token(first) = c.apply(create("t1", true)) else { panic!() };
        // The same request again (same derived id and hash), bootstrap or not: the same token.
        for is_first in [true, false] {
            let Response::Token(again) = c.apply(create("t1", is_first)) else { panic!() };
            assert_eq!(again, first);
        }
        assert_eq!(c.tokens.len(), 1);
        // The same id with another secret is still refused.
        let other =
            Command::CreateToken { id: "t1".into(), name: "ci".into(), hash: "b".repeat(64), first: false, at_ms: 6 };
        assert!(matches!(c.apply(other), Response::Rejected(Rejection::Invalid { .. })));
    }

    #[test]
    fn revoke_keeps_the_first_revocation_time() {
        let mut c = Catalog::default();
        c.apply(create("t1", true));
        c.apply(Command::RevokeToken { id: "t1".into(), at_ms: 10 });
        let Response::Token(t) = c.apply(Command::RevokeToken { id: "t1".into(), at_ms: 20 }) else { panic!() };
        assert_eq!(t.revoked_at_ms, Some(10));
        assert!(matches!(
            c.apply(Command::RevokeToken { id: "x".into(), at_ms: 1 }),
            Response::Rejected(Rejection::TokenNotFound(_))
        ));
    }

    #[test]
    fn the_last_live_token_is_revoked_only_when_forced() {
        let mut c = Catalog::default();
        c.apply(create("t1", true));
        let unless_last = |id: &str| Command::RevokeTokenUnlessLast { id: id.into(), at_ms: 10 };
        let Response::Rejected(Rejection::Precondition(why)) = c.apply(unless_last("t1")) else { panic!() };
        assert!(why.contains("last token") && why.contains("--force"), "{why}");
        assert_eq!(c.tokens["t1"].revoked_at_ms, None);
        // With a second token the first may go; then the second is the last one.
        c.apply(create("t2", false));
        assert!(matches!(c.apply(unless_last("t1")), Response::Token(_)));
        assert!(matches!(c.apply(unless_last("t2")), Response::Rejected(Rejection::Precondition(_))));
        // Revoking an already revoked token again is not a lock-out; unknown ids stay unknown.
        assert!(matches!(c.apply(unless_last("t1")), Response::Token(_)));
        assert!(matches!(c.apply(unless_last("x")), Response::Rejected(Rejection::TokenNotFound(_))));
        // The forced form revokes the last one.
        let Response::Token(t) = c.apply(Command::RevokeToken { id: "t2".into(), at_ms: 11 }) else { panic!() };
        assert_eq!(t.revoked_at_ms, Some(11));
    }
}
