//! What handing a pre-started container to a sandbox needs from the engine: a container's
//! name is the one identity that can change after creation (labels cannot), so a pooled
//! container becomes a sandbox's by being renamed.

use std::collections::{BTreeMap, HashMap};

use bollard::query_parameters::{ListContainersOptionsBuilder, RenameContainerOptionsBuilder};

use super::{Docker, RuntimeError};

/// A container as listed: id, name (without the leading `/`) and labels.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl Docker {
    /// Renames container `id` to `name`.
    pub async fn rename(&self, id: &str, name: &str) -> Result<(), RuntimeError> {
        let options = RenameContainerOptionsBuilder::new().name(name).build();
        self.inner.rename_container(id, options).await.map_err(|e| RuntimeError::for_container(id, e))
    }

    /// Containers (running or not) carrying `label`, with their names.
    pub async fn list_named(&self, label: &str) -> Result<Vec<Listed>, RuntimeError> {
        let filters = HashMap::from([("label", vec![label])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let containers = self.inner.list_containers(Some(options)).await?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                let name = c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default();
                let labels = c.labels.unwrap_or_default().into_iter().collect();
                c.id.map(|id| Listed { id, name, labels })
            })
            .collect())
    }
}
