//! Saved models: weights by name plus the config that rebuilds the model.

use std::path::Path;

use kiln_graph::checkpoint::Checkpoint;
use kiln_graph::{Model, ParamStore};

use crate::{Error, Result};

/// Writes a model: its weights by name plus, when the model describes itself, the config that
/// rebuilds it (`model_config`), and `extra` metadata.
pub fn save_model(
    path: &Path,
    model: &dyn Model,
    params: &ParamStore,
    extra: &[(String, String)],
) -> Result<()> {
    let mut metadata = extra.to_vec();
    if let Some(c) = model.config_json() {
        metadata.push(("model_config".into(), c));
    }
    Ok(params.save_weights(path, &metadata)?)
}

/// Reads a saved model's config (to rebuild it: any type the config deserializes into) and its
/// weights.
pub fn load_model<C: serde::de::DeserializeOwned>(path: &Path) -> Result<(C, Checkpoint)> {
    let ck = Checkpoint::load(path)?;
    let cfg = ck.meta("model_config").ok_or_else(|| Error::Checkpoint {
        path: path.into(),
        message: "no model_config in metadata: build the model in code and load its weights with ParamStore::load_weights".into(),
    })?;
    let cfg = serde_json::from_str(cfg).map_err(|e| Error::Checkpoint {
        path: path.into(),
        message: format!("model_config: {e}"),
    })?;
    Ok((cfg, ck))
}
