//! kiln against Keras: the LSTM, Bidirectional (with and without sequences), masking, and the
//! seed's whole model (outputs, loss and every weight's gradient), given Keras's weights. The
//! golden file tests/golden/keras_lstm.safetensors comes from tools/keras/golden.py (TensorFlow
//! 2.21 / Keras 3.15 on CPU); this test needs no Python. Runs on the CPU device (the kernels'
//! reference) and, when there is one, on the adapter.

use std::collections::HashMap;

use kiln_cli::models::qqp_seed;
use kiln_device::testing::{assert_close, each_device, Tolerance};
use kiln_device::{Device, Tensor};
use kiln_graph::layers::{
    AttentionCall, BidirectionalConfig, EmbeddingConfig, GruConfig, LayerNormalizationConfig,
    LstmConfig, MultiHeadAttentionConfig, PositionEmbeddingConfig, ReshapeConfig,
    SinePositionEncodingConfig, TransformerEncoderConfig,
};
use kiln_graph::*;
use safetensors::SafeTensors;
use serde_json::Value;

struct Golden {
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    cases: Value,
}

fn golden() -> Golden {
    golden_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/keras_lstm.safetensors"
    ))
}

fn golden_file(path: &str) -> Golden {
    let bytes = std::fs::read(path).expect("the golden file");
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let cases = meta.metadata().as_ref().unwrap()["cases"].clone();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            let values = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, (v.shape().to_vec(), values))
        })
        .collect();
    Golden {
        tensors,
        cases: serde_json::from_str(&cases).unwrap(),
    }
}

impl Golden {
    fn get(&self, case: &str, name: &str) -> &[f32] {
        &self.tensors[&format!("{case}/{name}")].1
    }

    fn w(&self, case: &str, i: usize) -> Vec<f32> {
        self.get(case, &format!("w{i}")).to_vec()
    }

    fn ids(&self, case: &str) -> Vec<u32> {
        self.get(case, "ids").iter().map(|&v| v as u32).collect()
    }

    fn dim(&self, case: &str, key: &str) -> usize {
        self.cases[case][key].as_u64().unwrap() as usize
    }
}

/// "Within 1e-5" of Keras, with a relative term for the few values above 1.
const TOL: Tolerance = Tolerance {
    abs: 1e-5,
    rel: 1e-5,
};

fn devices() -> Vec<Device> {
    each_device("keras_golden")
}

fn cat(parts: &[Vec<f32>]) -> Vec<f32> {
    parts.concat()
}

fn host(d: &Device, t: &Tensor) -> Vec<f32> {
    d.to_f32(t).unwrap()
}

#[test]
fn lstm_sequence_and_states_match_keras() {
    let g = golden();
    for d in devices() {
        for case in ["lstm", "lstm_long"] {
            let (b, t, e, h) = (
                g.dim(case, "batch"),
                g.dim(case, "steps"),
                g.dim(case, "input"),
                g.dim(case, "units"),
            );
            let tape = Tape::inference(&d);
            let c = |v: &[f32], s: &[usize]| tape.constant(d.from_f32(v, s).unwrap());
            let (x, k, r, bias) = (
                c(g.get(case, "x"), &[b, t, e]),
                c(&g.w(case, 0), &[1, e, 4 * h]),
                c(&g.w(case, 1), &[1, h, 4 * h]),
                c(&g.w(case, 2), &[1, 4 * h]),
            );
            let out = tape
                .lstm(LstmVars::new(&x, &k, &r, &bias).return_sequences(true))
                .unwrap();
            let what = format!("{case} on {}", d.name());
            assert_close(
                &format!("{what}: y"),
                &host(&d, out.y.unwrap().value()),
                g.get(case, "y"),
                TOL,
            );
            assert_close(
                &format!("{what}: h"),
                &host(&d, out.h.value()),
                g.get(case, "h"),
                TOL,
            );
            assert_close(
                &format!("{what}: c"),
                &host(&d, out.c.value()),
                g.get(case, "c"),
                TOL,
            );
        }
    }
}

