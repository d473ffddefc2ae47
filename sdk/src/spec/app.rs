//! The whole app: its name and its functions, plus the TOML entry points.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{from_serde, invalid, join, SpecError};
use super::raw::RawApp;
use super::{names, FunctionSpec};

/// An app as deployed with `flotilla app deploy app.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSpec {
    /// App name: 1-63 characters of `[a-z0-9-]`, starting with a letter or digit.
    pub name: String,
    /// Functions by name (1-63 characters of `[a-z0-9_-]`, starting with a
    /// letter or digit); at least one.
    pub functions: BTreeMap<String, FunctionSpec>,
}

impl AppSpec {
    /// Parses and validates the text of an `app.toml`.
    pub fn from_toml_str(text: &str) -> Result<AppSpec, SpecError> {
        let deserializer = toml::Deserializer::parse(text).map_err(|e| SpecError::Syntax(e.to_string()))?;
        let raw: RawApp = serde_path_to_error::deserialize(deserializer).map_err(from_serde)?;
        let spec = raw.into_spec()?;
        spec.validate()?;
        Ok(spec)
    }

    /// Reads, parses and validates an `app.toml` file.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<AppSpec, SpecError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| SpecError::Io { path: path.display().to_string(), source })?;
        let mut spec = AppSpec::from_toml_str(&text)?;
        // A build context is relative to the spec file's folder, wherever it is deployed from.
        let folder = path.parent().unwrap_or(Path::new(""));
        for build in spec.functions.values_mut().filter_map(|f| f.build.as_mut()) {
            build.context = folder.join(&build.context).display().to_string();
        }
        Ok(spec)
    }

    /// Checks every rule. Call it on specs that did not come from
    /// `from_toml_*` (e.g. decoded from JSON or built in code). The first
    /// problem found is returned, in field order, functions by name.
    pub fn validate(&self) -> Result<(), SpecError> {
        names::check_app_name(&self.name).map_err(|m| invalid("name", m))?;
        if self.functions.is_empty() {
            return Err(invalid("functions", "at least one function is required"));
        }
        for (name, function) in &self.functions {
            let path = join("functions", name);
            names::check_function_name(name).map_err(|m| invalid(&path, m))?;
            function.validate(&path)?;
        }
        Ok(())
    }
}
