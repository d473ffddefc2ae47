//! Registry logins: the username and password a node presents when it pulls an image from a
//! private registry. Stored in the catalog so every node (including one that joins later) can
//! pull; the password never leaves the nodes: no read API returns it, and [`Password`]'s
//! `Debug` prints a placeholder, so neither logs nor debug dumps of commands show it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{Rejection, Response};

/// A registry password. Serialized as a plain string (it is replicated like any record);
/// `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The login used for pulls from one registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryLogin {
    /// `host[:port]` of the registry, as the image references name it.
    pub registry: String,
    pub username: String,
    pub password: Password,
    /// Unix ms, leader clock.
    pub updated_at_ms: i64,
}

/// Records (or replaces) the login for `registry`. Answers with no record: the reply must
/// not carry the password back.
pub(super) fn login(
    logins: &mut BTreeMap<String, RegistryLogin>,
    registry: String,
    username: String,
    password: Password,
    at_ms: i64,
) -> Response {
    if registry.is_empty() || username.is_empty() {
        return Response::Rejected(Rejection::Invalid {
            field: if registry.is_empty() { "registry" } else { "username" }.into(),
            message: "must not be empty".into(),
        });
    }
    logins.insert(registry.clone(), RegistryLogin { registry, username, password, updated_at_ms: at_ms });
    Response::Empty
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_replaces_the_previous_one_and_debug_hides_the_password() {
        let mut logins = BTreeMap::new();
        let pw = |s: &str| Password(s.into());
        assert_eq!(login(&mut logins, "r:5000".into(), "a".into(), pw("one"), 1), Response::Empty);
        assert_eq!(login(&mut logins, "r:5000".into(), "b".into(), pw("two"), 2), Response::Empty);
        assert_eq!(logins["r:5000"].username, "b");
        assert_eq!(logins["r:5000"].password, pw("two"));
        assert!(!format!("{:?}", logins).contains("two"));
        let empty = login(&mut logins, String::new(), "a".into(), pw("x"), 3);
        assert!(matches!(empty, Response::Rejected(Rejection::Invalid { field, .. }) if field == "registry"));
    }
}
