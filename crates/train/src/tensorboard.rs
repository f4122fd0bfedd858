//! [`TensorBoard`]: writes each epoch's figures as TensorBoard event files, laid out as Keras's
//! `TensorBoard(log_dir)` callback lays them out: `train/` and `validation/` folders, scalars
//! `epoch_loss`, `epoch_<metric>`, each tracked metric's `epoch_<name>` and (train)
//! `epoch_learning_rate`, the epoch as the step.
//!
//! An event file is a sequence of TFRecords (length, masked CRC-32C of the length, the bytes, their
//! masked CRC-32C), each an `Event` protocol buffer: the first says `brain.Event:2`, the others hold
//! a `Summary` of scalar values. The few fields needed are encoded here; [`read_scalars`] reads
//! them back (and checks every CRC), for tests and tools.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::callback::{Callback, FitState};
use crate::{Error, Result};

/// Writes event files for TensorBoard under a folder, one per run part (train, validation).
pub struct TensorBoard {
    dir: PathBuf,
    files: Option<[EventFile; 2]>,
}

impl TensorBoard {
    /// Event files under `dir` (`train/` and `validation/`), created when training begins.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TensorBoard {
            dir: dir.into(),
            files: None,
        }
    }
}

impl Callback for TensorBoard {
    fn on_train_begin(&mut self, _state: &FitState) -> Result<()> {
        self.files = Some([
            EventFile::create(&self.dir.join("train"))?,
            EventFile::create(&self.dir.join("validation"))?,
        ]);
        Ok(())
    }

    fn on_epoch_end(&mut self, state: &FitState) -> Result<()> {
        let Some([train, val]) = &mut self.files else {
            return Ok(());
        };
        let e = state.history.epochs.last().expect("an epoch ended");
        let metric = state.history.metric.as_deref().unwrap_or("metric");
        let step = e.epoch as i64;
        let mut scalars = vec![("epoch_loss".to_string(), e.loss)];
        if let Some(m) = e.metric {
            scalars.push((format!("epoch_{metric}"), m));
        }
        let tracked = |values: &[f32]| -> Vec<(String, f32)> {
            let names = state.history.tracked.iter();
            names
                .zip(values)
                .map(|(t, &v)| (format!("epoch_{t}"), v))
                .collect()
        };
        scalars.extend(tracked(&e.tracked));
        if let Some(lr) = e.learning_rate {
            scalars.push(("epoch_learning_rate".to_string(), lr));
        }
        train.scalars(step, &scalars)?;
        let mut scalars = vec![];
        if let Some(l) = e.val_loss {
            scalars.push(("epoch_loss".to_string(), l));
        }
        if let Some(m) = e.val_metric {
            scalars.push((format!("epoch_{metric}"), m));
        }
        scalars.extend(tracked(&e.val_tracked));
        if !scalars.is_empty() {
            val.scalars(step, &scalars)?;
        }
        Ok(())
    }
}

/// One event file, flushed after every record.
struct EventFile {
    path: PathBuf,
    file: File,
}

