//! What every registered layer gets without an edit here: its example config
//! (`LayerConfig::examples`, one `LayerExample` impl in the layer's file) round-trips through
//! serde, appears in a model file, builds on its example input and runs to the output shape it
//! reports, and its gradients (parameters and input) match central finite differences.

use kiln_device::testing::{random_f32, random_u32, Tolerance};
use kiln_device::Device;
use kiln_graph::{Init, LayerConfig, ParamBuilder, SequentialConfig, Signature, Tape};

#[test]
fn every_registered_layer_has_an_example_that_round_trips_through_serde() {
    let examples = LayerConfig::examples();
    let types = LayerConfig::types();
    assert_eq!(
        examples.len(),
        types.len(),
        "one example per registered type"
    );
    for (i, (config, _)) in examples.iter().enumerate() {
        let value = serde_json::to_value(config).unwrap();
        assert_eq!(value["type"], types[i].as_str(), "{value}");
        let back = LayerConfig::from_json_value(1, value.clone()).unwrap();
        assert_eq!(&back, config, "{value}");
    }
}

#[test]
fn every_registered_layer_appears_in_a_model_file_and_runs_on_its_example() {
    let d = Device::cpu();
    for (config, input) in LayerConfig::examples() {
        let model = SequentialConfig {
            input: input.shape.clone(),
            layers: vec![config.clone()],
        };
        let file = serde_json::to_string_pretty(&model).unwrap();
        let read: SequentialConfig = serde_json::from_str(&file).unwrap();
        assert_eq!(read, model, "{file}");
        let pb = ParamBuilder::new(1);
        let built = read.init(&pb).unwrap_or_else(|e| panic!("{file}: {e}"));
        let params = pb.build(&d).unwrap();
        let batch = 2;
        let x = example_input(&d, &input, batch, 3);
        let tape = Tape::inference(&d);
        let y = built.forward(&tape, &params, &tape.constant(x)).unwrap();
        let mut want = vec![batch];
        want.extend(built.output_shape());
        assert_eq!(y.shape(), want.as_slice(), "{file}");
        assert!(
            d.to_f32(y.value()).unwrap().iter().all(|v| v.is_finite()),
            "{file}"
        );
    }
}

/// A batch of `input`: ids in 0..8 (some 0, padding), or values in [-1, 1).
fn example_input(d: &Device, input: &Signature, batch: usize, seed: u64) -> kiln_device::Tensor {
    let mut shape = vec![batch];
    shape.extend(&input.shape);
    let n: usize = shape.iter().product();
    if input.ids {
        d.from_u32(&random_u32(seed, n, 8), &shape).unwrap()
    } else {
        d.from_f32(&random_f32(seed, n, -1.0, 1.0), &shape).unwrap()
    }
}

#[test]
fn every_registered_layer_has_the_gradients_finite_differences_give() {
    let d = Device::cpu();
    let tol = Tolerance::new(2e-3, 2e-2);
    for (config, input) in LayerConfig::examples() {
        let what = serde_json::to_string(&config).unwrap();
        let pb = ParamBuilder::new(7);
        let (layer, _) = config.spec().build(&pb.pp("layer"), &input).unwrap();
        // The input is a parameter too (when it holds values), so its gradient is checked.
        let batch = 2;
        let x = example_input(&d, &input, batch, 11);
        let x_param = (!input.ids).then(|| {
            let values = d.to_f32(&x).unwrap();
            pb.add("input", x.shape(), Init::Values(values)).unwrap()
        });
        let params = pb.build(&d).unwrap();
        let r = random_f32(5, 4096, -1.0, 1.0);
        kiln_graph::testing::check_param_gradients(&what, &params, 3e-3, tol, |tape| {
            let xv = match x_param {
                Some(id) => tape.param(&params, id),
                None => tape.constant(x.clone()),
            };
            let y = layer.forward(tape, &params, &xv).unwrap();
            let n = y.value().len();
            let r = tape.constant(d.from_f32(&r[..n], y.shape()).unwrap());
            tape.mean(&tape.mul(&y, &r).unwrap()).unwrap()
        });
    }
}

#[test]
fn activations_read_and_write_their_keras_names() {
    use kiln_graph::Activation::*;
    let names = [
        ("linear", Linear),
        ("relu", Relu),
        ("sigmoid", Sigmoid),
        ("tanh", Tanh),
        ("softmax", Softmax),
        ("gelu", Gelu),
        ("gelu_approximate", GeluApproximate),
    ];
    for (name, want) in names {
        let read: kiln_graph::Activation = serde_json::from_value(name.into()).unwrap();
        assert_eq!(read, want, "{name}");
        assert_eq!(serde_json::to_value(want).unwrap(), name);
    }
}
