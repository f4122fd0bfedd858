//! Image folders: one subfolder per class of PNG or JPEG files, read as a model's (C, H, W)
//! input. Every command walks a folder the same way: subfolders at any depth are read (an image
//! in `cats/indoor/` is a cat), in sorted order, each folder once; a symbolic link that leads back
//! into a folder being walked is refused.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::{clip, Error, Result};

/// What a folder that cannot be read should be.
const FOLDER_HINT: &str =
    "--data names a folder of images, one subfolder per class (cats/, dogs/, ...)";

fn unreadable(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
        hint: FOLDER_HINT,
    }
}

const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| unreadable(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

/// The image files under `dir`, sorted, subfolders included. `walking` holds the folders being
/// walked (by their real path), so a link back into one is found instead of followed forever.
fn walk(dir: &Path, walking: &mut HashSet<PathBuf>, out: &mut Vec<PathBuf>) -> Result<()> {
    let real = std::fs::canonicalize(dir).map_err(|e| unreadable(dir, e))?;
    if !walking.insert(real.clone()) {
        return Err(Error::bad(
            dir,
            format!(
                "a symbolic link leads back into {}, a folder it is in; remove the link",
                real.display()
            ),
        ));
    }
    for p in sorted_entries(dir)? {
        if p.is_dir() {
            walk(&p, walking, out)?;
        } else if is_image(&p) {
            out.push(p);
        }
    }
    walking.remove(&real);
    Ok(())
}

/// Every image file under `dir` in sorted order, subfolders included (what `predict` reads).
pub fn all_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    walk(dir, &mut HashSet::new(), &mut out)?;
    Ok(out)
}

/// What a labelled folder holds: (image, class) for every image in a class subfolder (at any
/// depth below it), and the images directly in `dir`, which have no class.
pub struct Labelled {
    /// (file, class folder name), sorted.
    pub images: Vec<(PathBuf, String)>,
    /// Images outside any class folder.
    pub unlabelled: Vec<PathBuf>,
}

/// The images of a labelled folder: one subfolder per class.
pub fn labelled_images(dir: &Path) -> Result<Labelled> {
    let mut images = vec![];
    let mut unlabelled = vec![];
    let mut walking = HashSet::new();
    walking.insert(std::fs::canonicalize(dir).map_err(|e| unreadable(dir, e))?);
    for p in sorted_entries(dir)? {
        if p.is_dir() {
            let class = p
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().to_string());
            let mut files = vec![];
            walk(&p, &mut walking, &mut files)?;
            images.extend(files.into_iter().map(|f| (f, class.clone())));
        } else if is_image(&p) {
            unlabelled.push(p);
        }
    }
    if images.is_empty() {
        return Err(Error::bad(
            dir,
            "no PNG or JPEG files in class subfolders; an image folder holds one subfolder per class (cats/, dogs/, ...)",
        ));
    }
    Ok(Labelled { images, unlabelled })
}

/// One image as (C, H, W) values in [0, 1]; whether it was resized.
pub fn read_image(path: &Path, c: usize, h: usize, w: usize) -> Result<(Vec<f32>, bool)> {
    let img = image::open(path).map_err(|e| Error::bad(path, clip(&e.to_string())))?;
    let resized = img.width() as usize != w || img.height() as usize != h;
    let img = if resized {
        img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let planar = |raw: &[u8], channels: usize| -> Vec<f32> {
        (0..channels)
            .flat_map(|ch| (0..h * w).map(move |p| raw[p * channels + ch] as f32 / 255.0))
            .collect()
    };
    Ok(match c {
        1 => (planar(img.to_luma8().as_raw(), 1), resized),
        _ => (planar(img.to_rgb8().as_raw(), 3), resized),
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn nested_folders_are_read_and_link_loops_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("cat/indoor")).unwrap();
        std::fs::create_dir_all(d.join("dog")).unwrap();
        for f in ["cat/a.png", "cat/indoor/b.png", "dog/c.png", "loose.png"] {
            std::fs::write(d.join(f), b"").unwrap();
        }
        let l = labelled_images(d).unwrap();
        let classes: Vec<&str> = l.images.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(classes, ["cat", "cat", "dog"]);
        assert_eq!(l.unlabelled, [d.join("loose.png")]);
        assert_eq!(all_images(d).unwrap().len(), 4);
        std::os::unix::fs::symlink(d, d.join("cat/indoor/up")).unwrap();
        for e in [
            all_images(d).unwrap_err(),
            labelled_images(d).err().unwrap(),
        ] {
            let e = e.to_string();
            assert!(e.contains("symbolic link leads back"), "{e}");
        }
    }
}