#[test]
fn bidirectional_matches_keras_with_and_without_sequences() {
    let g = golden();
    for d in devices() {
        for case in ["bilstm_seq", "bilstm_last"] {
            let (b, t, e, h) = (
                g.dim(case, "batch"),
                g.dim(case, "steps"),
                g.dim(case, "input"),
                g.dim(case, "units"),
            );
            let seq = g.cases[case]["return_sequences"].as_bool().unwrap();
            let tape = Tape::inference(&d);
            let c = |v: Vec<f32>, s: &[usize]| tape.constant(d.from_f32(&v, s).unwrap());
            let (x, k, r, bias) = (
                c(g.get(case, "x").to_vec(), &[b, t, e]),
                c(cat(&[g.w(case, 0), g.w(case, 3)]), &[2, e, 4 * h]),
                c(cat(&[g.w(case, 1), g.w(case, 4)]), &[2, h, 4 * h]),
                c(cat(&[g.w(case, 2), g.w(case, 5)]), &[2, 4 * h]),
            );
            for path in [LstmPath::Fused, LstmPath::Unfused] {
                tape.set_lstm_path(path);
                let out = tape
                    .lstm(LstmVars::new(&x, &k, &r, &bias).return_sequences(seq))
                    .unwrap();
                let y = if seq { out.y.unwrap() } else { out.h };
                assert_close(
                    &format!("{case} {path:?} on {}", d.name()),
                    &host(&d, y.value()),
                    g.get(case, "y"),
                    TOL,
                );
            }
        }
    }
}

/// Writes Keras's weights into a built model's parameters, in registration order, stacking each
/// bidirectional layer's forward and backward weights on the direction axis.
fn load_keras_weights(d: &Device, store: &ParamStore, g: &Golden, case: &str) -> Vec<usize> {
    // Keras weight indices per kiln parameter, in kiln's registration order.
    let mut order = vec![];
    let mut k = 0;
    for id in store.ids() {
        let name = store.name(id).to_string();
        let bidirectional = name.starts_with("bidirectional");
        let parts: Vec<usize> = if bidirectional {
            // kernel, recurrent_kernel, bias are registered in Keras's order; the backward
            // layer's weights come 3 later.
            vec![k, k + 3]
        } else {
            vec![k]
        };
        let values = cat(&parts.iter().map(|&i| g.w(case, i)).collect::<Vec<_>>());
        d.write_f32(store.value(id), &values).unwrap();
        order.push(k);
        k += 1;
        if bidirectional && name.ends_with(".bias") {
            k += 3;
        }
    }
    order
}

#[test]
fn masked_lstm_and_bidirectional_match_keras() {
    let g = golden();
    for d in devices() {
        for case in [
            "masked_lstm",
            "masked_bilstm",
            "masked_lstm_seq",
            "masked_bilstm_seq",
        ] {
            let (b, t, v, e, h) = (
                g.dim(case, "batch"),
                g.dim(case, "steps"),
                g.dim(case, "vocab"),
                g.dim(case, "input"),
                g.dim(case, "units"),
            );
            let lstm = LstmConfig::new(h)
                .return_sequences(g.cases[case]["return_sequences"].as_bool() == Some(true));
            let bidir = g.cases[case]["bidirectional"].as_bool().unwrap();
            let config = SequentialConfig::new(&[t])
                .add(EmbeddingConfig::new(v, e).mask_zero(true))
                .add(if bidir {
                    LayerConfig::from(BidirectionalConfig::new(lstm))
                } else {
                    lstm.into()
                });
            let pb = ParamBuilder::new(0);
            let model = config.init(&pb).unwrap();
            let store = pb.build(&d).unwrap();
            load_keras_weights(&d, &store, &g, case);
            let ids = d.from_u32(&g.ids(case), &[b, t]).unwrap();
            for path in [LstmPath::Fused, LstmPath::Unfused] {
                let tape = Tape::inference(&d);
                tape.set_lstm_path(path);
                let y = model
                    .forward(&tape, &store, &tape.constant(ids.clone()))
                    .unwrap();
                assert_close(
                    &format!("{case} {path:?} on {}", d.name()),
                    &host(&d, y.value()),
                    g.get(case, "y"),
                    TOL,
                );
            }
        }
    }
}

