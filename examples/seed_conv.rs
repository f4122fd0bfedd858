//! The seed's convolution examples, computed on the chosen device.
//!
//!     cargo run --release --example seed_conv
//!
//! 4x4 input [[1,2,3,0],[0,1,2,3],[3,0,1,2],[2,3,0,1]], 3x3 filter [[2,0,1],[0,1,2],[1,0,2]]:
//! with bias 3 the output is [[18,19],[9,18]]; with padding 1 and no bias,
//! [[7,12,10,2],[4,15,16,10],[10,6,15,6],[8,10,4,3]]. Then stride 2 on a 3-channel mini-batch.

use kiln::device::{Conv2dSpec, ConvVariant, Device};

fn show(name: &str, values: &[f32], width: usize) {
    println!("{name}:");
    for row in values.chunks(width) {
        println!("  {:?}", row);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let d = Device::from_env()?;
    println!("device: {}", d.name());
    let x = d.from_f32(
        &[
            1.0, 2.0, 3.0, 0.0, 0.0, 1.0, 2.0, 3.0, 3.0, 0.0, 1.0, 2.0, 2.0, 3.0, 0.0, 1.0,
        ],
        &[1, 1, 4, 4],
    )?;
    let w = d.from_f32(
        &[2.0, 0.0, 1.0, 0.0, 1.0, 2.0, 1.0, 0.0, 2.0],
        &[1, 1, 3, 3],
    )?;
    let b = d.from_f32(&[3.0], &[1])?;
    let y = d.to_f32(&d.conv2d(
        &x,
        &w,
        Some(&b),
        &Conv2dSpec::default(),
        ConvVariant::Im2col,
    )?)?;
    show(
        "stride 1, no padding, bias 3 (the seed: [[18,19],[9,18]])",
        &y,
        2,
    );
    let ok1 = y == [18.0, 19.0, 9.0, 18.0];
    let padded = Conv2dSpec {
        padding: 1,
        ..Default::default()
    };
    let y = d.to_f32(&d.conv2d(&x, &w, None, &padded, ConvVariant::Im2col)?)?;
    show("padding 1, no bias", &y, 4);
    let ok2 = y
        == [
            7.0, 12.0, 10.0, 2.0, 4.0, 15.0, 16.0, 10.0, 10.0, 6.0, 15.0, 6.0, 8.0, 10.0, 4.0, 3.0,
        ];

    // Stride 2, an RGB mini-batch of 2 images 7x7, 4 filters: (2, 3, 7, 7) -> (2, 4, 3, 3).
    let xs: Vec<f32> = (0..2 * 3 * 49)
        .map(|i| ((i * 7) % 11) as f32 - 5.0)
        .collect();
    let ws: Vec<f32> = (0..4 * 3 * 9).map(|i| ((i * 5) % 7) as f32 - 3.0).collect();
    let strided = Conv2dSpec {
        stride: 2,
        ..Default::default()
    };
    let (xt, wt) = (
        d.from_f32(&xs, &[2, 3, 7, 7])?,
        d.from_f32(&ws, &[4, 3, 3, 3])?,
    );
    let y = d.conv2d(&xt, &wt, None, &strided, ConvVariant::Im2col)?;
    let cpu = Device::cpu();
    let want = cpu.conv2d(
        &cpu.from_f32(&xs, &[2, 3, 7, 7])?,
        &cpu.from_f32(&ws, &[4, 3, 3, 3])?,
        None,
        &strided,
        ConvVariant::Direct,
    )?;
    let ok3 = d.to_f32(&y)? == cpu.to_f32(&want)?;
    println!(
        "stride 2, 3 channels, 4 filters, batch 2: output {:?}, equal to the CPU reference: {ok3}",
        y.shape()
    );
    if ok1 && ok2 && ok3 {
        println!("all match");
        Ok(())
    } else {
        Err("a result differs from the seed's".into())
    }
}
