//! Images as archives (`docker save` / `docker load`), and where a missing image comes from
//! when neither this engine nor a registry has it: an [`ImageSource`] the node wires to its
//! peers (see `blobs::image`), asked by [`Docker::create`](super::Docker::create) after the
//! registry (see [`super::registry`]).

use std::path::Path;
use std::sync::Arc;

use bollard::query_parameters::ImportImageOptionsBuilder;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;

use super::{Docker, RuntimeError};

type Fetch = dyn Fn(Docker, String) -> BoxFuture<'static, Result<bool, RuntimeError>> + Send + Sync;

/// Fetches an image this engine lacks from elsewhere and loads it; `Ok(false)` when nowhere
/// has it. Empty by default: a missing image stays missing.
#[derive(Clone, Default)]
pub struct ImageSource(Option<Arc<Fetch>>);

impl ImageSource {
    pub fn new(
        fetch: impl Fn(Docker, String) -> BoxFuture<'static, Result<bool, RuntimeError>> + Send + Sync + 'static,
    ) -> Self {
        ImageSource(Some(Arc::new(fetch)))
    }
}

impl std::fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "ImageSource(peers)" } else { "ImageSource(none)" })
    }
}

impl Docker {
    /// Uses `source` for images this engine lacks and no registry serves.
    pub fn with_image_source(mut self, source: ImageSource) -> Docker {
        self.source = source;
        self
    }

    /// Asks the image source for `image`; `Ok(false)` when there is none or it has nothing.
    pub(crate) async fn fetch_on_demand(&self, image: &str) -> Result<bool, RuntimeError> {
        let Some(fetch) = &self.source.0 else { return Ok(false) };
        tracing::info!(image, "image missing: fetching it from a peer");
        fetch(self.without_source(), image.to_string()).await
    }

    /// This handle without an image source (what a source loads images with).
    fn without_source(&self) -> Docker {
        Docker { source: ImageSource::default(), ..self.clone() }
    }

    /// The layer chains this engine holds: each image's layers (diff ids), bottom first. A
    /// layer is present when some chain starts with the same layers up to and including it.
    pub async fn layer_chains(&self) -> Result<Vec<Vec<String>>, RuntimeError> {
        let mut chains = Vec::new();
        for summary in self.inner.list_images(None::<bollard::query_parameters::ListImagesOptions>).await? {
            // An image removed since the list is simply not counted.
            let Ok(image) = self.inner.inspect_image(&summary.id).await else { continue };
            if let Some(layers) = image.root_fs.and_then(|r| r.layers) {
                chains.push(layers);
            }
        }
        Ok(chains)
    }

    /// Writes image `name` as `docker save` makes it into the file `path`.
    /// [`RuntimeError::ImageNotFound`] when the engine lacks it.
    pub async fn save_to(&self, name: &str, path: &Path) -> Result<u64, RuntimeError> {
        if !self.image_exists(name).await? {
            return Err(RuntimeError::ImageNotFound(name.to_string()));
        }
        let mut file = tokio::fs::File::create(path).await?;
        let mut stream = self.inner.export_image(name);
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| RuntimeError::for_image(name, e))?;
            size += chunk.len() as u64;
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok(size)
    }

    /// Loads an image archive read from `body` as it comes (as `docker load` does).
    pub async fn load_stream(
        &self,
        body: impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    ) -> Result<(), RuntimeError> {
        let options = ImportImageOptionsBuilder::new().quiet(true).build();
        let progress = self.inner.import_image_stream(options, body, None);
        let infos: Vec<_> = progress.try_collect().await.map_err(|e| RuntimeError::Engine(e.to_string()))?;
        if let Some(message) = infos.into_iter().find_map(|i| i.error_detail.and_then(|d| d.message)) {
            return Err(RuntimeError::Engine(format!("loading an image: {message}")));
        }
        Ok(())
    }
}
