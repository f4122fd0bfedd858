//! Layers of one's own in [`SequentialConfig`](super::SequentialConfig)s and model files. A
//! config type that implements [`RegisteredLayer`] (its `type` name in model files) goes into a
//! `SequentialConfig` like a built-in one (`.add(ScaleConfig { .. })`), serializes with its
//! `type`, and once registered ([`register_layer`]) is read from model files by that name, as the
//! built-in layers are: one table of `type` names serves both.
//!
//! ```
//! use kiln_graph::layers::{register_layer, RegisteredLayer};
//! use kiln_graph::{Layer, LayerSpec, ParamBuilder, ParamStore, Result, SequentialConfig, Signature, Tape, Var};
//! use serde::{Deserialize, Serialize};
//!
//! /// y = x * factor.
//! #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! struct ScaleConfig {
//!     factor: f32,
//! }
//!
//! struct Scale {
//!     factor: f32,
//!     shape: Vec<usize>,
//! }
//!
//! impl Layer for Scale {
//!     fn kind(&self) -> &'static str {
//!         "Scale"
//!     }
//!     fn output_shape(&self) -> &[usize] {
//!         &self.shape
//!     }
//!     fn forward(&self, tape: &Tape, _params: &ParamStore, x: &Var) -> Result<Var> {
//!         tape.mul_scalar(x, self.factor)
//!     }
//! }
//!
//! impl LayerSpec for ScaleConfig {
//!     fn name_stem(&self) -> &'static str {
//!         "scale"
//!     }
//!     fn build(&self, _pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
//!         let layer = Scale { factor: self.factor, shape: input.shape.clone() };
//!         Ok((Box::new(layer), input.clone()))
//!     }
//! }
//!
//! impl RegisteredLayer for ScaleConfig {
//!     const TYPE: &'static str = "scale";
//! }
//!
//! register_layer::<ScaleConfig>()?;
//! let model: SequentialConfig =
//!     serde_json::from_str(r#"{"input": [3], "layers": [{"type": "scale", "factor": 2.0}]}"#)?;
//! assert_eq!(model, SequentialConfig::new(&[3]).add(ScaleConfig { factor: 2.0 }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{bad, LayerConfig, LayerSpec, Signature};
use crate::Result;

/// A layer config of one's own that model files can name: `TYPE` is its `type` (snake_case,
/// not a built-in layer's). Its serde form is the rest of the layer's JSON object.
pub trait RegisteredLayer:
    LayerSpec + Serialize + DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static
{
    /// Its `type` in model files.
    const TYPE: &'static str;

    /// A valid config and a per-sample input it builds on, if it has one (the built-in layers
    /// all do, for their registry tests); listed by [`LayerConfig::examples`].
    fn example() -> Option<(Self, Signature)> {
        None
    }
}

/// What [`CustomLayerConfig`] needs of a [`RegisteredLayer`], object-safe.
trait ErasedLayer: Send + Sync {
    fn spec(&self) -> &dyn LayerSpec;
    fn type_name(&self) -> &'static str;
    fn to_json(&self) -> Value;
    fn as_any(&self) -> &dyn Any;
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

impl<C: RegisteredLayer> ErasedLayer for C {
    fn spec(&self) -> &dyn LayerSpec {
        self
    }

    fn type_name(&self) -> &'static str {
        C::TYPE
    }

    fn to_json(&self) -> Value {
        let mut map = match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            // A config without fields (a unit struct) is its type alone.
            _ => serde_json::Map::new(),
        };
        map.insert("type".into(), Value::String(C::TYPE.into()));
        Value::Object(map)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A [`RegisteredLayer`] config inside a [`LayerConfig`] (its `Custom` variant). Cheap to clone.
#[derive(Clone)]
pub struct CustomLayerConfig(Arc<dyn ErasedLayer>);

impl CustomLayerConfig {
    /// Wraps `config`.
    pub fn new<C: RegisteredLayer>(config: C) -> Self {
        CustomLayerConfig(Arc::new(config))
    }

