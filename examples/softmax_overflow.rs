//! Softmax with and without the max subtraction, on the seed's large inputs.
//!
//!     cargo run --release --example softmax_overflow
//!
//! exp(1010) overflows f32, so the textbook formula gives NaN; subtracting the row maximum first
//! (what kiln's softmax kernel does) gives finite probabilities that sum to 1.

use kiln::device::{Device, ReduceOp, UnaryOp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::from_env()?;
    let x = device.from_f32(&[1010.0, 1000.0, 990.0], &[1, 3])?;

    // Naive: exp(x) / sum(exp(x)), built from device ops.
    let e = device.unary(UnaryOp::Exp, &x)?;
    let total = device.reduce(ReduceOp::Sum, &e, 1)?;
    let naive = device.binary(kiln::device::BinaryOp::Div, &e, &total)?;
    let naive = device.to_f32(&naive)?;

    let stable = device.to_f32(&device.softmax(&x)?)?;
    println!("device: {}", device.name());
    println!("x                     = [1010, 1000, 990]");
    println!("exp(x) / sum(exp(x))  = {naive:?}");
    println!(
        "softmax (max removed) = {stable:?}, sum {}",
        stable.iter().sum::<f32>()
    );
    let ok =
        stable.iter().all(|v| v.is_finite()) && (stable.iter().sum::<f32>() - 1.0).abs() < 1e-6;
    if ok {
        Ok(())
    } else {
        Err("the stable softmax is not a distribution".into())
    }
}
