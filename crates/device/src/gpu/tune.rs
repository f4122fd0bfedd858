//! Autotuning: kernel choices measured on the adapter in use, per class of shapes, cached in
//! memory and on disk per adapter and driver.
//!
//! Tuned choices:
//! - the tiled matmul's tile ([`MatmulTile`]): a class is the product's M, N and K each rounded up
//!   to a power of two, whether it is batched (or sums its batch), and its transposes. At the
//!   first Auto matmul of a class the launcher times each tile (128x64, 64x64, 32x32) on the
//!   actual operands and keeps the fastest (see `Device::matmul_tile`);
//! - the fused LSTM's batch rows per workgroup (1, 2, 4 or 8, as workgroup memory allows): a class
//!   is the batch rounded up to a power of two, the hidden units and the directions; the forward
//!   recurrence is timed with each (see `Device::lstm_rows`), and the backward pass takes the
//!   forward's choice. The hidden units per thread follow the adapter's kind
//!   ([`LstmParams::units_for`](crate::params::LstmParams::units_for)); a pin (`rows8:units1`)
//!   can set them too.
//!
//! - fused attention's kernel family, blocks or rows (`Device::attention_kernels`): a class is
//!   the longer sequence rounded up to a power of two and the head widths; the forward pass is
//!   timed with each, and the backward pass takes the forward's choice. Without measuring, CPU
//!   adapters take rows and GPUs blocks.
//!
//! Every choice sums each output in the same order, so it changes speed, not results (tested).
//!
//! `KILN_AUTOTUNE`: unset, `1` or `on` measures at first use; `cached` only uses choices already
//! on disk (`kiln tune` makes them) and otherwise the shape rule; `0` or `off` always uses the
//! shape rule ([`MatmulTile::for_shape`]). `KILN_TUNE_CACHE` names the cache file instead of
//! `$XDG_CACHE_HOME/kiln/tune/<adapter>.txt` (or `~/.cache/...`). The file holds one
//! `<class> <choice>` line per class; a file that cannot be read or written only costs the
//! measurements again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use super::GpuContext;
use crate::params::{MatmulParams, MatmulSpec, MatmulTile};
use crate::Result;

/// Runs `f`, a measurement kiln makes for itself, so that the caller never sees it: its passes
/// stay out of a running profile and the work it counts (dispatches, submits, readbacks,
/// transfers, buffers created) is taken back from the counters.
pub(crate) fn unseen<T>(g: &GpuContext, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let before = g.counters.snapshot();
    let value = g.untimed(f);
    g.counters.discount(&before);
    value
}

/// The candidate whose `run` (record and submit one launch) finishes soonest: the fastest of
/// three runs each, or of one when a run is slow (it is measurement enough, and tuning a large
/// launch then costs about one run per candidate). Compile the candidates' pipelines first, so
/// that no run includes a compile. Ties go to the earlier candidate.
pub(crate) fn fastest<C: Copy>(
    g: &GpuContext,
    candidates: &[C],
    mut run: impl FnMut(C) -> Result<()>,
) -> Result<C> {
    g.sync()?;
    let mut best = (f64::INFINITY, candidates[0]);
    for &c in candidates {
        let mut quickest = f64::INFINITY;
        for _ in 0..3 {
            let start = std::time::Instant::now();
            run(c)?;
            g.sync()?;
            let took = start.elapsed().as_secs_f64();
            quickest = quickest.min(took);
            if took > 0.02 {
                break;
            }
        }
        if quickest < best.0 {
            best = (quickest, c);
        }
    }
    Ok(best.1)
}

/// When the launchers measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TuneMode {
    /// The shape rules only.
    Off,
    /// Choices from the cache file; the shape rules for classes it lacks.
    Cached,
    /// Measure at the first use of a class without a choice.
    Measure,
    /// Measure every class again at its first use in this process (`kiln tune`).
    Remeasure,
}

impl TuneMode {
    /// From `KILN_AUTOTUNE` (see the module doc); None for an unknown value.
    pub fn from_env() -> Option<TuneMode> {
        match std::env::var("KILN_AUTOTUNE").ok().as_deref() {
            None | Some("") | Some("1") | Some("on") => Some(TuneMode::Measure),
            Some("cached") => Some(TuneMode::Cached),
            Some("0") | Some("off") => Some(TuneMode::Off),
            Some(_) => None,
        }
    }
}

/// The tuned choices of one adapter.
pub(crate) struct Tuner {
    state: Mutex<State>,
}

struct State {
    /// The cache file, read at start and rewritten at each new choice; None: memory only.
    file: Option<PathBuf>,
    mode: TuneMode,
    /// Class -> choice, from the file and from this process's measurements.
    choices: BTreeMap<String, String>,
    /// Classes measured in this process (what Remeasure has already redone).
    measured: BTreeMap<String, String>,
}

