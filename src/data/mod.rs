//! Built-in datasets that need no files: XOR and two interleaved spirals (seeded), for the small
//! non-linear problems the seed's neural-network post motivates; and MNIST (`mnist`), shipped in the
//! project's `data/`. No GPU here.

pub mod mnist;
pub mod qqp;
pub mod table;

use kiln_train::{Column, Dataset};

/// The most characters of a user's text (a cell, a line, a name) that a message echoes.
pub const ECHO_CHARS: usize = 200;

/// `text` as a message echoes it: whole when short, else its first [`ECHO_CHARS`] characters and
/// how long it was (a 10 MB line must not become a 10 MB error).
pub fn clip(text: &str) -> String {
    match text.char_indices().nth(ECHO_CHARS) {
        None => text.to_string(),
        Some((end, _)) => format!("{}... ({} characters)", &text[..end], text.chars().count()),
    }
}
use rand::{rngs::StdRng, RngExt, SeedableRng};

/// The four XOR points, label 1 where exactly one input is 1.
pub fn xor() -> Dataset {
    Dataset::single(
        Column::f32(vec![0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0], &[2]),
        Column::f32(vec![0.0, 1.0, 1.0, 0.0], &[1]),
    )
}

/// Two spirals of `per_class` points each, 1.5 turns, a little noise; labels 0 and 1.
pub fn spirals(per_class: usize, seed: u64) -> Dataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut x, mut y) = (vec![], vec![]);
    for class in 0..2 {
        for i in 0..per_class {
            let t = i as f32 / per_class as f32;
            let angle = t * 3.0 * std::f32::consts::PI + class as f32 * std::f32::consts::PI;
            let r = 0.1 + 0.9 * t;
            x.push(r * angle.cos() + rng.random_range(-0.02..0.02));
            x.push(r * angle.sin() + rng.random_range(-0.02..0.02));
            y.push(class as f32);
        }
    }
    Dataset::single(Column::f32(x, &[2]), Column::f32(y, &[1]))
}