#[test]
fn the_seed_model_matches_keras_outputs_loss_and_gradients() {
    let g = golden();
    let case = "seed_model";
    let (b, t, v) = (
        g.dim(case, "batch"),
        g.dim(case, "steps"),
        g.dim(case, "vocab"),
    );
    for d in devices() {
        let pb = ParamBuilder::new(0);
        let model = qqp_seed(v, t / 2).init(&pb).unwrap();
        let store = pb.build(&d).unwrap();
        let order = load_keras_weights(&d, &store, &g, case);
        let ids = d.from_u32(&g.ids(case), &[b, t]).unwrap();
        let labels = d.from_f32(g.get(case, "labels"), &[b, 1]).unwrap();
        let tape = Tape::recording(&d);
        let p = model.forward(&tape, &store, &tape.constant(ids)).unwrap();
        let loss = LossKind::BinaryCrossentropy
            .loss(&tape, &p, &labels)
            .unwrap();
        let on = d.name();
        assert_close(
            &format!("seed model output on {on}"),
            &host(&d, p.value()),
            g.get(case, "y"),
            TOL,
        );
        assert_close(
            &format!("seed model loss on {on}"),
            &host(&d, loss.value()),
            g.get(case, "loss"),
            TOL,
        );
        tape.backward(&loss).unwrap();
        for (id, &k) in store.ids().zip(&order) {
            let name = store.name(id);
            let want = if name.starts_with("bidirectional") {
                cat(&[
                    g.get(case, &format!("g{k}")).to_vec(),
                    g.get(case, &format!("g{}", k + 3)).to_vec(),
                ])
            } else {
                g.get(case, &format!("g{k}")).to_vec()
            };
            // Gradients sum over 4 x 62 steps: a little more rounding than the forward values.
            let tol = Tolerance {
                abs: 2e-6,
                rel: 1e-4,
            };
            assert_close(
                &format!("d loss / d {name} on {on}"),
                &host(&d, store.grad(id)),
                &want,
                tol,
            );
        }
    }
}

/// LayerNormalization (tools/keras/golden_layers.py): outputs and the gradients of sum(y * r)
/// with respect to the input, gamma and beta, with Keras's epsilon, a larger one that matters,
/// and without scale and offset.
#[test]
fn layer_normalization_matches_keras() {
    let g = golden_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/keras_layers.safetensors"
    ));
    for case in ["layer_norm", "layer_norm_eps", "layer_norm_plain"] {
        let settings = &g.cases[case];
        let config = LayerNormalizationConfig::new()
            .epsilon(settings["epsilon"].as_f64().unwrap() as f32)
            .center(settings["center"].as_bool().unwrap())
            .scale(settings["scale"].as_bool().unwrap());
        let x_shape = g.tensors[&format!("{case}/x")].0.clone();
        for d in devices() {
            let pb = ParamBuilder::new(0);
            let layer = config.init(&pb, &x_shape[1..]).unwrap();
            let params = pb.build(&d).unwrap();
            // Keras's weight order: gamma, then beta.
            let ids: Vec<ParamId> = layer.params();
            for (i, &id) in ids.iter().enumerate() {
                d.write_f32(params.value(id), &g.w(case, i)).unwrap();
            }
            against_keras(&g, case, &d, &layer, &params);
        }
    }
}

