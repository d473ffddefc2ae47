//! Token management in the Control service, and the Bootstrap service.

use flotilla_proto::control as pb;
use flotilla_proto::control::bootstrap_server::Bootstrap;
use flotilla_raft::{Command, Response as CatalogResponse, Token};
use tonic::{Request, Response, Status};

use super::control::ControlService;
use crate::auth;
use crate::cluster::Cluster;
use crate::error::NodeError;

fn to_pb(t: Token) -> pb::Token {
    pb::Token { id: t.id, name: t.name, created_at_ms: t.created_at_ms, revoked_at_ms: t.revoked_at_ms }
}

fn check_name(name: &str) -> Result<(), NodeError> {
    if name.is_empty() || name.len() > 63 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-@".contains(c)) {
        return Err(NodeError::invalid("name", "must be 1-63 characters of [A-Za-z0-9_.-@]"));
    }
    Ok(())
}

/// Creates a token; with a request id, the same one a retry of that request gets (see
/// [`auth::token_for_request`]), which the catalog records once.
async fn create(cluster: &Cluster, req: pb::CreateTokenRequest, first: bool) -> Result<pb::CreatedToken, Status> {
    let pb::CreateTokenRequest { name, request_id } = req;
    check_name(&name)?;
    let t = match request_id.as_str() {
        "" => auth::new_token(),
        rid if rid.len() < auth::MIN_TOKEN_REQUEST_ID => {
            return Err(NodeError::invalid(
                "request_id",
                format!(
                    "must be at least {} random characters (the secret is derived from it)",
                    auth::MIN_TOKEN_REQUEST_ID
                ),
            )
            .into())
        }
        rid => auth::token_for_request(rid),
    };
    let cmd = Command::CreateToken { id: t.id, name, hash: t.hash, first, at_ms: 0 };
    match cluster.write(cmd).await? {
        CatalogResponse::Token(token) => {
            tracing::info!(token = %token.id, name = %token.name, first, "token created");
            Ok(pb::CreatedToken { token: Some(to_pb(token)), secret: t.secret })
        }
        other => Err(Status::internal(format!("unexpected reply to create token: {other:?}"))),
    }
}

impl ControlService {
    pub(super) async fn create_token_(&self, req: pb::CreateTokenRequest) -> Result<pb::CreatedToken, Status> {
        create(&self.cluster, req, false).await
    }

    pub(super) async fn list_tokens_(&self) -> Result<pb::ListTokensReply, Status> {
        self.cluster.linearizable().await?;
        let tokens = self.cluster.view.read(|c| c.tokens.values().cloned().map(to_pb).collect());
        Ok(pb::ListTokensReply { tokens })
    }

    pub(super) async fn revoke_token_(&self, req: pb::RevokeTokenRequest) -> Result<pb::Token, Status> {
        if req.id.is_empty() {
            return Err(NodeError::invalid("id", "is required").into());
        }
        let cmd = if req.force {
            Command::RevokeToken { id: req.id, at_ms: 0 }
        } else {
            Command::RevokeTokenUnlessLast { id: req.id, at_ms: 0 }
        };
        match self.cluster.write(cmd).await? {
            CatalogResponse::Token(t) => Ok(to_pb(t)),
            other => Err(Status::internal(format!("unexpected reply to revoke: {other:?}"))),
        }
    }
}

/// Serves `Bootstrap.BootstrapToken`, the one unauthenticated call.
pub struct BootstrapService {
    pub cluster: Cluster,
}

#[tonic::async_trait]
impl Bootstrap for BootstrapService {
    async fn bootstrap_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreatedToken>, Status> {
        Ok(Response::new(create(&self.cluster, req.into_inner(), true).await?))
    }
}
