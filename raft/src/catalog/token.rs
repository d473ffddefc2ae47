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
        assert!(matches!(c.apply(create("t2", false)), Response::Rejected(Rejection::Invalid { .. })));
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
}
