//! Branch-free exp, sigmoid and tanh for the CPU device's hot loops. libm's `expf` and `tanhf`
//! are calls per element (tanh through `expm1f`): in the seed model's step they took about a
//! third of the time. These are plain arithmetic and selects, so a loop that calls them
//! vectorizes. Accuracy against f64 (tested below): exp within 2 ulp, sigmoid within 3, tanh within
//! 5e-7 absolute (libm's are within 1 ulp; the LSTM's tests allow 1e-5).
//!
//! - exp: Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, and Cephes' degree-6
//!   polynomial for e^r (the form SLEEF, Eigen and most vector libraries share);
//! - tanh: the odd 13/6 rational minimax that Eigen, XLA and MLAS use, so the CPU device's LSTM
//!   cell computes tanh as TensorFlow's CPU kernels do.

/// ln 2 split in two: the high part has few enough bits that n * LN2_HI is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding and subtracting 1.5 * 2^23 rounds an f32 below 2^22 in magnitude to the nearest
/// integer without a call (f32::round is one on x86-64's baseline).
const ROUND: f32 = 12_582_912.0;

/// e^x, within 2 ulp of the exact value where that is a normal f32. Arguments are clamped to
/// [-87.3, 88.3], so the result is never 0, a subnormal or infinite.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    // t holds n = round(x log2 e) in its low mantissa bits.
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let er = p * (r * r) + r + 1.0;
    // 2^n from its exponent bits, n + 127 in [1, 254] after the clamp (integer ops on t's bits, no
    // float-to-int conversion, so this vectorizes on every x86-64).
    let biased = t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127);
    er * f32::from_bits(biased << 23)
}

/// 1 / (1 + e^-x), within 3 ulp where the result is a normal f32 (0 where it underflows, about
/// x < -87).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// tanh(x), within 5e-7 of the exact value; odd, so small arguments keep their relative
/// accuracy. Saturates to +-1 (within the bound) past |x| = 9, as the reference's clamp does.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let x = x.clamp(-9.0, 9.0);
    let x2 = x * x;
    let mut p = -2.760_768_5e-16f32;
    p = p * x2 + 2.000_188e-13;
    p = p * x2 - 8.604_672e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619_3e-4;
    p = p * x2 + 4.893_524_6e-3;
    let mut q = 1.198_258_4e-6f32;
    q = q * x2 + 1.185_347_1e-4;
    q = q * x2 + 2.268_434_6e-3;
    q = q * x2 + 4.893_525e-3;
    let t = x * p / q;
    // Below 4e-4, tanh(x) rounds to x; the rational would underflow for subnormal x.
    if x.abs() < 4e-4 {
        x
    } else {
        t.clamp(-1.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count + 1` evenly spaced points from lo to hi.
    fn grid(lo: f32, hi: f32, count: usize) -> impl Iterator<Item = f32> {
        (0..=count).map(move |i| lo + (hi - lo) * (i as f32 / count as f32))
    }

    fn ulps(got: f32, want: f64) -> f64 {
        let want32 = want as f32;
        let ulp = (f32::from_bits(want32.abs().to_bits() + 1) - want32.abs()) as f64;
        (got as f64 - want).abs() / ulp
    }

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = (0.0, 0.0f32);
        for x in grid(-87.0, 88.3, 2_000_003) {
            let u = ulps(exp(x), (x as f64).exp());
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(worst.0 <= 2.0, "exp: {} ulp at {}", worst.0, worst.1);
        // Clamped ends: finite and positive.
        for x in [-1e30, -200.0, 89.0, 1e30, f32::MAX, f32::MIN] {
            let e = exp(x);
            assert!(e.is_finite() && e > 0.0, "exp({x}) = {e}");
        }
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn sigmoid_is_within_three_ulp() {
        let mut worst = (0.0, 0.0f32);
        for x in grid(-80.0, 40.0, 2_000_003) {
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            let u = ulps(sigmoid(x), want);
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(worst.0 <= 3.0, "sigmoid: {} ulp at {}", worst.0, worst.1);
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(1e30), 1.0);
        assert!((0.0..1e-37).contains(&sigmoid(-1e30)));
    }

    #[test]
    fn tanh_is_within_5e7_and_odd() {
        let mut worst = (0.0, 0.0f32);
        for x in grid(-20.0, 20.0, 2_000_003) {
            let err = (tanh(x) as f64 - (x as f64).tanh()).abs();
            if err > worst.0 {
                worst = (err, x);
            }
            assert_eq!(tanh(-x), -tanh(x), "odd at {x}");
        }
        assert!(worst.0 <= 5e-7, "tanh: {} off at {}", worst.0, worst.1);
        // Small arguments keep their relative accuracy.
        for x in [1e-30f32, 1e-8, 3e-4, 1e-3, 0.01, 0.1] {
            let rel = (tanh(x) as f64 - (x as f64).tanh()).abs() / (x as f64).tanh();
            assert!(rel < 1e-6, "tanh({x}) relative error {rel}");
        }
        assert_eq!(tanh(f32::MAX), 1.0);
        assert_eq!(tanh(f32::MIN), -1.0);
    }
}
