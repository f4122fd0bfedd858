//! Test support shared by every crate's tests: one tolerance type, seeded data, and the rule for
//! GPU tests (run on an adapter; skip with a message when there is none, unless
//! `KILN_REQUIRE_GPU=1`, in which case a missing adapter fails the test).

use rand::{rngs::StdRng, RngExt, SeedableRng};

use crate::{Device, DeviceChoice};

/// `|got - want| <= abs + rel * |want|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Absolute part.
    pub abs: f32,
    /// Relative part (times |want|).
    pub rel: f32,
}

impl Tolerance {
    /// Bit-for-bit equality.
    pub const EXACT: Tolerance = Tolerance { abs: 0.0, rel: 0.0 };
    /// Same formula, different evaluation order or fused multiply-add: a few ulps.
    pub const ELEMENTWISE: Tolerance = Tolerance {
        abs: 1e-6,
        rel: 1e-5,
    };
    /// Transcendentals (exp, log, tanh) may differ by a few ulps between libm and the GPU.
    pub const TRANSCENDENTAL: Tolerance = Tolerance {
        abs: 1e-5,
        rel: 1e-4,
    };

    /// A tolerance of `abs + rel * |want|`.
    pub const fn new(abs: f32, rel: f32) -> Tolerance {
        Tolerance { abs, rel }
    }

    /// For sums of `len` terms of magnitude about 1, rounded in a different order.
    pub fn reduction(len: usize) -> Tolerance {
        let len = len.max(1) as f32;
        Tolerance {
            abs: 1e-6 * len.sqrt() * 4.0,
            rel: 1e-5 * len.sqrt(),
        }
    }

    /// The looser of two tolerances, bound by bound.
    pub fn max(self, other: Tolerance) -> Tolerance {
        Tolerance {
            abs: self.abs.max(other.abs),
            rel: self.rel.max(other.rel),
        }
    }

    /// Whether `got` is within this tolerance of `want`.
    pub fn accepts(&self, got: f32, want: f32) -> bool {
        if got.is_nan() || want.is_nan() {
            return got.is_nan() && want.is_nan();
        }
        if got == want {
            return true;
        }
        (got - want).abs() <= self.abs + self.rel * want.abs()
    }
}

/// Compares element by element; on failure, the first mismatches (index, want, got) and the max error.
pub fn check_close(what: &str, got: &[f32], want: &[f32], tol: Tolerance) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: length {} != expected {}",
            got.len(),
            want.len()
        ));
    }
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| !tol.accepts(got[i], want[i]))
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    let max_err = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(
            0.0f32,
            |a, e| if e.is_nan() { f32::INFINITY } else { a.max(e) },
        );
    let first: Vec<String> = bad
        .iter()
        .take(8)
        .map(|&i| format!("[{i}] want {} got {}", want[i], got[i]))
        .collect();
    Err(format!(
        "{what}: {} of {} elements outside {tol:?}; max abs error {max_err}; first: {}",
        bad.len(),
        got.len(),
        first.join(", ")
    ))
}

/// Panics with [`check_close`]'s report.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: Tolerance) {
    if let Err(e) = check_close(what, got, want, tol) {
        panic!("{e}");
    }
}

/// Seeded uniform values in [lo, hi).
pub fn random_f32(seed: u64, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// Seeded uniform ids in [0, below).
pub fn random_u32(seed: u64, len: usize, below: u32) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(0..below)).collect()
}

/// Whether a missing adapter must fail GPU tests.
pub fn gpu_required() -> bool {
    std::env::var("KILN_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// A GPU device of the test's own, for tests that read exact counters (the shared device's counters
/// move with every test running beside it). Same skip rule as [`gpu_device`].
pub fn private_gpu_device(test: &str) -> Option<Device> {
    gpu_device(test)?;
    let d = Device::new(&DeviceChoice::Gpu {
        backend: None,
        name: None,
    })
    .expect("a second device on the adapter");
    d.tune_in_memory();
    Some(d)
}

/// The GPU device for tests (one per test process), or None with a printed notice when no adapter
/// exists. With `KILN_REQUIRE_GPU=1`, a missing adapter panics so the test fails.
pub fn gpu_device(test: &str) -> Option<Device> {
    static DEVICE: std::sync::OnceLock<Result<Device, String>> = std::sync::OnceLock::new();
    let dev = DEVICE.get_or_init(|| {
        let d = Device::new(&DeviceChoice::Gpu {
            backend: None,
            name: None,
        })
        .map_err(|e| e.to_string())?;
        // Tests measure their own kernel choices, as on a fresh machine, and leave the user's
        // tuning cache alone.
        d.tune_in_memory();
        Ok(d)
    });
    match dev {
        Ok(d) => Some(d.clone()),
        Err(e) if gpu_required() => panic!("{test}: KILN_REQUIRE_GPU=1 but no GPU adapter: {e}"),
        Err(_) => {
            eprintln!(
                "SKIPPED {test}: no GPU adapter (set KILN_REQUIRE_GPU=1 to make this a failure)"
            );
            None
        }
    }
}

/// The CPU device, then the test GPU device when there is one ([`gpu_device`]'s rule): what a
/// test that must hold on every device loops over.
pub fn each_device(test: &str) -> Vec<Device> {
    let mut v = vec![Device::cpu()];
    v.extend(gpu_device(test));
    v
}