/// Runs `layer` on the case's x and checks y, and the gradients of sum(y * r) with respect to x
/// and the layer's parameters (in Keras's weight order), against Keras's.
fn against_keras(g: &Golden, case: &str, d: &Device, layer: &dyn Layer, params: &ParamStore) {
    against_keras_on(g, case, d, layer, params, Tape::recording(d));
}

/// [`against_keras`] on a tape of one's choosing (a training tape for BatchNorm's batch
/// statistics); the gradients of non-trainable weights are not compared (Keras has none).
fn against_keras_on(
    g: &Golden,
    case: &str,
    d: &Device,
    layer: &dyn Layer,
    params: &ParamStore,
    tape: Tape,
) {
    let x_shape = g.tensors[&format!("{case}/x")].0.clone();
    let x = tape.input(d.from_f32(g.get(case, "x"), &x_shape).unwrap());
    let y = layer.forward(&tape, params, &x).unwrap();
    let r = tape.constant(d.from_f32(g.get(case, "r"), y.shape()).unwrap());
    let prod = tape.mul(&y, &r).unwrap();
    let n = prod.value().len();
    // sum(y * r) = n * mean(y * r)
    let loss = tape
        .unary(
            kiln_device::UnaryOp::Scale(n as f32),
            &tape.mean(&prod).unwrap(),
        )
        .unwrap();
    tape.backward(&loss).unwrap();
    let what = format!("{case} on {}", d.name());
    assert_eq!(
        y.shape(),
        g.tensors[&format!("{case}/y")].0.as_slice(),
        "{what}"
    );
    assert_close(
        &format!("{what}: y"),
        &d.to_f32(y.value()).unwrap(),
        g.get(case, "y"),
        TOL,
    );
    let dx = d.to_f32(&tape.grad(&x).unwrap()).unwrap();
    assert_close(&format!("{what}: dx"), &dx, g.get(case, "dx"), TOL);
    for (i, id) in layer.params().into_iter().enumerate() {
        if !params.is_trainable(id) {
            continue;
        }
        let dw = d.to_f32(params.grad(id)).unwrap();
        assert_close(
            &format!("{what}: dw{i}"),
            &dw,
            g.get(case, &format!("dw{i}")),
            TOL,
        );
    }
}

/// Reshape (tools/keras/golden_layers.py): Keras's output shape and values, and its gradient.
#[test]
fn reshape_matches_keras() {
    let g = golden_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/keras_layers.safetensors"
    ));
    let target: Vec<i64> =
        serde_json::from_value(g.cases["reshape"]["target_shape"].clone()).unwrap();
    let x_shape = g.tensors["reshape/x"].0.clone();
    for d in devices() {
        let pb = ParamBuilder::new(0);
        let layer = ReshapeConfig::new(&target)
            .init(&pb, &x_shape[1..])
            .unwrap();
        let params = pb.build(&d).unwrap();
        against_keras(&g, "reshape", &d, &layer, &params);
    }
}

