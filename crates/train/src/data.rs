//! Datasets on the host: one column per model input and one of targets, each a flat array of
//! samples of one per-sample shape, f32 values or u32 ids. Batches are uploaded as needed.

use kiln_device::Device;
use kiln_graph::{kiln_device, Batch};

use crate::{Error, Result};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

/// A column's values.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// Features, pixels, regression targets, one-hot rows.
    F32(Vec<f32>),
    /// Token ids (for an embedding) or class ids (for a sparse categorical loss).
    Ids(Vec<u32>),
}

impl Values {
    /// Number of scalars.
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::Ids(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Samples of one per-sample shape, one after the other.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// The scalars, sample after sample.
    pub values: Values,
    /// Per-sample shape (without the batch).
    pub shape: Vec<usize>,
}

impl Column {
    /// f32 samples of per-sample shape `shape`.
    pub fn f32(values: Vec<f32>, shape: &[usize]) -> Column {
        Column {
            values: Values::F32(values),
            shape: shape.to_vec(),
        }
    }

    /// u32 id samples of per-sample shape `shape`.
    pub fn ids(values: Vec<u32>, shape: &[usize]) -> Column {
        Column {
            values: Values::Ids(values),
            shape: shape.to_vec(),
        }
    }

    /// Scalars per sample.
    pub fn per_sample(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of samples (0 for a column with empty samples).
    pub fn samples(&self) -> usize {
        self.values.len() / self.per_sample().max(1)
    }

    /// The samples at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Column {
        let per = self.per_sample();
        fn pick<T: Copy>(v: &[T], idx: &[usize], per: usize) -> Vec<T> {
            idx.iter()
                .flat_map(|&i| v[i * per..(i + 1) * per].iter().copied())
                .collect()
        }
        Column {
            values: match &self.values {
                Values::F32(v) => Values::F32(pick(v, idx, per)),
                Values::Ids(v) => Values::Ids(pick(v, idx, per)),
            },
            shape: self.shape.clone(),
        }
    }

    /// The whole column on `device`, shape (samples, shape...).
    pub fn upload(&self, device: &Device) -> Result<kiln_device::Tensor> {
        let mut shape = vec![self.samples()];
        shape.extend(&self.shape);
        Ok(match &self.values {
            Values::F32(v) => device.from_f32(v, &shape)?,
            Values::Ids(v) => device.from_u32(v, &shape)?,
        })
    }
}

/// Samples on the host: one column per model input, and the targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// One column per model input, in the model's order.
    pub inputs: Vec<Column>,
    /// The targets.
    pub targets: Column,
}

impl Dataset {
    /// A dataset of the given columns.
    pub fn new(inputs: Vec<Column>, targets: Column) -> Dataset {
        Dataset { inputs, targets }
    }

    /// A dataset with one input column.
    pub fn single(input: Column, targets: Column) -> Dataset {
        Dataset::new(vec![input], targets)
    }

    /// The first (for a single-input model, the only) input column.
    pub fn input(&self) -> &Column {
        &self.inputs[0]
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.targets.samples()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that every column holds whole samples, as many as the targets.
    pub fn validate(&self) -> Result<()> {
        if self.inputs.is_empty() {
            return Err(Error::config("dataset", "has no input column"));
        }
        for (i, c) in self.inputs.iter().chain([&self.targets]).enumerate() {
            let what = if i < self.inputs.len() {
                format!("input column {}", i + 1)
            } else {
                "targets".into()
            };
            let per = c.per_sample();
            if per == 0 || c.values.len() % per != 0 || c.samples() != self.len() {
                return Err(Error::config(
                    "dataset",
                    format!(
                        "{what}: {} values of per-sample shape {:?} do not make {} samples",
                        c.values.len(),
                        c.shape,
                        self.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The samples at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Dataset {
        Dataset {
            inputs: self.inputs.iter().map(|c| c.select(idx)).collect(),
            targets: self.targets.select(idx),
        }
    }

    /// (train, validation): a seeded shuffle, the last `fraction` held out.
    pub fn split(&self, fraction: f32, seed: u64) -> (Dataset, Dataset) {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(&mut StdRng::seed_from_u64(seed));
        let n_val = ((self.len() as f32) * fraction).round() as usize;
        let (train, val) = idx.split_at(self.len() - n_val);
        (self.select(train), self.select(val))
    }

    /// The first `n` samples (all when `n` is None or larger).
    pub fn first(self, n: Option<usize>) -> Dataset {
        match n {
            Some(n) if n < self.len() => self.select(&(0..n).collect::<Vec<_>>()),
            _ => self,
        }
    }

    /// The samples at `idx` on `device`: inputs, then targets.
    pub fn batch(&self, idx: &[usize], device: &Device) -> Result<Batch> {
        let inputs = self
            .inputs
            .iter()
            .map(|c| c.select(idx).upload(device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Batch {
            inputs,
            target: self.targets.select(idx).upload(device)?,
        })
    }
}
