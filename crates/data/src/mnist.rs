//! MNIST from its IDX files (gzip): magic numbers, dimensions and the md5 of the decompressed
//! data are checked; a truncated or corrupt file is an error naming the file and what is wrong.

use std::io::Read;
use std::path::Path;

use kiln_train::{Column, Dataset};
use md5::{Digest, Md5};

/// The errors of the loaders: [`Error`](crate::Error) (`Io` and `Bad`).
pub use crate::Error as DataError;

/// (file, magic, dimensions after the count, md5 of the decompressed bytes)
const FILES: [(&str, u32, &[usize], &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        2051,
        &[28, 28],
        "6bbc9ace898e44ae57da46a324031adb",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        2049,
        &[],
        "a25bea736e30d166cdddb491f175f624",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        2051,
        &[28, 28],
        "2646ac647ad5339dbf082846283269ea",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        2049,
        &[],
        "27ae3e4e09519cfbb04c329615203637",
    ),
];

/// The largest IDX payload kiln inflates (MNIST's training images are 47 MB).
const MAX_IDX_BYTES: usize = 1 << 30;

/// Decompresses and checks one IDX file; returns (count, payload bytes).
pub fn read_idx(
    path: &Path,
    magic: u32,
    dims: &[usize],
    md5_hex: Option<&str>,
) -> Result<(usize, Vec<u8>), DataError> {
    let bad = |message: String| DataError::Bad {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
        hint: "--data names a folder holding MNIST's four .gz IDX files (the embedded copy is the project's data/mnist)",
    })?;
    // The header first; then exactly the payload it declares, and no more: a file that
    // inflates past its declared size (a gzip bomb) is refused after that many bytes.
    let gzip_error = |e: std::io::Error| {
        bad(format!(
            "not a complete gzip stream ({e}); the file is truncated or corrupt"
        ))
    };
    let mut decoder = flate2::read::GzDecoder::new(file);
    let header = 4 * (2 + dims.len());
    let mut bytes = vec![0u8; header];
    if let Err(e) = decoder.read_exact(&mut bytes) {
        return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
            bad("too short for an IDX header".into())
        } else {
            gzip_error(e)
        });
    }
    let word = |bytes: &[u8], i: usize| {
        u32::from_be_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ])
    };
    if word(&bytes, 0) != magic {
        return Err(bad(format!(
            "magic number {}, expected {magic}",
            word(&bytes, 0)
        )));
    }
    let count = word(&bytes, 1) as usize;
    for (k, &d) in dims.iter().enumerate() {
        if word(&bytes, 2 + k) as usize != d {
            return Err(bad(format!(
                "dimension {} is {}, expected {d}",
                k + 1,
                word(&bytes, 2 + k)
            )));
        }
    }
    let per: usize = dims.iter().product::<usize>().max(1);
    let payload = count
        .checked_mul(per)
        .filter(|&p| p <= MAX_IDX_BYTES)
        .ok_or_else(|| {
            bad(format!(
                "declares {count} items of {per} bytes, over kiln's limit of {MAX_IDX_BYTES} bytes for one IDX file"
            ))
        })?;
    (&mut decoder)
        .take(payload as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(gzip_error)?;
    let want = header + payload;
    if bytes.len() != want {
        return Err(bad(if bytes.len() > want {
            format!("more data than the {count} items its header declares")
        } else {
            format!("{} bytes for {count} items, expected {want}", bytes.len())
        }));
    }
    if let Some(want) = md5_hex {
        let got: String = Md5::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if got != want {
            return Err(bad(format!("md5 of the decompressed data is {got}, expected {want}: the file is corrupt or not MNIST")));
        }
    }
    Ok((count, bytes[header..].to_vec()))
}

/// Images scaled to [0, 1] as (N, 1, 28, 28), labels one-hot (N, 10).
fn dataset(
    dir: &Path,
    images: usize,
    labels: usize,
    check_md5: bool,
) -> Result<Dataset, DataError> {
    let (fi, mi, di, hi) = FILES[images];
    let (fl, ml, dl, hl) = FILES[labels];
    let (n, pixels) = read_idx(&dir.join(fi), mi, di, check_md5.then_some(hi))?;
    let (m, classes) = read_idx(&dir.join(fl), ml, dl, check_md5.then_some(hl))?;
    if n != m {
        return Err(DataError::Bad {
            path: dir.join(fl),
            message: format!("{m} labels for {n} images"),
        });
    }
    if let Some(bad) = classes.iter().find(|&&c| c > 9) {
        return Err(DataError::Bad {
            path: dir.join(fl),
            message: format!("label {bad} is not a digit"),
        });
    }
    let mut one_hot = vec![0.0f32; n * 10];
    for (i, &c) in classes.iter().enumerate() {
        one_hot[i * 10 + c as usize] = 1.0;
    }
    Ok(Dataset::single(
        Column::f32(
            pixels.iter().map(|&p| p as f32 / 255.0).collect(),
            &[1, 28, 28],
        ),
        Column::f32(one_hot, &[10]),
    ))
}

/// (train, test) from `dir` (the canonical files, md5-checked).
pub fn load(dir: &Path) -> Result<(Dataset, Dataset), DataError> {
    Ok((dataset(dir, 0, 1, true)?, dataset(dir, 2, 3, true)?))
}

/// The test set only.
pub fn load_test(dir: &Path) -> Result<Dataset, DataError> {
    dataset(dir, 2, 3, true)
}