impl State {
    /// `class`'s choice for this process, measured or pinned.
    fn set(&mut self, class: &str, choice: &str) {
        self.choices.insert(class.to_string(), choice.to_string());
        self.measured.insert(class.to_string(), choice.to_string());
    }
}

/// The shape class of a matmul (see the module doc).
pub(crate) fn matmul_class(p: &MatmulParams, spec: &MatmulSpec) -> String {
    let up = |v: u32| v.max(1).next_power_of_two();
    // A batch sum (chunk > 1) runs `chunk` products per tile: its own classes.
    let sum = match p.chunk {
        0 | 1 => String::new(),
        c => format!(":sum{}", up(c)),
    };
    format!(
        "matmul_tiled:m{}:n{}:k{}:batched{}:ta{}:tb{}{sum}",
        up(p.m),
        up(p.n),
        up(p.k),
        (p.batch > 1) as u8,
        spec.trans_a as u8,
        spec.trans_b as u8
    )
}

fn tile_name(t: MatmulTile) -> &'static str {
    match t {
        MatmulTile::Small => "small",
        MatmulTile::Medium => "medium",
        MatmulTile::Large | MatmulTile::Auto => "large",
    }
}

/// Whether `choice` is a choice the kernel of `class` takes (a file's other lines are skipped).
fn valid(class: &str, choice: &str) -> bool {
    if class.starts_with("matmul_tiled:") {
        tile_from(choice).is_some()
    } else if class.starts_with("lstm:") {
        lstm_choice_from(choice).is_some()
    } else if class.starts_with("attention:") {
        attention_choice_from(choice).is_some()
    } else {
        false
    }
}

/// An LSTM choice: `rows<R>` (R batch rows per workgroup, 1 to 8), optionally with
/// `:units<U>` (U hidden units per thread, a power of two up to 8; else the adapter kind's rule,
/// [`LstmParams::units_for`](crate::params::LstmParams::units_for)).
fn lstm_choice_from(choice: &str) -> Option<(u32, Option<u32>)> {
    use crate::params::LstmParams;
    let (rows, units) = match choice.split_once(':') {
        Some((rows, units)) => (
            rows,
            Some(units.strip_prefix("units")?.parse::<u32>().ok()?),
        ),
        None => (choice, None),
    };
    let rows: u32 = rows.strip_prefix("rows")?.parse().ok()?;
    let rows_ok = (1..=LstmParams::MAX_ROWS as u32).contains(&rows);
    let units_ok = units.is_none_or(|u| u.is_power_of_two() && u <= LstmParams::MAX_UNITS as u32);
    (rows_ok && units_ok).then_some((rows, units))
}

/// The shape class of an LSTM recurrence: batch rounded up to a power of two, hidden units and
/// directions (the time per step does not depend on T).
pub(crate) fn lstm_class(p: &crate::params::LstmParams) -> String {
    format!(
        "lstm:b{}:h{}:d{}",
        p.batch.max(1).next_power_of_two(),
        p.hidden,
        p.dirs
    )
}

/// The shape class of fused attention: the longer of its two sequences rounded up to a power
/// of two, and the head widths (at a few steps the family that wins says little about long
/// sequences).
pub(crate) fn attention_class(p: &crate::params::AttentionParams) -> String {
    format!(
        "attention:t{}:dk{}:dv{}",
        p.tq.max(p.tk).max(1).next_power_of_two(),
        p.dk,
        p.dv
    )
}

/// An attention choice: `blocks` (workgroups of 64 threads sharing operand tiles through
/// workgroup memory) or `rows` (a thread owns rows in registers; CPU adapters).
pub(crate) fn attention_choice_from(choice: &str) -> Option<AttentionKernels> {
    match choice {
        "blocks" => Some(AttentionKernels::Blocks),
        "rows" => Some(AttentionKernels::Rows),
        _ => None,
    }
}

/// The two attention kernel families (shaders/attention.wgsl): they give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttentionKernels {
    /// attention_forward, attention_dq, attention_dkv.
    Blocks,
    /// attention_rows_*_w<W> (shaders/gen_attention_rows.py).
    Rows,
}

impl AttentionKernels {
    pub(crate) fn name(self) -> &'static str {
        match self {
            AttentionKernels::Blocks => "blocks",
            AttentionKernels::Rows => "rows",
        }
    }
}

fn tile_from(name: &str) -> Option<MatmulTile> {
    match name {
        "small" => Some(MatmulTile::Small),
        "medium" => Some(MatmulTile::Medium),
        "large" => Some(MatmulTile::Large),
        _ => None,
    }
}

