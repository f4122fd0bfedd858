//! Parameters: named, initialised as Keras initialises them, and packed into one device buffer
//! (values) and one more (gradients), so that zeroing gradients is one clear and an optimizer step
//! is one dispatch. Each parameter is a view at an aligned offset into those buffers.

use kiln_device::{Device, Tensor};
use rand::{rngs::StdRng, RngExt, SeedableRng};

use crate::{Error, Result};

/// Index of a parameter in its store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ParamId(pub usize);

/// Initializers, as Keras defines them.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// U(-l, l) with l = sqrt(6 / (fan_in + fan_out)); fans from the first and last dimensions.
    GlorotUniform,
    /// Glorot uniform with given fans (convolution kernels: C*FH*FW in, F*FH*FW out, as Keras).
    GlorotUniformFans {
        fan_in: usize,
        fan_out: usize,
    },
    Zeros,
    /// U(lo, hi); Keras's embeddings use U(-0.05, 0.05).
    Uniform(f32, f32),
    /// An orthogonal matrix (rows or columns orthonormal), for recurrent kernels; for rank 3 and
    /// up, one per leading index.
    Orthogonal,
    /// Given values (tests, the seed's fixed weights, loaded models).
    Values(Vec<f32>),
}

struct Spec {
    name: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// Collects parameters while a model is built; `build` packs them onto a device.
pub struct ParamBuilder {
    rng: StdRng,
    specs: Vec<Spec>,
}

fn orthogonal(rng: &mut StdRng, rows: usize, cols: usize) -> Vec<f32> {
    // Gram-Schmidt on Gaussian vectors (Box-Muller) of the longer side, in f64.
    let (n, m) = if rows >= cols {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let mut vecs: Vec<Vec<f64>> = Vec::with_capacity(n);
    while vecs.len() < n {
        let mut v: Vec<f64> = (0..m)
            .map(|_| {
                let (u1, u2): (f64, f64) =
                    (rng.random_range(1e-12..1.0), rng.random_range(0.0..1.0));
                (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
            })
            .collect();
        for q in &vecs {
            let dot: f64 = v.iter().zip(q).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(q).for_each(|(a, b)| *a -= dot * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 1e-6 {
            vecs.push(v.into_iter().map(|a| a / norm).collect());
        }
    }
    let mut out = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[r * cols + c] = if rows >= cols { vecs[c][r] } else { vecs[r][c] } as f32;
        }
    }
    out
}

impl ParamBuilder {
    pub fn new(seed: u64) -> ParamBuilder {
        ParamBuilder {
            rng: StdRng::seed_from_u64(seed),
            specs: vec![],
        }
    }

    /// Registers a parameter; values are drawn now, in registration order (so a seed fixes them).
    pub fn add(&mut self, name: impl Into<String>, shape: &[usize], init: Init) -> Result<ParamId> {
        let name = name.into();
        let len: usize = shape.iter().product();
        let (fan_in, fan_out) = match shape {
            [] => (1, 1),
            [n] => (*n, *n),
            _ => (
                shape[..shape.len() - 1].iter().product(),
                shape[shape.len() - 1],
            ),
        };
        let values = match init {
            Init::Zeros => vec![0.0; len],
            Init::GlorotUniform | Init::GlorotUniformFans { .. } => {
                let (fan_in, fan_out) = match init {
                    Init::GlorotUniformFans { fan_in, fan_out } => (fan_in, fan_out),
                    _ => (fan_in, fan_out),
                };
                let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
                (0..len)
                    .map(|_| self.rng.random_range(-limit..limit))
                    .collect()
            }
            Init::Uniform(lo, hi) => (0..len).map(|_| self.rng.random_range(lo..hi)).collect(),
            // A stack of matrices (a bidirectional layer's (D, H, 4H)): one orthogonal matrix each.
            Init::Orthogonal if shape.len() >= 3 => {
                let (rows, cols) = (shape[shape.len() - 2], shape[shape.len() - 1]);
                let stack: usize = shape[..shape.len() - 2].iter().product();
                (0..stack)
                    .flat_map(|_| orthogonal(&mut self.rng, rows, cols))
                    .collect()
            }
            Init::Orthogonal => orthogonal(&mut self.rng, fan_in, fan_out),
            Init::Values(v) => {
                if v.len() != len {
                    return Err(Error::model(
                        &name,
                        format!("{} values for shape {shape:?}", v.len()),
                    ));
                }
                v
            }
        };
        if self.specs.iter().any(|s| s.name == name) {
            return Err(Error::model(
                &name,
                "a parameter of this name exists already",
            ));
        }
        self.specs.push(Spec {
            name,
            shape: shape.to_vec(),
            values,
        });
        Ok(ParamId(self.specs.len() - 1))
    }

    pub fn build(self, device: &Device) -> Result<ParamStore> {
        let shapes: Vec<Vec<usize>> = self.specs.iter().map(|s| s.shape.clone()).collect();
        let (values_flat, values) = device.packed_zeros(&shapes)?;
        let (grads_flat, grads) = device.packed_zeros(&shapes)?;
        for (view, spec) in values.iter().zip(&self.specs) {
            device.write_f32(view, &spec.values)?;
        }
        Ok(ParamStore {
            device: device.clone(),
            names: self.specs.into_iter().map(|s| s.name).collect(),
            shapes,
            values_flat,
            values,
            grads_flat,
            grads,
        })
    }
}

/// A model's parameters on a device.
pub struct ParamStore {
    device: Device,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    values_flat: Tensor,
    values: Vec<Tensor>,
    grads_flat: Tensor,
    grads: Vec<Tensor>,
}

impl ParamStore {
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn name(&self, id: ParamId) -> &str {
        &self.names[id.0]
    }

    pub fn shape(&self, id: ParamId) -> &[usize] {
        &self.shapes[id.0]
    }

    pub fn value(&self, id: ParamId) -> &Tensor {
        &self.values[id.0]
    }

    pub fn grad(&self, id: ParamId) -> &Tensor {
        &self.grads[id.0]
    }

    /// The packed buffers (with alignment padding, which stays zero).
    pub fn values_flat(&self) -> &Tensor {
        &self.values_flat
    }

    pub fn grads_flat(&self) -> &Tensor {
        &self.grads_flat
    }

    pub fn ids(&self) -> impl Iterator<Item = ParamId> {
        (0..self.names.len()).map(ParamId)
    }

    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.names.iter().position(|n| n == name).map(ParamId)
    }

    /// Number of scalars (without padding).
    pub fn count(&self) -> usize {
        self.shapes
            .iter()
            .map(|s| s.iter().product::<usize>())
            .sum()
    }

    /// One clear of the packed gradient buffer.
    pub fn zero_grad(&self) -> Result<()> {
        Ok(self.device.zero_(&self.grads_flat)?)
    }

    /// Every parameter's values on the host, by name.
    pub fn to_host(&self) -> Result<Vec<crate::checkpoint::NamedTensor>> {
        let flat = self.device.to_f32(&self.values_flat)?;
        let align = self.device.pack_alignment();
        let mut offset = 0;
        let mut out = vec![];
        for (name, shape) in self.names.iter().zip(&self.shapes) {
            let len: usize = shape.iter().product();
            out.push((
                name.clone(),
                shape.clone(),
                flat[offset..offset + len].to_vec(),
            ));
            offset += len.next_multiple_of(align);
        }
        Ok(out)
    }

    /// Overwrites the values from named host tensors. Every parameter must be present with its
    /// shape; missing, extra or mis-shaped tensors are refused together, by name.
    pub fn load(&self, tensors: &[crate::checkpoint::NamedTensor]) -> Result<()> {
        let mut problems = vec![];
        for (name, shape) in self.names.iter().zip(&self.shapes) {
            match tensors.iter().find(|t| &t.0 == name) {
                None => problems.push(format!("missing `{name}` {shape:?}")),
                Some((_, s, _)) if s != shape => problems.push(format!(
                    "`{name}` has shape {s:?}, the model wants {shape:?}"
                )),
                Some(_) => {}
            }
        }
        for (name, shape, _) in tensors {
            if !self.names.contains(name) {
                problems.push(format!("unexpected `{name}` {shape:?}"));
            }
        }
        if !problems.is_empty() {
            return Err(Error::model("loading parameters", problems.join("; ")));
        }
        for (id, name) in self.names.iter().enumerate() {
            let (_, _, values) = tensors
                .iter()
                .find(|t| &t.0 == name)
                .expect("checked above");
            self.device.write_f32(&self.values[id], values)?;
        }
        Ok(())
    }
}
