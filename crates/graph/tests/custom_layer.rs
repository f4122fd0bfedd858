//! A layer of one's own, written outside kiln's crates as a user writes one: in a
//! `SequentialConfig` without registering, in model files once registered (by its `type`, as
//! the built-in layers), in summaries, with gradients checked by finite differences; and the
//! registry's refusals. (Its own test binary: registration is per process.)

use kiln_device::testing::{random_f32, Tolerance};
use kiln_device::Device;
use kiln_graph::layers::{register_layer, CustomLayerConfig, DenseConfig, RegisteredLayer};
use kiln_graph::*;
use serde::{Deserialize, Serialize};

/// y = x * scale + shift, one learned scale per feature of the last axis (shift fixed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelScaleConfig {
    #[serde(default)]
    shift: f32,
}

struct ChannelScale {
    scale: ParamId,
    shift: f32,
    shape: Vec<usize>,
}

impl Layer for ChannelScale {
    fn kind(&self) -> &'static str {
        "ChannelScale"
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn params(&self) -> Vec<ParamId> {
        vec![self.scale]
    }

    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var> {
        let scaled = tape.mul(x, &tape.param(params, self.scale))?;
        tape.add_scalar(&scaled, self.shift)
    }
}

impl LayerSpec for ChannelScaleConfig {
    fn name_stem(&self) -> &'static str {
        "channel_scale"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        let features = *input.shape.last().unwrap_or(&0);
        let scale = pb.add("scale", &[features], Init::Uniform(0.5, 1.5))?;
        let layer = ChannelScale {
            scale,
            shift: self.shift,
            shape: input.shape.clone(),
        };
        Ok((Box::new(layer), input.clone()))
    }
}

impl RegisteredLayer for ChannelScaleConfig {
    const TYPE: &'static str = "channel_scale";

    fn example() -> Option<(Self, Signature)> {
        Some((ChannelScaleConfig { shift: 0.5 }, Signature::values(&[3])))
    }
}

/// Configs that only claim names, for the registry's refusals.
macro_rules! name_only {
    ($name:ident, $ty:literal) => {
        #[derive(Clone, Debug, Serialize, Deserialize)]
        struct $name;

        impl LayerSpec for $name {
            fn name_stem(&self) -> &'static str {
                "name_only"
            }

            fn build(
                &self,
                _: &ParamBuilder,
                _: &Signature,
            ) -> Result<(Box<dyn Layer>, Signature)> {
                unreachable!("never built")
            }
        }

        impl RegisteredLayer for $name {
            const TYPE: &'static str = $ty;
        }
    };
}

name_only!(First, "claimed");
name_only!(Second, "claimed");
name_only!(FakeDense, "dense");
name_only!(Shouting, "Loud-Name");

const FILE: &str = r#"{"input": [3], "layers": [
    {"type": "dense", "units": 4, "activation": "tanh"},
    {"type": "channel_scale", "shift": 0.25},
    {"type": "dense", "units": 1}
]}"#;

#[test]
fn a_layer_of_ones_own_in_sequential_model_files_and_summaries() {
    let built = SequentialConfig::new(&[3])
        .add(DenseConfig::new(4).activation(Activation::Tanh))
        .add(ChannelScaleConfig { shift: 0.25 })
        .add(DenseConfig::new(1));
    // Its serde form carries its type, before and after registration.
    let json = serde_json::to_value(&built).unwrap();
    assert_eq!(json["layers"][1]["type"], "channel_scale", "{json}");
    assert_eq!(json["layers"][1]["shift"], 0.25, "{json}");

    // A model file naming it before it is registered is refused, saying how to register it.
    let err = serde_json::from_str::<SequentialConfig>(FILE)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer 2")
            && err.contains("unknown layer type `channel_scale`")
            && err.contains("register_layer"),
        "{err}"
    );

    register_layer::<ChannelScaleConfig>().unwrap();
    register_layer::<ChannelScaleConfig>().unwrap(); // again: nothing changes
    assert!(LayerConfig::types().contains(&"channel_scale".to_string()));
    let read: SequentialConfig = serde_json::from_str(FILE).unwrap();
    assert_eq!(read, built);
    let LayerConfig::Custom(custom) = &read.layers[1] else {
        panic!("a custom layer: {:?}", read.layers[1]);
    };
    let custom: &CustomLayerConfig = custom;
    assert_eq!(custom.type_name(), "channel_scale");
    assert_eq!(
        custom.downcast_ref::<ChannelScaleConfig>(),
        Some(&ChannelScaleConfig { shift: 0.25 })
    );
    // Its own fields are checked as the built-in layers' are.
    let err = serde_json::from_str::<SequentialConfig>(
        r#"{"input": [3], "layers": [{"type": "channel_scale", "shfit": 1}]}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("layer 1 (channel_scale)") && err.contains("unknown field `shfit`"),
        "{err}"
    );

    // Built, summarised and run like any layer; its parameter is named as Keras names them.
    let pb = ParamBuilder::new(3);
    let model = read.init(&pb).unwrap();
    let d = Device::cpu();
    let params = pb.build(&d).unwrap();
    assert!(
        params.find("channel_scale_1.scale").is_some(),
        "{:?}",
        pb.names()
    );
    let table = model.summary_table(&params);
    assert!(
        table.contains("ChannelScale") && table.contains("channel_scale_1"),
        "{table}"
    );
    let tape = Tape::inference(&d);
    let x = tape.constant(d.from_f32(&random_f32(1, 6, -1.0, 1.0), &[2, 3]).unwrap());
    assert_eq!(model.forward(&tape, &params, &x).unwrap().shape(), &[2, 1]);

    // Gradients of every parameter, its own included, against finite differences.
    let xs = random_f32(2, 6, -1.0, 1.0);
    testing::check_param_gradients(
        "custom layer",
        &params,
        3e-3,
        Tolerance::new(2e-3, 2e-2),
        |t| {
            let x = t.constant(d.from_f32(&xs, &[2, 3]).unwrap());
            let y = model.forward(t, &params, &x).unwrap();
            t.mean(&t.square(&y).unwrap()).unwrap()
        },
    );

    // Its example is listed with the built-in layers'.
    assert!(LayerConfig::examples()
        .iter()
        .any(|(c, _)| matches!(c, LayerConfig::Custom(c) if c.type_name() == "channel_scale")));
}

#[test]
fn names_that_are_taken_or_malformed_are_refused() {
    register_layer::<First>().unwrap();
    let err = register_layer::<Second>().unwrap_err().to_string();
    assert!(
        err.contains("`claimed`") && err.contains("registered already, for another config type"),
        "{err}"
    );
    let err = register_layer::<FakeDense>().unwrap_err().to_string();
    assert!(err.contains("is a built-in layer's"), "{err}");
    let err = register_layer::<Shouting>().unwrap_err().to_string();
    assert!(err.contains("is not a snake_case name"), "{err}");
}