/// MultiHeadAttention (tools/keras/golden_layers.py): self-attention with and without padding
/// masks (a padded query, a batch row whose keys are all padded) and with a causal mask, and
/// cross-attention with a value mask and another output width; outputs, the gradients of
/// sum(y * r) with respect to the query (and value) input and all eight weights in Keras's order.
#[test]
fn multi_head_attention_matches_keras() {
    let g = golden_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/keras_layers.safetensors"
    ));
    for case in ["mha_self", "mha_masked", "mha_causal", "mha_cross"] {
        let s = &g.cases[case];
        let mut config =
            MultiHeadAttentionConfig::new(g.dim(case, "num_heads"), g.dim(case, "key_dim"))
                .value_dim(g.dim(case, "value_dim"))
                .causal(s["causal"].as_bool().unwrap());
        if let Some(out) = s.get("output_shape") {
            config = config.output_shape(out.as_u64().unwrap() as usize);
        }
        let x_shape = g.tensors[&format!("{case}/x")].0.clone();
        let v_shape = g.tensors.get(&format!("{case}/v")).map(|t| t.0.clone());
        let ids = |name: &str, d: &Device| {
            g.tensors.get(&format!("{case}/{name}")).map(|(shape, v)| {
                let ids: Vec<u32> = v.iter().map(|&x| x as u32).collect();
                d.from_u32(&ids, shape).unwrap()
            })
        };
        for d in devices() {
            let pb = ParamBuilder::new(0);
            let e_v = v_shape.as_ref().map_or(x_shape[2], |s| s[2]);
            let layer = config.init(&pb, x_shape[2], e_v).unwrap();
            let params = pb.build(&d).unwrap();
            for (i, id) in layer.params().into_iter().enumerate() {
                d.write_f32(params.value(id), &g.w(case, i)).unwrap();
            }
            let tape = Tape::recording(&d);
            let x = tape.input(d.from_f32(g.get(case, "x"), &x_shape).unwrap());
            let v = v_shape
                .as_ref()
                .map(|s| tape.input(d.from_f32(g.get(case, "v"), s).unwrap()));
            let call = AttentionCall::new(&x, v.as_ref().unwrap_or(&x))
                .ids(ids("qids", &d), ids("vids", &d));
            let y = layer.call(&tape, &params, call).unwrap();
            let r = tape.constant(d.from_f32(g.get(case, "r"), y.shape()).unwrap());
            let loss = tape.sum(&tape.mul(&y, &r).unwrap()).unwrap();
            tape.backward(&loss).unwrap();
            let what = format!("{case} on {}", d.name());
            assert_close(
                &format!("{what}: y"),
                &host(&d, y.value()),
                g.get(case, "y"),
                TOL,
            );
            let dx = host(&d, &tape.grad(&x).unwrap());
            assert_close(&format!("{what}: dx"), &dx, g.get(case, "dx"), TOL);
            if let Some(v) = &v {
                let dv = host(&d, &tape.grad(v).unwrap());
                assert_close(&format!("{what}: dv"), &dv, g.get(case, "dv"), TOL);
            }
            for (i, id) in layer.params().into_iter().enumerate() {
                let dw = host(&d, params.grad(id));
                assert_close(
                    &format!("{what}: dw{i}"),
                    &dw,
                    g.get(case, &format!("dw{i}")),
                    TOL,
                );
            }
        }
    }
}

/// keras-hub's TransformerEncoder (post-norm with relu, pre-norm with tanh), and x plus its
/// PositionEmbedding and SinePositionEncoding (tools/keras/golden_layers.py, keras-hub 0.32):
/// outputs, input gradients and every weight's gradient in keras-hub's order.
#[test]
fn transformer_layers_match_keras_hub() {
    let g = golden_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/keras_layers.safetensors"
    ));
    let encoder = |case: &str| {
        let s = &g.cases[case];
        let activation = match s.get("activation").and_then(Value::as_str) {
            Some("tanh") => kiln_graph::Activation::Tanh,
            _ => kiln_graph::Activation::Relu,
        };
        LayerConfig::from(
            TransformerEncoderConfig::new(
                g.dim(case, "intermediate_dim"),
                g.dim(case, "num_heads"),
            )
            .activation(activation)
            .normalize_first(s["normalize_first"].as_bool().unwrap()),
        )
    };
    let cases = [
        ("encoder_post", encoder("encoder_post")),
        ("encoder_pre", encoder("encoder_pre")),
        (
            "position_embedding",
            PositionEmbeddingConfig::new(g.dim("position_embedding", "sequence_length")).into(),
        ),
        (
            "sine_position",
            SinePositionEncodingConfig::default().into(),
        ),
    ];
    for (case, config) in cases {
        let x_shape = g.tensors[&format!("{case}/x")].0.clone();
        for d in devices() {
            let pb = ParamBuilder::new(0);
            let (layer, _) = config
                .spec()
                .build(&pb, &Signature::values(&x_shape[1..]))
                .unwrap();
            let params = pb.build(&d).unwrap();
            for (i, id) in layer.params().into_iter().enumerate() {
                d.write_f32(params.value(id), &g.w(case, i)).unwrap();
            }
            against_keras(&g, case, &d, layer.as_ref(), &params);
        }
    }
}