impl EventFile {
    /// `events.out.tfevents.<seconds>.<host>.<pid>.kiln` in `dir`, with its version record.
    fn create(dir: &Path) -> Result<EventFile> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let now = wall_time();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let name = format!(
            "events.out.tfevents.{}.{host}.{}.kiln",
            now as u64,
            std::process::id()
        );
        let path = dir.join(name);
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut f = EventFile { path, file };
        let mut event = Proto::default();
        event.double(1, now);
        event.bytes(3, b"brain.Event:2");
        f.record(&event.0)?;
        Ok(f)
    }

    /// One event at `step` with a scalar per (tag, value).
    fn scalars(&mut self, step: i64, scalars: &[(String, f32)]) -> Result<()> {
        let mut summary = Proto::default();
        for (tag, value) in scalars {
            let mut v = Proto::default();
            v.bytes(1, tag.as_bytes());
            v.float(2, *value);
            summary.bytes(1, &v.0);
        }
        let mut event = Proto::default();
        event.double(1, wall_time());
        event.varint(2, step as u64);
        event.bytes(5, &summary.0);
        self.record(&event.0)
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut out = Vec::with_capacity(data.len() + 16);
        out.extend_from_slice(&len);
        out.extend_from_slice(&masked_crc(&len).to_le_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(&masked_crc(data).to_le_bytes());
        self.file
            .write_all(&out)
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// TFRecord's CRC: CRC-32C, rotated right by 15 and offset.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// A protocol buffer message being encoded.
#[derive(Default)]
struct Proto(Vec<u8>);

impl Proto {
    fn key(&mut self, field: u32, wire: u32) {
        self.raw_varint(((field << 3) | wire) as u64);
    }

    fn raw_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn varint(&mut self, field: u32, v: u64) {
        self.key(field, 0);
        self.raw_varint(v);
    }

    fn double(&mut self, field: u32, v: f64) {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn float(&mut self, field: u32, v: f32) {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.raw_varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
}

/// One scalar read back from an event file.
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    /// The event's step (the epoch).
    pub step: i64,
    /// The value's tag (`epoch_loss`).
    pub tag: String,
    /// The value.
    pub value: f32,
}

/// Every scalar of an event file, in order; an error names a truncated record or a CRC that does
/// not match.
pub fn read_scalars(path: &Path) -> Result<Vec<Scalar>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |what: &str| {
        Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string()),
        )
    };
    let mut out = vec![];
    let mut at = 0;
    while at < bytes.len() {
        let head = bytes
            .get(at..at + 12)
            .ok_or_else(|| bad("a truncated record"))?;
        let len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes")) as usize;
        if masked_crc(&head[..8]) != u32::from_le_bytes(head[8..].try_into().expect("4 bytes")) {
            return Err(bad("a record length whose CRC does not match"));
        }
        let data = bytes
            .get(at + 12..at + 12 + len)
            .ok_or_else(|| bad("a truncated record"))?;
        let crc = bytes
            .get(at + 12 + len..at + 16 + len)
            .ok_or_else(|| bad("a truncated record"))?;
        if masked_crc(data) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(bad("a record whose CRC does not match"));
        }
        event_scalars(data, &mut out).ok_or_else(|| bad("an event that does not parse"))?;
        at += 16 + len;
    }
    Ok(out)
}

/// The fields of one message: (field, wire type, varint or fixed value, bytes).
fn fields(mut b: &[u8]) -> Option<Vec<(u32, u64, &[u8])>> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }
    let mut out = vec![];
    while !b.is_empty() {
        let key = varint(&mut b)?;
        let (field, wire) = ((key >> 3) as u32, key & 7);
        let (value, data): (u64, &[u8]) = match wire {
            0 => (varint(&mut b)?, &[]),
            1 => {
                let (v, rest) = b.split_at_checked(8)?;
                b = rest;
                (u64::from_le_bytes(v.try_into().ok()?), &[])
            }
            5 => {
                let (v, rest) = b.split_at_checked(4)?;
                b = rest;
                (u32::from_le_bytes(v.try_into().ok()?) as u64, &[])
            }
            2 => {
                let n = varint(&mut b)? as usize;
                let (v, rest) = b.split_at_checked(n)?;
                b = rest;
                (0, v)
            }
            _ => return None,
        };
        out.push((field, value, data));
    }
    Some(out)
}

fn event_scalars(event: &[u8], out: &mut Vec<Scalar>) -> Option<()> {
    let event = fields(event)?;
    let step = event.iter().find(|f| f.0 == 2).map_or(0, |f| f.1 as i64);
    for (_, _, summary) in event.iter().filter(|f| f.0 == 5) {
        for (_, _, value) in fields(summary)?.into_iter().filter(|f| f.0 == 1) {
            let v = fields(value)?;
            let tag = v.iter().find(|f| f.0 == 1)?.2;
            let x = v.iter().find(|f| f.0 == 2)?.1 as u32;
            out.push(Scalar {
                step,
                tag: String::from_utf8(tag.to_vec()).ok()?,
                value: f32::from_bits(x),
            });
        }
    }
    Some(())
}
