//! Apps: deploy, list, show, stop, remove.

use flotilla_proto::control as pb;
use serde::Serialize;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::spec::AppSpec;

/// A deployed app as the cluster records it.
#[derive(Debug, Clone, Serialize)]
pub struct AppInfo {
    pub name: String,
    /// 1 for the first deploy, +1 for each redeploy.
    pub version: u64,
    /// `deployed` or `stopped`.
    pub state: String,
    pub functions: Vec<String>,
    /// The spec as validated and stored.
    pub spec: AppSpec,
    /// First deploy, Unix milliseconds.
    pub deployed_at_ms: i64,
    /// Last deploy or stop, Unix milliseconds.
    pub updated_at_ms: i64,
}

impl TryFrom<pb::App> for AppInfo {
    type Error = Error;

    fn try_from(a: pb::App) -> Result<Self> {
        let spec = serde_json::from_str(&a.spec_json)
            .map_err(|e| Error::Internal(format!("app {}: stored spec does not parse: {e}", a.name)))?;
        Ok(AppInfo {
            name: a.name,
            version: a.version,
            state: a.state,
            functions: a.functions,
            spec,
            deployed_at_ms: a.deployed_at_ms,
            updated_at_ms: a.updated_at_ms,
        })
    }
}

/// A blob stored in the cluster by [`Client::put_blob`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredBlob {
    /// Hex sha256 of the blob: what a function's `code` names.
    pub sha256: String,
    pub size: u64,
    /// The nodes holding a copy.
    pub nodes: Vec<u64>,
}

impl Client {
    /// Stores `data` (a tar archive, at most 64 MiB) in the cluster's blob store, copied to
    /// several nodes before it answers, for a function's `code` in an app spec. A blob no
    /// deployed spec names is collected after a while (the blob store's grace period).
    pub async fn put_blob(&self, data: &[u8]) -> Result<StoredBlob> {
        const CHUNK: usize = 1 << 20;
        let chunks: Vec<pb::BlobUpload> = data.chunks(CHUNK).map(|c| pb::BlobUpload { data: c.to_vec() }).collect();
        let reply = self
            .control(|mut c| {
                let chunks = chunks.clone();
                async move { c.put_blob(futures::stream::iter(chunks)).await }
            })
            .await?;
        Ok(StoredBlob { sha256: reply.sha256, size: reply.size, nodes: reply.nodes })
    }

    /// Deploys `spec`, creating the app or replacing it atomically with a new version.
    /// A retry after a lost reply is applied once (the request carries a fresh id); when the
    /// first attempt was applied, the answer is the app as it is then, which another deploy
    /// may have replaced since.
    ///
    /// Functions declared `image = { dockerfile, context }` are built first (see
    /// [`Client::build_app_images`]).
    pub async fn deploy(&self, mut spec: AppSpec) -> Result<AppInfo> {
        spec.validate()?;
        self.build_app_images(&mut spec, |line| tracing::debug!("build: {line}")).await?;
        let spec_json = serde_json::to_string(&spec).map_err(|e| Error::Internal(format!("encode spec: {e}")))?;
        let req = pb::DeployAppRequest { spec_json, request_id: uuid::Uuid::new_v4().to_string() };
        let reply = self
            .control(|mut c| {
                let req = req.clone();
                async move { c.deploy_app(req).await }
            })
            .await?;
        reply.app.ok_or_else(|| Error::Internal("deploy reply without an app".into()))?.try_into()
    }

    /// All apps, deployed and stopped, by name.
    pub async fn list_apps(&self) -> Result<Vec<AppInfo>> {
        let reply = self.control(|mut c| async move { c.list_apps(pb::ListAppsRequest {}).await }).await?;
        reply.apps.into_iter().map(TryInto::try_into).collect()
    }

    /// One app by name.
    pub async fn app(&self, name: &str) -> Result<AppInfo> {
        let req = pb::GetAppRequest { name: name.to_string() };
        self.control(|mut c| {
            let req = req.clone();
            async move { c.get_app(req).await }
        })
        .await?
        .try_into()
    }

    /// Stops and removes an app: its schedules go with it, and every node removes its
    /// replicas' containers. Its final calls stay until retention. Answers with the app as
    /// it was; the name is then free (a new deploy starts at version 1).
    pub async fn remove_app(&self, name: &str) -> Result<AppInfo> {
        let req = pb::RemoveAppRequest { name: name.to_string() };
        self.control(|mut c| {
            let req = req.clone();
            async move { c.remove_app(req).await }
        })
        .await?
        .try_into()
    }

    /// Stops an app; it stays listed as `stopped` until redeployed (which runs it again).
    pub async fn stop_app(&self, name: &str) -> Result<AppInfo> {
        let req = pb::StopAppRequest { name: name.to_string() };
        self.control(|mut c| {
            let req = req.clone();
            async move { c.stop_app(req).await }
        })
        .await?
        .try_into()
    }
}
