//! Per-epoch training history: written as CSV and JSON, and plotted to PNG (loss and accuracy,
//! train and validation), after every epoch.

use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One epoch's figures. Counters are per training step (averaged over the epoch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub loss: f32,
    pub accuracy: f32,
    pub val_loss: Option<f32>,
    pub val_accuracy: Option<f32>,
    pub seconds: f64,
    pub samples_per_sec: f64,
    pub dispatches_per_step: f64,
    pub submits_per_step: f64,
    pub readbacks_per_step: f64,
    pub bytes_up_per_step: f64,
    pub bytes_down_per_step: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub epochs: Vec<EpochStats>,
}

static FONT_REGISTERED: std::sync::Once = std::sync::Once::new();

/// Makes "sans-serif" available to plotters (the embedded DejaVu Sans); idempotent.
pub fn register_font() {
    FONT_REGISTERED.call_once(|| {
        // DejaVu Sans (see assets/DejaVuSans.LICENSE), embedded so plots have text on any machine.
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

impl History {
    pub fn best_val_accuracy(&self) -> Option<(usize, f32)> {
        self.epochs
            .iter()
            .filter_map(|e| e.val_accuracy.map(|a| (e.epoch, a)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let mut w = csv::Writer::from_path(path).map_err(|e| Error::io(path, e.into()))?;
        for e in &self.epochs {
            w.serialize(e).map_err(|e| Error::io(path, e.into()))?;
        }
        w.flush().map_err(|e| Error::io(path, e))
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.epochs).expect("history serializes");
        std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
    }

    /// Two panels, loss and accuracy per epoch, train solid and validation dashed.
    pub fn plot(&self, path: &Path, title: &str) -> Result<()> {
        register_font();
        let err = |e: &dyn std::fmt::Display| Error::io(path, std::io::Error::other(e.to_string()));
        let root = BitMapBackend::new(path, (1000, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| err(&e))?;
        let (left, right) = root.split_horizontally(500);
        let last = self.epochs.last().map_or(1, |e| e.epoch).max(1);
        type Pick = fn(&EpochStats) -> Option<f32>;
        let panels: [(&str, Pick, Pick, _); 2] = [
            ("loss", |e| Some(e.loss), |e| e.val_loss, left),
            ("accuracy", |e| Some(e.accuracy), |e| e.val_accuracy, right),
        ];
        for (name, train, val, area) in panels {
            let values: Vec<f32> = self
                .epochs
                .iter()
                .flat_map(|e| [train(e), val(e)])
                .flatten()
                .filter(|v| v.is_finite())
                .collect();
            let min = values.iter().copied().fold(f32::INFINITY, f32::min);
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            // Loss from zero; accuracy fitted to the data, where the differences are small.
            let lo = if name == "loss" {
                min.min(0.0)
            } else {
                (min - 0.1 * (max - min).max(0.01)).max(0.0)
            };
            let hi = max.max(lo + 1e-3);
            let mut chart = ChartBuilder::on(&area)
                .caption(name, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(32)
                .y_label_area_size(48)
                .build_cartesian_2d(1f32..last as f32 + 0.001, lo..hi + 0.05 * (hi - lo))
                .map_err(|e| err(&e))?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_labels(last.clamp(2, 11))
                .x_label_formatter(&|x| format!("{x:.0}"))
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(|e| err(&e))?;
            let series = |pick: Pick| -> Vec<(f32, f32)> {
                self.epochs
                    .iter()
                    .filter_map(|e| pick(e).map(|v| (e.epoch as f32, v)))
                    .collect()
            };
            chart
                .draw_series(LineSeries::new(series(train), BLUE.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(format!("train {name}"))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE.stroke_width(2)));
            let val_points = series(val);
            if !val_points.is_empty() {
                chart
                    .draw_series(DashedLineSeries::new(val_points, 6, 4, RED.stroke_width(2)))
                    .map_err(|e| err(&e))?
                    .label(format!("validation {name}"))
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))
    }
}