/// Conv1D (valid with strides, same with strides and an odd padding, causal with dilation and
/// relu) and GlobalMaxPooling1D (tools/keras/golden_layers.py): outputs and the gradients of
/// sum(y * r) with respect to the input, the kernel (k, C, filters) and the bias.
#[test]
fn conv1d_and_global_max_pooling_match_keras() {
    let g = golden_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/keras_layers.safetensors"
    ));
    for case in ["conv1d_valid", "conv1d_same", "conv1d_causal"] {
        let s = &g.cases[case];
        let padding: kiln_graph::layers::Padding1d =
            serde_json::from_value(s["padding"].clone()).unwrap();
        let activation: Activation = serde_json::from_value(s["activation"].clone()).unwrap();
        let config = kiln_graph::layers::Conv1dConfig::new(
            g.dim(case, "filters"),
            g.dim(case, "kernel_size"),
        )
        .strides(g.dim(case, "strides"))
        .dilation_rate(g.dim(case, "dilation_rate"))
        .padding(padding)
        .activation(activation);
        let x_shape = g.tensors[&format!("{case}/x")].0.clone();
        for d in devices() {
            let pb = ParamBuilder::new(0);
            let layer = config.init(&pb, &x_shape[1..]).unwrap();
            let params = pb.build(&d).unwrap();
            for (i, id) in layer.params().into_iter().enumerate() {
                d.write_f32(params.value(id), &g.w(case, i)).unwrap();
            }
            against_keras(&g, case, &d, &layer, &params);
        }
    }
    let x_shape = g.tensors["global_max_pooling1d/x"].0.clone();
    for d in devices() {
        let pb = ParamBuilder::new(0);
        let (layer, _) = kiln_graph::layers::GlobalMaxPooling1dConfig::default()
            .build(&pb, &Signature::values(&x_shape[1..]))
            .unwrap();
        let params = pb.build(&d).unwrap();
        against_keras(&g, "global_max_pooling1d", &d, &*layer, &params);
    }
}

/// gelu and gelu_approximate as Activation layers against Keras's.
#[test]
fn gelu_matches_keras() {
    let g = golden_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/keras_layers.safetensors"
    ));
    for case in ["gelu", "gelu_approximate"] {
        let activation: Activation =
            serde_json::from_value(g.cases[case]["activation"].clone()).unwrap();
        let x_shape = g.tensors[&format!("{case}/x")].0.clone();
        for d in devices() {
            let pb = ParamBuilder::new(0);
            let layer = kiln_graph::layers::ActivationConfig::new(activation)
                .init(&pb, &x_shape[1..])
                .unwrap();
            let params = pb.build(&d).unwrap();
            against_keras(&g, case, &d, &layer, &params);
        }
    }
}