/// The cache file for an adapter: `KILN_TUNE_CACHE`, else under the user's cache folder, named
/// by the adapter, its backend and driver, and kiln's version (kernels change between versions).
fn cache_file(adapter: &wgpu::AdapterInfo) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KILN_TUNE_CACHE") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let name: String = format!(
        "{}-{:?}-{}-{}-kiln{}",
        adapter.name,
        adapter.backend,
        adapter.driver,
        adapter.driver_info,
        env!("CARGO_PKG_VERSION")
    )
    .chars()
    .map(|c| {
        if c.is_ascii_alphanumeric() || c == '.' {
            c
        } else {
            '_'
        }
    })
    .collect();
    Some(base.join("kiln").join("tune").join(format!("{name}.txt")))
}

fn read_choices(file: &Option<PathBuf>) -> BTreeMap<String, String> {
    let Some(text) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|l| {
            let (class, choice) = l.trim().split_once(' ')?;
            let choice = choice.trim();
            valid(class, choice).then(|| (class.to_string(), choice.to_string()))
        })
        .collect()
}

impl Tuner {
    pub fn new(adapter: &wgpu::AdapterInfo) -> Tuner {
        let mode = TuneMode::from_env().unwrap_or(TuneMode::Measure);
        let file = cache_file(adapter);
        let choices = if mode == TuneMode::Off {
            BTreeMap::new()
        } else {
            read_choices(&file)
        };
        Tuner {
            state: Mutex::new(State {
                mode,
                choices,
                measured: BTreeMap::new(),
                file,
            }),
        }
    }

    pub fn mode(&self) -> TuneMode {
        self.state.lock().unwrap().mode
    }

    pub fn set_mode(&self, mode: TuneMode) {
        let mut s = self.state.lock().unwrap();
        if s.mode == TuneMode::Off && mode != TuneMode::Off {
            s.choices = read_choices(&s.file);
        }
        s.mode = mode;
    }

    /// The choice to use for `class` without measuring: Some when known (and tuning is on).
    fn known_choice(&self, class: &str) -> Option<String> {
        let s = self.state.lock().unwrap();
        let table = match s.mode {
            TuneMode::Off => return None,
            TuneMode::Remeasure => &s.measured,
            TuneMode::Cached | TuneMode::Measure => &s.choices,
        };
        table.get(class).cloned()
    }

    /// The matmul tile known for `class`.
    pub fn known(&self, class: &str) -> Option<MatmulTile> {
        self.known_choice(class).and_then(|c| tile_from(&c))
    }

    /// The LSTM rows per workgroup known for `class`.
    pub fn known_rows(&self, class: &str) -> Option<u32> {
        self.known_choice(class)
            .and_then(|c| lstm_choice_from(&c))
            .map(|(rows, _)| rows)
    }

    /// The LSTM hidden units per thread chosen for `class`: pinned, or measured where a GPU's
    /// sweep found other units than [`LstmParams::units_for`](crate::params::LstmParams::units_for)'s.
    pub fn known_units(&self, class: &str) -> Option<u32> {
        self.known_choice(class)
            .and_then(|c| lstm_choice_from(&c))
            .and_then(|(_, units)| units)
    }

    /// The attention kernels known for `class`.
    pub fn known_attention(&self, class: &str) -> Option<AttentionKernels> {
        self.known_choice(class)
            .and_then(|c| attention_choice_from(&c))
    }

    /// Records measured attention kernels (see [`Tuner::record`]).
    pub fn record_attention(&self, class: &str, kernels: AttentionKernels) {
        self.record_choice(class, kernels.name().to_string());
    }

    /// Whether a class without a known choice is measured now.
    pub fn measures(&self) -> bool {
        matches!(self.mode(), TuneMode::Measure | TuneMode::Remeasure)
    }

    /// Records a measured choice and rewrites the cache file (atomically: a temporary file, then
    /// a rename). A file that cannot be written is skipped: the choice holds for this process.
    pub fn record(&self, class: &str, tile: MatmulTile) {
        self.record_choice(class, tile_name(tile).to_string());
    }

    /// Records measured LSTM rows per workgroup (see [`Tuner::record`]).
    pub fn record_rows(&self, class: &str, rows: u32) {
        self.record_choice(class, format!("rows{rows}"));
    }

    /// Records measured LSTM rows per workgroup and units per thread (see [`Tuner::record`]).
    pub fn record_lstm(&self, class: &str, rows: u32, units: u32) {
        self.record_choice(class, format!("rows{rows}:units{units}"));
    }

