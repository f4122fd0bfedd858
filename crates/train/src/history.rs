//! Per-epoch training history: written as CSV and JSON, and plotted to PNG (loss and the metric,
//! train and validation), after every epoch.

use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::early_stopping::Monitor;
use crate::{Error, Result};
use kiln_graph::checkpoint::write_atomic;

/// One epoch's figures. Counters are per training step (averaged over the epoch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// The epoch (from 1).
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f32,
    /// The objective's metric ([`History::metric`]: accuracy, mae) over the training samples;
    /// None for an objective without one.
    #[serde(alias = "accuracy")]
    pub metric: Option<f32>,
    /// Validation loss, when there is validation data.
    pub val_loss: Option<f32>,
    #[serde(alias = "val_accuracy")]
    /// Validation metric.
    pub val_metric: Option<f32>,
    /// The tracked metrics ([`History::tracked`]) over the training samples, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracked: Vec<f32>,
    /// The tracked metrics on the validation data, when there is some.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub val_tracked: Vec<f32>,
    /// The learning rate of the epoch's last step (None in histories written before kiln
    /// recorded it).
    #[serde(default)]
    pub learning_rate: Option<f32>,
    /// Wall time of the epoch's training.
    pub seconds: f64,
    /// Training samples per second.
    pub samples_per_sec: f64,
    /// Dispatches per step.
    pub dispatches_per_step: f64,
    /// Submits per step.
    pub submits_per_step: f64,
    /// Readbacks per step.
    pub readbacks_per_step: f64,
    /// Bytes uploaded per step.
    pub bytes_up_per_step: f64,
    /// Bytes read back per step.
    pub bytes_down_per_step: f64,
}

/// One figure of an epoch, if the run has it: a plot panel's series.
type Pick<'a> = Box<dyn Fn(&EpochStats) -> Option<f32> + 'a>;

/// One cell of the history files.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell {
    /// A count (the epoch).
    Int(usize),
    /// A figure, empty when the run lacks it.
    Value(Option<f32>),
    /// A measurement.
    Wide(f64),
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Int(n) => write!(f, "{n}"),
            Cell::Value(Some(v)) => write!(f, "{v}"),
            Cell::Value(None) => Ok(()),
            Cell::Wide(v) => write!(f, "{v}"),
        }
    }
}

/// One epoch's columns, serialized as a JSON object in column order.
struct Row(Vec<(String, Cell)>);

impl Serialize for Row {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, cell) in &self.0 {
            match cell {
                Cell::Int(n) => map.serialize_entry(name, n)?,
                Cell::Value(v) => map.serialize_entry(name, v)?,
                Cell::Wide(v) => map.serialize_entry(name, v)?,
            }
        }
        map.end()
    }
}

/// Every epoch of a run, and which metric its `metric` columns hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// One entry per finished epoch.
    pub epochs: Vec<EpochStats>,
    /// The metric's name (`accuracy`, `mae`); None when the objective has no metric.
    #[serde(default = "accuracy")]
    pub metric: Option<String>,
    /// Whether a higher metric is better (accuracy) or a lower (errors).
    #[serde(default = "yes")]
    pub higher_is_better: bool,
    /// The metrics tracked beside it ([`EpochStats::tracked`] holds their values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracked: Vec<kiln_graph::TrackedMetric>,
}

fn accuracy() -> Option<String> {
    Some("accuracy".into())
}

fn yes() -> bool {
    true
}

impl Default for History {
    fn default() -> Self {
        History {
            epochs: vec![],
            metric: accuracy(),
            higher_is_better: true,
            tracked: vec![],
        }
    }
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
    /// The epoch with the best validation metric, and that metric (the last of equals, as a max
    /// by value); by the validation loss when the objective has no metric.
    pub fn best_val(&self) -> Option<(usize, f32)> {
        let by = if self.metric.is_some() {
            Monitor::ValMetric
        } else {
            Monitor::ValLoss
        };
        self.best_by(by)
    }

    /// The epoch with the best value of `monitor` (losses lowest, the metric in its direction;
    /// the last of equals), and that value.
    pub fn best_by(&self, monitor: Monitor) -> Option<(usize, f32)> {
        let higher = monitor.higher_is_better(self);
        let better = |a: f32, b: f32| if higher { a > b } else { a < b };
        self.epochs
            .iter()
            .filter_map(|e| monitor.value(e).map(|a| (e.epoch, a)))
            .filter(|(_, a)| a.is_finite())
            .fold(None, |best: Option<(usize, f32)>, (e, a)| match best {
                Some((_, b)) if better(b, a) => best,
                _ => Some((e, a)),
            })
    }