/// BatchNormalization (tools/keras/golden_layers.py): training on (B, F) and on (B, C, H, W)
/// with axis 1 (outputs with the batch's statistics, gradients of x, gamma and beta, and the
/// moving statistics after Keras's one update), and inference with the moving statistics.
#[test]
fn batch_normalization_matches_keras() {
    let g = golden_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/keras_layers.safetensors"
    ));
    for case in ["batch_norm_train", "batch_norm_nchw", "batch_norm_infer"] {
        let s = &g.cases[case];
        let config = kiln_graph::layers::BatchNormalizationConfig::new()
            .axis(s["axis"].as_i64().unwrap() as isize)
            .momentum(s["momentum"].as_f64().unwrap() as f32)
            .epsilon(s["epsilon"].as_f64().unwrap() as f32);
        let training = s["training"].as_bool().unwrap();
        let x_shape = g.tensors[&format!("{case}/x")].0.clone();
        for d in devices() {
            let pb = ParamBuilder::new(0);
            let layer = config.init(&pb, &x_shape[1..]).unwrap();
            let params = pb.build(&d).unwrap();
            // Keras's order: gamma, beta, moving_mean, moving_variance.
            for (i, id) in layer.params().into_iter().enumerate() {
                d.write_f32(params.value(id), &g.w(case, i)).unwrap();
            }
            let tape = if training {
                Tape::training(&d, 0, 0)
            } else {
                Tape::recording(&d)
            };
            against_keras_on(&g, case, &d, &layer, &params, tape);
            let (mm, mv) = layer.moving_statistics();
            let (want_mm, want_mv) = if training {
                (
                    g.get(case, "moving_mean_after"),
                    g.get(case, "moving_variance_after"),
                )
            } else {
                (g.get(case, "w2"), g.get(case, "w3"))
            };
            let what = format!("{case} on {}", d.name());
            assert_close(
                &format!("{what}: moving_mean"),
                &host(&d, params.value(mm)),
                want_mm,
                TOL,
            );
            assert_close(
                &format!("{what}: moving_variance"),
                &host(&d, params.value(mv)),
                want_mv,
                TOL,
            );
        }
    }
}

/// The GRU golden file (tools/keras/golden_gru.py).
fn gru_golden() -> Golden {
    golden_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/keras_gru.safetensors"
    ))
}

/// Keras's weight gradients in kiln's parameter order (`order` from [`load_keras_weights`]),
/// each bidirectional layer's two directions stacked.
fn keras_grads(g: &Golden, case: &str, store: &ParamStore, order: &[usize]) -> Vec<Vec<f32>> {
    store
        .ids()
        .zip(order)
        .map(|(id, &k)| {
            let get = |i: usize| g.get(case, &format!("g{i}")).to_vec();
            if store.name(id).starts_with("bidirectional") {
                cat(&[get(k), get(k + 3)])
            } else {
                get(k)
            }
        })
        .collect()
}

/// Gradients sum over the batch and steps: a little more rounding than the forward values.
const GRAD_TOL: Tolerance = Tolerance {
    abs: 2e-6,
    rel: 1e-4,
};