    /// Its `type` in model files.
    pub fn type_name(&self) -> &'static str {
        self.0.type_name()
    }

    /// The config as built by its type's [`LayerSpec`].
    pub fn spec(&self) -> &dyn LayerSpec {
        self.0.spec()
    }

    /// The config, if it is a `C`.
    pub fn downcast_ref<C: RegisteredLayer>(&self) -> Option<&C> {
        self.0.as_any().downcast_ref()
    }

    /// Its JSON object in a model file, `type` included.
    pub fn to_json(&self) -> Value {
        self.0.to_json()
    }
}

impl fmt::Debug for CustomLayerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug(f)
    }
}

impl PartialEq for CustomLayerConfig {
    fn eq(&self, other: &Self) -> bool {
        self.type_name() == other.type_name() && self.to_json() == other.to_json()
    }
}

impl<C: RegisteredLayer> From<C> for LayerConfig {
    fn from(config: C) -> Self {
        LayerConfig::Custom(CustomLayerConfig::new(config))
    }
}

/// One registered type: its name, its Rust type, how to read it and its example.
struct Entry {
    type_name: &'static str,
    type_id: TypeId,
    parse: fn(Value) -> std::result::Result<CustomLayerConfig, serde_json::Error>,
    example: fn() -> Option<(LayerConfig, Signature)>,
}

static REGISTRY: RwLock<Vec<Entry>> = RwLock::new(Vec::new());

fn parse<C: RegisteredLayer>(
    mut value: Value,
) -> std::result::Result<CustomLayerConfig, serde_json::Error> {
    if let Value::Object(map) = &mut value {
        map.remove("type");
    }
    Ok(CustomLayerConfig::new(serde_json::from_value::<C>(value)?))
}

fn example<C: RegisteredLayer>() -> Option<(LayerConfig, Signature)> {
    C::example().map(|(c, input)| (c.into(), input))
}

/// Lets model files name `C` by its `type` ([`RegisteredLayer::TYPE`]), in this process, from
/// then on. Registering the same type again does nothing; a name that a built-in layer or another
/// type holds, or that is not snake_case, is refused.
pub fn register_layer<C: RegisteredLayer>() -> Result<()> {
    let name = C::TYPE;
    let what = format!("layer type `{name}`");
    let snake = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !snake {
        return Err(bad(
            &what,
            "is not a snake_case name (lower-case letters, digits and _, starting with a letter)",
        ));
    }
    if LayerConfig::builtin_types().iter().any(|t| t == name) {
        return Err(bad(&what, "is a built-in layer's; give yours another name"));
    }
    let mut registry = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    match registry.iter().find(|e| e.type_name == name) {
        Some(e) if e.type_id == TypeId::of::<C>() => Ok(()),
        Some(_) => Err(bad(
            &what,
            "is registered already, for another config type; give yours another name",
        )),
        None => {
            registry.push(Entry {
                type_name: name,
                type_id: TypeId::of::<C>(),
                parse: parse::<C>,
                example: example::<C>,
            });
            Ok(())
        }
    }
}

/// The registered types' names, in the order registered.
pub(crate) fn registered_types() -> Vec<String> {
    let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    registry.iter().map(|e| e.type_name.to_string()).collect()
}

/// The examples of the registered types that have one.
pub(crate) fn registered_examples() -> Vec<(LayerConfig, Signature)> {
    let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    registry.iter().filter_map(|e| (e.example)()).collect()
}

/// Reads a registered type's config from its JSON object; None when `type_name` is not
/// registered.
pub(crate) fn parse_registered(
    type_name: &str,
    value: Value,
) -> Option<std::result::Result<CustomLayerConfig, serde_json::Error>> {
    let parse = {
        let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
        registry.iter().find(|e| e.type_name == type_name)?.parse
    };
    Some(parse(value))
}
