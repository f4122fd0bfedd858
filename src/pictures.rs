//! Pictures of a classifier's results: a grid of test digits with predicted and true labels, and a
//! confusion matrix, as PNG.

use std::path::Path;

use plotters::prelude::*;

fn err(path: &Path, e: impl std::fmt::Display) -> String {
    format!("cannot draw {}: {e}", path.display())
}

/// Draws a picture with `draw` into a temporary file beside `path` and renames it over `path`
/// (atomically, with the umask's permissions; a `path` that is not a regular file is refused).
fn atomic_png(path: &Path, draw: impl FnOnce(&Path) -> Result<(), String>) -> Result<(), String> {
    kiln_graph::checkpoint::write_atomic_with(path, |_, tmp| {
        draw(tmp).map_err(|e| kiln_graph::Error::Write {
            path: path.into(),
            doing: "drawing it".into(),
            source: std::io::Error::other(e),
        })
    })
    .map_err(|e| e.to_string())
}

/// `count` images (28x28, values in [0, 1]) in a grid, each captioned "pred (true)", red when wrong.
pub fn digit_grid(
    path: &Path,
    images: &[f32],
    predicted: &[usize],
    truth: &[usize],
    count: usize,
) -> Result<(), String> {
    atomic_png(path, |path| {
        draw_digit_grid(path, images, predicted, truth, count)
    })
}

fn draw_digit_grid(
    path: &Path,
    images: &[f32],
    predicted: &[usize],
    truth: &[usize],
    count: usize,
) -> Result<(), String> {
    kiln_train::history::register_font();
    let cols = 10;
    let rows = count.div_ceil(cols);
    let (cell, caption) = (84u32, 18u32);
    let root = BitMapBackend::new(path, (cols as u32 * cell, rows as u32 * (cell + caption)))
        .into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    for k in 0..count.min(predicted.len()) {
        let (gx, gy) = (
            (k % cols) as i32 * cell as i32,
            (k / cols) as i32 * (cell + caption) as i32,
        );
        let scale = (cell as i32 - 4) / 28;
        for y in 0..28 {
            for x in 0..28 {
                let v = images[k * 784 + y * 28 + x].clamp(0.0, 1.0);
                let g = (255.0 * (1.0 - v)) as u8;
                let (px, py) = (gx + 2 + x as i32 * scale, gy + 2 + y as i32 * scale);
                root.draw(&Rectangle::new(
                    [(px, py), (px + scale, py + scale)],
                    RGBColor(g, g, g).filled(),
                ))
                .map_err(|e| err(path, e))?;
            }
        }
        let color = if predicted[k] == truth[k] { BLACK } else { RED };
        let text = format!("{} ({})", predicted[k], truth[k]);
        root.draw(&Text::new(
            text,
            (gx + 6, gy + cell as i32),
            ("sans-serif", 15).into_font().color(&color),
        ))
        .map_err(|e| err(path, e))?;
    }
    root.present().map_err(|e| err(path, e))
}

/// A 10x10 confusion matrix (rows: true digit, columns: predicted), shaded by row share.
pub fn confusion_matrix(
    path: &Path,
    confusion: &[[usize; 10]; 10],
    title: &str,
) -> Result<(), String> {
    atomic_png(path, |path| draw_confusion_matrix(path, confusion, title))
}

fn draw_confusion_matrix(
    path: &Path,
    confusion: &[[usize; 10]; 10],
    title: &str,
) -> Result<(), String> {
    kiln_train::history::register_font();
    let (cell, margin) = (52i32, 60i32);
    let size = (margin + 10 * cell + 20) as u32;
    let root = BitMapBackend::new(path, (size, size + 30)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    root.draw(&Text::new(
        title.to_string(),
        (margin, 8),
        ("sans-serif", 18).into_font(),
    ))
    .map_err(|e| err(path, e))?;
    let label = |s: String, at| Text::new(s, at, ("sans-serif", 15).into_font());
    root.draw(&label("predicted".into(), (margin + 4 * cell, 32)))
        .map_err(|e| err(path, e))?;
    root.draw(&label("true".into(), (6, margin + 30 + 4 * cell)))
        .map_err(|e| err(path, e))?;
    for (t, row) in confusion.iter().enumerate() {
        let total: usize = row.iter().sum::<usize>().max(1);
        root.draw(&label(
            t.to_string(),
            (margin - 18, margin + 30 + t as i32 * cell + cell / 3),
        ))
        .map_err(|e| err(path, e))?;
        root.draw(&label(
            t.to_string(),
            (margin + t as i32 * cell + cell / 2 - 4, margin + 10),
        ))
        .map_err(|e| err(path, e))?;
        for (p, &count) in row.iter().enumerate() {
            let share = count as f64 / total as f64;
            let shade = (255.0 * (1.0 - share.sqrt())) as u8;
            let (x, y) = (margin + p as i32 * cell, margin + 30 + t as i32 * cell);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell - 2, y + cell - 2)],
                RGBColor(shade, shade, 255).filled(),
            ))
            .map_err(|e| err(path, e))?;
            let color = if share > 0.5 { WHITE } else { BLACK };
            let text = Text::new(
                count.to_string(),
                (x + 6, y + cell / 3),
                ("sans-serif", 14).into_font().color(&color),
            );
            root.draw(&text).map_err(|e| err(path, e))?;
        }
    }
    root.present().map_err(|e| err(path, e))
}
