//! The metric-counting kernels (shaders/loss.wgsl `top_k_correct`, `binary_counts`,
//! `score_histogram`): their reference against direct counts, and the adapter against the
//! reference, on scores that sit on the threshold, on bin edges, at 0 and 1, and on ties.

use kiln_device::testing::{each_device, random_f32, random_u32};
use kiln_device::*;

/// Scores with the awkward values mixed in: 0, 1, the threshold 0.5, bin edges, out of range.
fn scores(n: usize, seed: u64) -> Vec<f32> {
    let special = [0.0, 1.0, 0.5, 0.25, 0.75, 0.005, 1.5, -0.5, 0.995];
    random_f32(seed, n, 0.0, 1.0)
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            if i % 3 == 0 {
                special[i / 3 % special.len()]
            } else {
                v
            }
        })
        .collect()
}

fn labels(n: usize, seed: u64) -> Vec<f32> {
    random_u32(seed, n, 2)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

#[test]
fn binary_counts_and_histogram_count_every_element() {
    let n = 1000;
    let (p, y) = (scores(n, 1), labels(n, 2));
    let tp = p
        .iter()
        .zip(&y)
        .filter(|(p, y)| **p > 0.5 && **y > 0.5)
        .count() as f32;
    let pp = p.iter().filter(|p| **p > 0.5).count() as f32;
    let ap = y.iter().filter(|y| **y > 0.5).count() as f32;
    let bins = 200;
    let mut hist = vec![0.0f32; 2 * bins];
    for (&v, &l) in p.iter().zip(&y) {
        let b = ((v.clamp(0.0, 1.0) * bins as f32).floor() as usize).min(bins - 1);
        hist[b + if l > 0.5 { bins } else { 0 }] += 1.0;
    }
    for d in each_device("metric_counts") {
        let pt = d.from_f32(&p, &[n / 10, 10]).unwrap();
        let yt = d.from_f32(&y, &[n / 10, 10]).unwrap();
        let counts = d.to_f32(&d.binary_counts(&pt, &yt, 0.5).unwrap()).unwrap();
        assert_eq!(counts, vec![tp, pp, ap], "{}", d.name());
        let h = d
            .to_f32(&d.score_histogram(&pt, &yt, bins).unwrap())
            .unwrap();
        assert_eq!(h, hist, "{}", d.name());
        assert_eq!(h.iter().sum::<f32>(), n as f32);
    }
}

#[test]
fn top_k_counts_ties_with_the_target_as_inside() {
    // Rows of 4 classes, label class 2: its score is the 1st, tied 2nd, 3rd, and last.
    let pred = [
        0.1, 0.2, 0.9, 0.3, //
        0.5, 0.1, 0.5, 0.2, //
        0.6, 0.5, 0.4, 0.1, //
        0.6, 0.5, 0.0, 0.1,
    ];
    let mut onehot = vec![0.0f32; 16];
    for r in 0..4 {
        onehot[r * 4 + 2] = 1.0;
    }
    for d in each_device("top_k") {
        let p = d.from_f32(&pred, &[4, 4]).unwrap();
        let y = d.from_f32(&onehot, &[4, 4]).unwrap();
        let top = |k| {
            d.to_f32(&d.metric(Metric::TopK { k }, &p, &y).unwrap())
                .unwrap()
        };
        assert_eq!(top(1), vec![1.0, 1.0, 0.0, 0.0], "{}", d.name());
        assert_eq!(top(2), vec![1.0, 1.0, 0.0, 0.0], "{}", d.name());
        assert_eq!(top(3), vec![1.0, 1.0, 1.0, 0.0], "{}", d.name());
        assert_eq!(top(4), vec![1.0; 4], "{}", d.name());
    }
    // Random rows: the adapter gives the reference's answer.
    let (rows, classes) = (300, 17);
    let p = random_f32(5, rows * classes, -2.0, 2.0);
    let mut y = vec![0.0f32; rows * classes];
    for (r, c) in random_u32(6, rows, classes as u32).into_iter().enumerate() {
        y[r * classes + c as usize] = 1.0;
    }
    let want = {
        let d = Device::cpu_reference();
        let (pt, yt) = (
            d.from_f32(&p, &[rows, classes]).unwrap(),
            d.from_f32(&y, &[rows, classes]).unwrap(),
        );
        d.to_f32(&d.metric(Metric::TopK { k: 5 }, &pt, &yt).unwrap())
            .unwrap()
    };
    assert!(want.contains(&0.0) && want.contains(&1.0));
    for d in each_device("top_k_random") {
        let (pt, yt) = (
            d.from_f32(&p, &[rows, classes]).unwrap(),
            d.from_f32(&y, &[rows, classes]).unwrap(),
        );
        let got = d
            .to_f32(&d.metric(Metric::TopK { k: 5 }, &pt, &yt).unwrap())
            .unwrap();
        assert_eq!(got, want, "{}", d.name());
    }
}

#[test]
fn bad_metric_arguments_are_refused() {
    let d = Device::cpu();
    let p = d.zeros(&[4, 1]).unwrap();
    let y = d.zeros(&[3, 1]).unwrap();
    assert!(d.binary_counts(&p, &y, 0.5).is_err());
    let y = d.zeros(&[4, 1]).unwrap();
    let e = d.score_histogram(&p, &y, 0).unwrap_err().to_string();
    assert!(e.contains("bins"), "{e}");
}