    /// One epoch's columns in order, the metric under its Keras name (`accuracy`,
    /// `val_accuracy`, `mae`), each tracked metric after it (`auc`, `val_auc`); a run without a
    /// metric has no metric columns.
    pub fn columns(&self, e: &EpochStats) -> Vec<(String, Cell)> {
        let mut cols = vec![
            ("epoch".to_string(), Cell::Int(e.epoch)),
            ("loss".to_string(), Cell::Value(Some(e.loss))),
        ];
        if let Some(m) = &self.metric {
            cols.push((m.clone(), Cell::Value(e.metric)));
        }
        for (i, m) in self.tracked.iter().enumerate() {
            cols.push((m.name(), Cell::Value(e.tracked.get(i).copied())));
        }
        cols.push(("val_loss".to_string(), Cell::Value(e.val_loss)));
        if let Some(m) = &self.metric {
            cols.push((format!("val_{m}"), Cell::Value(e.val_metric)));
        }
        for (i, m) in self.tracked.iter().enumerate() {
            let v = e.val_tracked.get(i).copied();
            cols.push((format!("val_{}", m.name()), Cell::Value(v)));
        }
        cols.push(("learning_rate".to_string(), Cell::Value(e.learning_rate)));
        for (name, v) in [
            ("seconds", e.seconds),
            ("samples_per_sec", e.samples_per_sec),
            ("dispatches_per_step", e.dispatches_per_step),
            ("submits_per_step", e.submits_per_step),
            ("readbacks_per_step", e.readbacks_per_step),
            ("bytes_up_per_step", e.bytes_up_per_step),
            ("bytes_down_per_step", e.bytes_down_per_step),
        ] {
            cols.push((name.to_string(), Cell::Wide(v)));
        }
        cols
    }

    /// Writes the epochs as CSV, atomically: Keras's column names (`accuracy`, `val_accuracy`).
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let mut w = csv::Writer::from_writer(vec![]);
        let io = |e: csv::Error| Error::io(path, e.into());
        let header = match self.epochs.first() {
            Some(e) => self.columns(e).into_iter().map(|(n, _)| n).collect(),
            None => vec!["epoch".to_string(), "loss".to_string()],
        };
        w.write_record(&header).map_err(io)?;
        for e in &self.epochs {
            w.write_record(self.columns(e).iter().map(|(_, c)| c.to_string()))
                .map_err(io)?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))?;
        Ok(write_atomic(path, &bytes)?)
    }

    /// Writes the epochs as JSON, atomically: a list of objects keyed as the CSV's columns.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let rows: Vec<Row> = self.epochs.iter().map(|e| Row(self.columns(e))).collect();
        let text = serde_json::to_string_pretty(&rows).expect("history serializes");
        Ok(write_atomic(path, (text + "\n").as_bytes())?)
    }

    /// One panel per figure, loss, the metric and each tracked metric per epoch, train solid and
    /// validation dashed, 500 pixels wide each; drawn into a temporary file beside `path`, then
    /// renamed over it.
    pub fn plot(&self, path: &Path, title: &str) -> Result<()> {
        kiln_graph::checkpoint::write_atomic_with(path, |_, tmp| self.draw(tmp, title))
    }

    /// The plot's panels: (name, train, validation, whether higher is better: such a panel's
    /// axis is fitted to the data, where differences are small; losses and errors start from
    /// zero).
    fn figures(&self) -> Vec<(String, Pick<'_>, Pick<'_>, bool)> {
        let mut figures: Vec<(String, Pick, Pick, bool)> = vec![(
            "loss".into(),
            Box::new(|e| Some(e.loss)),
            Box::new(|e| e.val_loss),
            false,
        )];
        if let Some(metric) = &self.metric {
            figures.push((
                metric.clone(),
                Box::new(|e| e.metric),
                Box::new(|e| e.val_metric),
                self.higher_is_better,
            ));
        }
        for (i, m) in self.tracked.iter().enumerate() {
            figures.push((
                m.name(),
                Box::new(move |e| e.tracked.get(i).copied()),
                Box::new(move |e| e.val_tracked.get(i).copied()),
                m.higher_is_better(),
            ));
        }
        figures
    }

    fn draw(&self, path: &Path, title: &str) -> Result<()> {
        register_font();
        let err = |e: &dyn std::fmt::Display| Error::io(path, std::io::Error::other(e.to_string()));
        let panels = 1 + self.metric.is_some() as u32 + self.tracked.len() as u32;
        let root = BitMapBackend::new(path, (500 * panels.max(2), 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| err(&e))?;
        let last = self.epochs.last().map_or(1, |e| e.epoch).max(1);
        let figures = self.figures();
        // A run with only a loss draws it across the picture.
        let areas = if figures.len() == 1 {
            vec![root.clone()]
        } else {
            root.split_evenly((1, figures.len()))
        };
        for ((name, train, val, fitted), area) in figures.into_iter().zip(areas) {
            let name = name.as_str();
            let values: Vec<f32> = self
                .epochs
                .iter()
                .flat_map(|e| [train(e), val(e)])
                .flatten()
                .filter(|v| v.is_finite())
                .collect();
            let min = values.iter().copied().fold(f32::INFINITY, f32::min);
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lo = if !fitted {
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