/// One GRU case: the model built from its settings, Keras's weights, y and the gradients of
/// sum(y * probe) with respect to every weight (and x for float inputs), by both paths.
fn gru_case_matches_keras(g: &Golden, case: &str, d: &Device) {
    let (b, t, h) = (
        g.dim(case, "batch"),
        g.dim(case, "steps"),
        g.dim(case, "units"),
    );
    let seq = g.cases[case]["return_sequences"].as_bool() == Some(true);
    let gru = GruConfig::new(h).return_sequences(seq);
    let layer = if g.cases[case]["bidirectional"].as_bool().unwrap() {
        LayerConfig::from(BidirectionalConfig::new(gru))
    } else {
        gru.into()
    };
    let float_input = g.cases[case]["kind"] == "float";
    let config = if float_input {
        SequentialConfig::new(&[t, g.dim(case, "input")]).add(layer)
    } else {
        SequentialConfig::new(&[t])
            .add(EmbeddingConfig::new(g.dim(case, "vocab"), g.dim(case, "input")).mask_zero(true))
            .add(layer)
    };
    let pb = ParamBuilder::new(0);
    let model = config.init(&pb).unwrap();
    let store = pb.build(d).unwrap();
    let order = load_keras_weights(d, &store, g, case);
    // x as a parameter of its own, so that its gradient can be read.
    let xb = ParamBuilder::new(0);
    let x_shape = if float_input {
        vec![b, t, g.dim(case, "input")]
    } else {
        vec![b, t]
    };
    let x_values = g.get(case, if float_input { "x" } else { "ids" }).to_vec();
    xb.add("x", &x_shape, Init::Values(x_values.clone()))
        .unwrap();
    let xs = xb.build(d).unwrap();
    let probe = g.get(case, "probe");
    for path in [LstmPath::Fused, LstmPath::Unfused] {
        let tape = Tape::recording(d);
        tape.set_lstm_path(path);
        let x = if float_input {
            tape.param(&xs, xs.ids().next().unwrap())
        } else {
            tape.constant(d.from_u32(&g.ids(case), &[b, t]).unwrap())
        };
        let y = model.forward(&tape, &store, &x).unwrap();
        let what = format!("{case} {path:?} on {}", d.name());
        assert_close(
            &format!("{what}: y"),
            &host(d, y.value()),
            g.get(case, "y"),
            TOL,
        );
        // sum(y * probe) as a mean of y * (probe * n).
        let n = probe.len() as f32;
        let scaled: Vec<f32> = probe.iter().map(|p| p * n).collect();
        let probe_v = tape.constant(d.from_f32(&scaled, y.shape()).unwrap());
        let loss = tape.mean(&tape.mul(&y, &probe_v).unwrap()).unwrap();
        tape.backward(&loss).unwrap();
        for ((id, want), name) in store
            .ids()
            .zip(keras_grads(g, case, &store, &order))
            .zip(store.ids().map(|id| store.name(id).to_string()))
        {
            let got = host(d, store.grad(id));
            assert_close(&format!("{what}: d {name}"), &got, &want, GRAD_TOL);
        }
        if float_input {
            let dx = host(d, xs.grad(xs.ids().next().unwrap()));
            assert_close(&format!("{what}: dx"), &dx, g.get(case, "dx"), GRAD_TOL);
        }
        store.zero_grad().unwrap();
        xs.zero_grad().unwrap();
    }
}

#[test]
fn gru_and_bidirectional_gru_match_keras_outputs_and_gradients() {
    let g = gru_golden();
    for d in devices() {
        for case in [
            "gru_seq",
            "gru_long",
            "bigru_seq",
            "bigru_last",
            "masked_gru",
            "masked_gru_seq",
            "masked_bigru",
            "masked_bigru_seq",
        ] {
            gru_case_matches_keras(&g, case, &d);
        }
    }
}

#[test]
fn the_seed_model_with_bigru_layers_matches_keras() {
    let g = gru_golden();
    let case = "gru_seed_model";
    let (b, t, v) = (
        g.dim(case, "batch"),
        g.dim(case, "steps"),
        g.dim(case, "vocab"),
    );
    for d in devices() {
        let pb = ParamBuilder::new(0);
        let model = kiln_cli::models::qqp_gru(v, t / 2).init(&pb).unwrap();
        let store = pb.build(&d).unwrap();
        let order = load_keras_weights(&d, &store, &g, case);
        let ids = d.from_u32(&g.ids(case), &[b, t]).unwrap();
        let labels = d.from_f32(g.get(case, "labels"), &[b, 1]).unwrap();
        let tape = Tape::recording(&d);
        let p = model.forward(&tape, &store, &tape.constant(ids)).unwrap();
        let loss = LossKind::BinaryCrossentropy
            .loss(&tape, &p, &labels)
            .unwrap();
        let on = d.name();
        let what = format!("GRU seed model on {on}");
        assert_close(
            &format!("{what}: y"),
            &host(&d, p.value()),
            g.get(case, "y"),
            TOL,
        );
        assert_close(
            &format!("{what}: loss"),
            &host(&d, loss.value()),
            g.get(case, "loss"),
            TOL,
        );
        tape.backward(&loss).unwrap();
        for (id, want) in store.ids().zip(keras_grads(&g, case, &store, &order)) {
            let name = store.name(id);
            let got = host(&d, store.grad(id));
            assert_close(&format!("{what}: d {name}"), &got, &want, GRAD_TOL);
        }
    }
}
