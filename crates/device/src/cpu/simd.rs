//! Runtime dispatch of the CPU device's elementwise hot loops over the vector units this CPU
//! has. kiln builds for x86-64's baseline (SSE2, 4 lanes); the loops that [`simd_fn`] wraps
//! are compiled three times, for the baseline, AVX2+FMA (8 lanes) and AVX-512 (16 lanes), and
//! each call runs the widest this CPU supports. Rust never contracts a multiply and an add into
//! an FMA, and each lane does what the scalar loop does, so the three give the same bits
//! (tested below); only the speed differs. Other architectures run the baseline build.

use std::sync::atomic::{AtomicU8, Ordering};

/// The vector instruction sets a wrapped loop can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    /// The build's own target (SSE2 on x86-64).
    Base = 1,
    /// AVX2 and FMA (x86-64-v3).
    V3 = 2,
    /// AVX-512 F, VL, BW, DQ and CD (x86-64-v4).
    V4 = 3,
}

/// 0 until detected; then a [`Level`] as u8.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The widest level this CPU runs, detected once. `KILN_CPU_SIMD=base|avx2|avx512` caps it
/// (to compare or to work around a machine's fault); a cap above the CPU's own has no effect,
/// and another value is named on stderr and ignored (this runs inside kernels, with no error
/// to return).
pub(crate) fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        1 => Level::Base,
        2 => Level::V3,
        3 => Level::V4,
        _ => {
            let level = detect().min_by_cap(std::env::var("KILN_CPU_SIMD").ok().as_deref());
            LEVEL.store(level as u8, Ordering::Relaxed);
            level
        }
    }
}

impl Level {
    fn min_by_cap(self, cap: Option<&str>) -> Level {
        let cap = match cap {
            Some("base") => Level::Base,
            Some("avx2") => Level::V3,
            None | Some("avx512") => Level::V4,
            Some(other) => {
                eprintln!(
                    "kiln: KILN_CPU_SIMD={other:?} is not base, avx2 or avx512; ignored (the CPU's widest vector unit is used)"
                );
                Level::V4
            }
        };
        if (cap as u8) < (self as u8) {
            cap
        } else {
            self
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Level {
    use std::arch::is_x86_feature_detected as has;
    if has!("avx512f")
        && has!("avx512vl")
        && has!("avx512bw")
        && has!("avx512dq")
        && has!("avx2")
        && has!("fma")
    {
        Level::V4
    } else if has!("avx2") && has!("fma") {
        Level::V3
    } else {
        Level::Base
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Level {
    Level::Base
}

/// `n` deterministic test values from `seed`, in about [-6.7, 6.7]: past the activations'
/// saturation on both sides.
#[cfg(test)]
pub(crate) fn values(seed: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 - 1000.0) / 150.0)
        .collect()
}

/// Runs `f` at every level this CPU has and checks that each gives the baseline's bits; the
/// level is process-wide, so tests running beside it run at any of them (the same bits).
#[cfg(test)]
pub(crate) fn assert_same_bits_on_every_level(what: &str, f: impl Fn() -> Vec<f32>) {
    let top = detect();
    let bits = |level: Level| {
        LEVEL.store(level as u8, Ordering::Relaxed);
        f().iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    };
    let base = bits(Level::Base);
    for level in [Level::V3, Level::V4] {
        if (level as u8) <= (top as u8) {
            assert!(
                bits(level) == base,
                "{what}: {level:?} differs from the baseline"
            );
        }
    }
    LEVEL.store(top as u8, Ordering::Relaxed);
}

/// Defines a function whose body (inlined, with everything it calls `#[inline(always)]`) is
/// compiled for each [`Level`] and dispatched on [`level`] at each call. Arguments are plain
/// identifiers; the function returns nothing.
macro_rules! simd_fn {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
                unsafe fn v4($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($arg: $ty),*) {
                    body($($arg),*)
                }
                match $crate::cpu::simd::level() {
                    // SAFETY: `level` found these instruction sets on this CPU.
                    $crate::cpu::simd::Level::V4 => return unsafe { v4($($arg),*) },
                    // SAFETY: as above.
                    $crate::cpu::simd::Level::V3 => return unsafe { v3($($arg),*) },
                    $crate::cpu::simd::Level::Base => {}
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use simd_fn;
