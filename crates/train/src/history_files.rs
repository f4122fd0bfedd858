//! [`HistoryFiles`]: `history.csv`, `history.json` and `history.png` after every epoch.

use std::path::{Path, PathBuf};

use crate::callback::{Callback, FitState};
use crate::history::History;
use crate::Result;

/// `history.csv`, `history.json` and `history.png` in a folder, after every epoch.
pub struct HistoryFiles {
    out: PathBuf,
}

impl HistoryFiles {
    /// Writes into `out`.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        HistoryFiles { out: out.into() }
    }
}

impl Callback for HistoryFiles {
    fn on_epoch_end(&mut self, state: &FitState) -> Result<()> {
        write_history(&state.history, &self.out)
    }
}

/// history.csv, history.json, history.png in `out`.
pub fn write_history(history: &History, out: &Path) -> Result<()> {
    history.write_csv(&out.join("history.csv"))?;
    history.write_json(&out.join("history.json"))?;
    history.plot(&out.join("history.png"), "training history")
}
