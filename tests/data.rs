//! The MNIST loader on broken files: every problem is an error naming the file and what is wrong.

use std::io::Write;
use std::path::{Path, PathBuf};

use kiln::data::mnist::{read_idx, DataError};

fn gz(path: &Path, bytes: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap();
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-data-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn idx(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend(payload);
    v
}

fn message(r: Result<(usize, Vec<u8>), DataError>) -> String {
    r.expect_err("an error").to_string()
}

#[test]
fn a_good_file_reads_and_broken_ones_are_named() {
    let d = dir("broken");
    let good = d.join("good.gz");
    gz(&good, &idx(2051, &[2, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]));
    let (n, bytes) = read_idx(&good, 2051, &[2, 2], None).unwrap();
    assert_eq!((n, bytes), (2, vec![1, 2, 3, 4, 5, 6, 7, 8]));

    let truncated = d.join("truncated.gz");
    let full = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &full[..full.len() - 6]).unwrap();
    let m = message(read_idx(&truncated, 2051, &[2, 2], None));
    assert!(
        m.contains("truncated.gz") && m.contains("truncated or corrupt"),
        "{m}"
    );

    let m = message(read_idx(
        &good,
        2051,
        &[2, 2],
        Some("00000000000000000000000000000000"),
    ));
    assert!(m.contains("good.gz") && m.contains("md5"), "{m}");

    let m = message(read_idx(&good, 2049, &[], None));
    assert!(m.contains("magic number 2051, expected 2049"), "{m}");

    let m = message(read_idx(&good, 2051, &[28, 28], None));
    assert!(m.contains("dimension 1 is 2, expected 28"), "{m}");

    let short = d.join("short.gz");
    gz(&short, &idx(2051, &[3, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]));
    let m = message(read_idx(&short, 2051, &[2, 2], None));
    assert!(m.contains("24 bytes for 3 items, expected 28"), "{m}");

    let missing = d.join("missing.gz");
    let m = message(read_idx(&missing, 2051, &[2, 2], None));
    assert!(m.contains("missing.gz") && m.contains("--data"), "{m}");
}

#[test]
fn the_embedded_mnist_test_set_loads_with_its_checksums() {
    let test = kiln::data::mnist::load_test(&kiln::data::mnist::default_dir()).unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(test.sample_shape, vec![1, 28, 28]);
    let kiln::graph::Inputs::F32(pixels) = &test.inputs else {
        panic!("f32 pixels")
    };
    assert!(pixels.iter().all(|&p| (0.0..=1.0).contains(&p)));
    // The first test digit is a 7.
    assert_eq!(test.targets[..10].iter().position(|&v| v == 1.0), Some(7));
}
