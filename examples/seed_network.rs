//! The seed's three-layer network with its fixed weights, on the chosen device.
//!
//!     cargo run --release --example seed_network            # best adapter
//!     KILN_DEVICE=cpu cargo run --release --example seed_network
//!
//! x = [1, 2]; W1 = [[1,3,5],[2,4,6]], W2 = [[1,2],[3,4],[5,6]], W3 = [[1,2],[3,4]]; sigmoid hidden
//! layers, identity output, no biases. Prints the output and the value computed by hand in f64.

use kiln::device::Device;
use kiln::graph::layers::DenseConfig;
use kiln::graph::{Activation, ParamBuilder, SequentialConfig, Tape};

/// The seed network's output computed by hand, in f64.
fn by_hand() -> [f64; 2] {
    let s = |v: f64| 1.0 / (1.0 + (-v).exp());
    let a1 = [s(1.0 + 2.0 * 2.0), s(3.0 + 2.0 * 4.0), s(5.0 + 2.0 * 6.0)];
    let a2 = [
        s(a1[0] + 3.0 * a1[1] + 5.0 * a1[2]),
        s(2.0 * a1[0] + 4.0 * a1[1] + 6.0 * a1[2]),
    ];
    [a2[0] + 3.0 * a2[1], 2.0 * a2[0] + 4.0 * a2[1]]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::from_env()?;
    if let Some(note) = device.note() {
        eprintln!("{note}");
    }
    let layer = |units, activation| {
        DenseConfig::new(units)
            .activation(activation)
            .use_bias(false)
    };
    let config = SequentialConfig::new(&[2])
        .add(layer(3, Activation::Sigmoid))
        .add(layer(2, Activation::Sigmoid))
        .add(layer(2, Activation::Linear));
    let b = ParamBuilder::new(0);
    let model = config.init(&b)?;
    let params = b.build(&device)?;
    // The seed's fixed weights replace the initial ones.
    let weights = [
        vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0],
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        vec![1.0, 2.0, 3.0, 4.0],
    ];
    for (id, w) in params.ids().collect::<Vec<_>>().into_iter().zip(weights) {
        device.write_f32(params.value(id), &w)?;
    }
    let tape = Tape::inference(&device);
    let x = tape.constant(device.from_f32(&[1.0, 2.0], &[1, 2])?);
    let y = device.to_f32(model.forward(&tape, &params, &x)?.value())?;
    let want = by_hand();
    println!("device: {}", device.name());
    println!("output:        [{:.6}, {:.6}]", y[0], y[1]);
    println!("by hand (f64): [{:.6}, {:.6}]", want[0], want[1]);
    let ok = (y[0] as f64 - want[0]).abs() < 1e-5 && (y[1] as f64 - want[1]).abs() < 1e-5;
    println!("{}", if ok { "match" } else { "MISMATCH" });
    if ok {
        Ok(())
    } else {
        Err("the network's output differs from the hand computation".into())
    }
}
