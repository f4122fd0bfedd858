//! A small MLP learns XOR to 100% training accuracy, on the chosen device.
//!
//!     cargo run --release --example xor
//!     KILN_DEVICE=cpu cargo run --release --example xor
//!
//! Dense(8, tanh) -> Dense(1, sigmoid), binary cross-entropy, Adam (lr 0.05), 300 epochs of the four
//! points. Writes its run (history, plot, checkpoints, model) under runs/example-xor.

use kiln::device::Device;
use kiln::graph::{evaluate, fit, ParamBuilder, RunOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::from_env()?;
    let job = kiln::models::job("xor", 3, &Default::default())?.expect("xor is a built-in job");
    let mut b = ParamBuilder::new(job.config.seed);
    let model = job.model.init(&mut b)?;
    let model = &*model;
    let params = b.build(&device)?;
    println!(
        "device: {}\n{}",
        device.name(),
        model.summary_table(&params)
    );
    let out = std::path::PathBuf::from("runs/example-xor");
    let _ = std::fs::remove_dir_all(&out); // an example starts afresh
    fit(
        model,
        &params,
        &job.train,
        None,
        &job.config,
        &RunOptions {
            metadata: vec![],
            out: out.clone(),
            resume: false,
            quiet: true,
        },
    )?;
    let (loss, accuracy) = evaluate(model, &params, &job.train, 4, job.config.loss)?;
    let x = device.from_f32(&[0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0], &[4, 2])?;
    let p = device.to_f32(
        model
            .forward(&kiln::graph::Tape::inference(&device), &params, &x)?
            .value(),
    )?;
    for (i, (a, b)) in [(0, 0), (0, 1), (1, 0), (1, 1)].iter().enumerate() {
        println!("{a} xor {b} -> {:.4}", p[i]);
    }
    println!(
        "loss {loss:.5}, accuracy {accuracy:.2}; run written to {}",
        out.display()
    );
    if accuracy == 1.0 {
        Ok(())
    } else {
        Err("XOR was not learned".into())
    }
}
