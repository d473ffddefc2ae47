//! API tokens: bootstrap the first, create more, list, revoke.

use flotilla_proto::control as pb;
use flotilla_proto::control::bootstrap_client::BootstrapClient;
use serde::Serialize;

use crate::client::Client;
use crate::error::{Error, Result};

/// A token as the cluster records it (never with its secret).
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// A token just created: the only time its secret is available.
#[derive(Debug, Clone, Serialize)]
pub struct NewToken {
    pub token: TokenInfo,
    /// The bearer string (`flt_…`) to pass as `ClientOptions::token` / `--token`.
    pub secret: String,
}

impl From<pb::Token> for TokenInfo {
    fn from(t: pb::Token) -> Self {
        TokenInfo { id: t.id, name: t.name, created_at_ms: t.created_at_ms, revoked_at_ms: t.revoked_at_ms }
    }
}

fn created(c: pb::CreatedToken) -> Result<NewToken> {
    let token = c.token.ok_or_else(|| Error::Internal("reply without a token".into()))?.into();
    Ok(NewToken { token, secret: c.secret })
}

/// A fresh request id for a token create: 256 random bits in hex. The retries of one call
/// share it, so they make one token, whose secret the server derives from it.
fn token_request_id() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

impl Client {
    /// Creates the cluster's first token. Needs no token, and is refused once any exists.
    pub async fn bootstrap_token(&self, name: &str) -> Result<NewToken> {
        let req = pb::CreateTokenRequest { name: name.to_string(), request_id: token_request_id() };
        // Like every call, retried over the endpoints while the cluster is still electing.
        self.on_endpoints(|channel| {
            let req = req.clone();
            async move { created(BootstrapClient::new(channel).bootstrap_token(req).await?.into_inner()) }
        })
        .await
    }

    /// Creates another token.
    pub async fn create_token(&self, name: &str) -> Result<NewToken> {
        let req = pb::CreateTokenRequest { name: name.to_string(), request_id: token_request_id() };
        created(
            self.control(|mut c| {
                let req = req.clone();
                async move { c.create_token(req).await }
            })
            .await?,
        )
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        let reply = self.control(|mut c| async move { c.list_tokens(pb::ListTokensRequest {}).await }).await?;
        Ok(reply.tokens.into_iter().map(Into::into).collect())
    }

    /// Revokes a token; every node refuses it once it has applied the revocation. The last
    /// token not revoked is refused (`FailedPrecondition`): see [`Self::revoke_token_forced`].
    pub async fn revoke_token(&self, id: &str) -> Result<TokenInfo> {
        self.revoke(id, false).await
    }

    /// [`Self::revoke_token`], even for the last token not revoked. Every client is then
    /// locked out until an operator restarts a node with `--no-auth` (docs/security.md).
    pub async fn revoke_token_forced(&self, id: &str) -> Result<TokenInfo> {
        self.revoke(id, true).await
    }

    async fn revoke(&self, id: &str, force: bool) -> Result<TokenInfo> {
        let req = pb::RevokeTokenRequest { id: id.to_string(), force };
        self.control(|mut c| {
            let req = req.clone();
            async move { c.revoke_token(req).await }
        })
        .await
        .map(Into::into)
    }
}