    fn record_choice(&self, class: &str, name: String) {
        let mut s = self.state.lock().unwrap();
        s.set(class, &name);
        let Some(file) = &s.file else { return };
        let text: String = s
            .choices
            .iter()
            .map(|(class, choice)| format!("{class} {choice}\n"))
            .collect();
        let write = || -> std::io::Result<()> {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = file.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, file)
        };
        let _ = write();
    }

    /// Sets `class`'s choice for this process only (not written to the file); false when the
    /// choice is not one that class's kernel takes.
    pub fn pin(&self, class: &str, choice: &str) -> bool {
        if !valid(class, choice) {
            return false;
        }
        self.state.lock().unwrap().set(class, choice);
        true
    }

    /// Every choice: class and tile name, in class order.
    pub fn choices(&self) -> Vec<(String, String)> {
        self.state
            .lock()
            .unwrap()
            .choices
            .clone()
            .into_iter()
            .collect()
    }

    /// The choices measured in this process: class and choice, in class order.
    pub fn measured(&self) -> Vec<(String, String)> {
        self.state
            .lock()
            .unwrap()
            .measured
            .clone()
            .into_iter()
            .collect()
    }

    /// The cache file, while there is one.
    pub fn file(&self) -> Option<PathBuf> {
        self.state.lock().unwrap().file.clone()
    }

    /// From now on, memory only: forgets the choices read from the cache file (keeping those
    /// measured or pinned in this process) and never writes the file.
    pub fn detach(&self) {
        let mut s = self.state.lock().unwrap();
        s.file = None;
        s.choices = s.measured.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_each_dimension_up_to_a_power_of_two() {
        let p = MatmulParams {
            batch: 64,
            m: 32,
            n: 676,
            k: 9,
            ..Default::default()
        };
        let spec = MatmulSpec {
            trans_b: true,
            ..Default::default()
        };
        assert_eq!(
            matmul_class(&p, &spec),
            "matmul_tiled:m32:n1024:k16:batched1:ta0:tb1"
        );
    }

    #[test]
    fn choices_survive_a_round_trip_through_the_file() {
        let dir = std::env::temp_dir().join(format!("kiln-tune-{}", std::process::id()));
        let file = Some(dir.join("t.txt"));
        let t = Tuner {
            state: Mutex::new(State {
                mode: TuneMode::Measure,
                choices: BTreeMap::new(),
                measured: BTreeMap::new(),
                file: file.clone(),
            }),
        };
        let (a, b) = ("matmul_tiled:m8:n8:k8:batched0:ta0:tb0", "lstm:b16:h64:d2");
        let c = "lstm:b64:h256:d2";
        t.record(a, MatmulTile::Small);
        t.record_rows(b, 4);
        t.record_lstm(c, 2, 4);
        let back = read_choices(&file);
        assert_eq!(back.get(a).map(String::as_str), Some("small"));
        assert_eq!(back.get(b).map(String::as_str), Some("rows4"));
        assert_eq!(back.get(c).map(String::as_str), Some("rows2:units4"));
        assert_eq!((t.known_rows(c), t.known_units(c)), (Some(2), Some(4)));
        assert_eq!(t.known(a), Some(MatmulTile::Small));
        assert_eq!(t.known_rows(b), Some(4));
        assert_eq!(t.known_rows(a), None, "a tile is not rows");
        t.set_mode(TuneMode::Off);
        assert_eq!(t.known(a), None, "off ignores choices");
        t.set_mode(TuneMode::Remeasure);
        assert_eq!(
            t.known(a),
            Some(MatmulTile::Small),
            "measured in this process"
        );
        assert!(t.pin(b, "rows2") && !t.pin(b, "rows9") && !t.pin(a, "rows2"));
        assert_eq!((t.known_rows(b), t.known_units(b)), (Some(2), None));
        assert!(t.pin(b, "rows8:units1"));
        assert_eq!((t.known_rows(b), t.known_units(b)), (Some(8), Some(1)));
        let at = "attention:t1024:dk64:dv64";
        t.record_attention(at, AttentionKernels::Rows);
        assert_eq!(
            read_choices(&file).get(at).map(String::as_str),
            Some("rows")
        );
        assert_eq!(t.known_attention(at), Some(AttentionKernels::Rows));
        assert!(t.pin(at, "blocks") && !t.pin(at, "rows2") && !t.pin(b, "blocks"));
        assert_eq!(t.known_attention(at), Some(AttentionKernels::Blocks));
        assert_eq!(
            t.known_rows(at),
            None,
            "attention choices are not LSTM rows"
        );
        for bad in [
            "rows8:units3",
            "rows8:units16",
            "rows8:",
            "rows8:u2",
            "units2",
        ] {
            assert!(!t.pin(b, bad), "{bad}");
        }
        std::fs::write(
            file.as_ref().unwrap(),
            "x junk\nbroken\nlstm:b1:h1:d1 rows16\nmatmul_tiled:c small\n",
        )
        .unwrap();
        assert_eq!(read_choices(&file).len(), 1, "unreadable lines are skipped");
        let _ = std::fs::remove_dir_all(dir);
    }
}
