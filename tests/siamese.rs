//! The siamese pair model (src/siamese.rs), a model written on the public API as a user writes
//! one: gradients by finite differences, parameter names from `pp` prefixes, and its config
//! round-tripping through a saved model's JSON.

use kiln::graph::layers::{BidirectionalConfig, DenseConfig, EmbeddingConfig, LstmConfig};
use kiln::graph::testing::check_param_gradients;
use kiln::graph::{Activation, LossKind, Model, Objective, ParamBuilder, Tape};
use kiln_cli::models::{ModelConfig, SiameseConfig};
use kiln_device::testing::Tolerance;
use kiln_device::Device;

#[test]
fn siamese_model_against_finite_differences() {
    let dev = Device::cpu();
    let config = SiameseConfig {
        seq_len: 3,
        encoder: vec![
            EmbeddingConfig::new(6, 2).mask_zero(true).into(),
            BidirectionalConfig::new(LstmConfig::new(2)).into(),
        ],
        head: vec![DenseConfig::new(1).activation(Activation::Sigmoid).into()],
    };
    let b = ParamBuilder::new(5);
    let model = config.init(&b).unwrap();
    let s = b.build(&dev).unwrap();
    assert!(
        s.find("encoder.bidirectional_1.kernel").is_some()
            && s.find("head.dense_1.kernel").is_some()
    );
    let ids = dev
        .from_u32(&[1, 2, 0, 3, 4, 5, 5, 0, 0, 2, 2, 1], &[2, 6])
        .unwrap();
    let labels = dev.from_f32(&[1.0, 0.0], &[2, 1]).unwrap();
    let tol = Tolerance {
        abs: 2e-3,
        rel: 2e-2,
    };
    check_param_gradients("siamese", &s, 3e-3, tol, |t: &Tape| {
        let p = model.forward(t, &s, &[t.constant(ids.clone())]).unwrap();
        LossKind::BinaryCrossentropy.loss(t, &p, &labels).unwrap()
    });
    // The config round-trips through a saved model's JSON.
    let back: ModelConfig = serde_json::from_str(&model.config_json().unwrap()).unwrap();
    assert_eq!(back, ModelConfig::Siamese { siamese: config });
}
