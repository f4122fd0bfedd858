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
        /// Inputs per output.
        fan_in: usize,
        /// Outputs per input.
        fan_out: usize,
    },
    /// All zeros.
    Zeros,
    /// All ones (Keras's normalization scales).
    Ones,
    /// An LSTM bias, rows of (i, f, g, o) blocks of `units` each: ones in the forget block, zeros
    /// elsewhere (Keras's `unit_forget_bias`).
    UnitForgetBias {
        /// Units per gate block.
        units: usize,
    },
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
    init: Init,
    /// Updated by the optimizer (false: state a layer keeps itself, such as BatchNorm's
    /// moving statistics, saved and restored like the weights).
    trainable: bool,
}

struct BuilderState {
    rng: StdRng,
    specs: Vec<Spec>,
    /// The names registered so far, to refuse a second one in constant time (a model file of
    /// many layers builds in linear time).
    names: std::collections::HashSet<String>,
}

/// Collects parameters while a model is built; `build` packs them onto a device.
///
/// Like candle's `VarBuilder`, a builder hands out prefixed views of itself: `pb.pp("encoder")`
/// registers `encoder.<name>` in the same collection, so a user's struct of layers names its own
/// weights. Clones share the collection; values are drawn in registration order from one seeded
/// generator, so a seed fixes every initial value.
///
/// ```
/// use kiln_graph::{Init, ParamBuilder};
/// let pb = ParamBuilder::new(0);
/// let enc = pb.pp("encoder");
/// enc.add("w", &[2, 3], Init::GlorotUniform).unwrap();
/// assert_eq!(pb.names(), vec!["encoder.w".to_string()]);
/// ```
#[derive(Clone)]
pub struct ParamBuilder {
    state: std::rc::Rc<std::cell::RefCell<BuilderState>>,
    prefix: String,
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
    /// An empty collection whose initial values are drawn from `seed`.
    pub fn new(seed: u64) -> ParamBuilder {
        ParamBuilder {
            state: std::rc::Rc::new(std::cell::RefCell::new(BuilderState {
                rng: StdRng::seed_from_u64(seed),
                specs: vec![],
                names: Default::default(),
            })),
            prefix: String::new(),
        }
    }

    /// A view that registers names under `prefix.` (nested views join with dots).
    pub fn pp(&self, prefix: impl AsRef<str>) -> ParamBuilder {
        ParamBuilder {
            state: self.state.clone(),
            prefix: format!("{}{}.", self.prefix, prefix.as_ref()),
        }
    }

    /// The prefix this view adds (`""` or `"encoder."`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full names registered so far, in order.
    pub fn names(&self) -> Vec<String> {
        self.state
            .borrow()
            .specs
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    /// Registers a parameter under this view's prefix. Nothing is allocated or drawn yet: a
    /// model can be built and its shapes checked before any memory is spent; `build` draws the
    /// values in registration order (so a seed fixes them).
    pub fn add(&self, name: impl AsRef<str>, shape: &[usize], init: Init) -> Result<ParamId> {
        self.register(name.as_ref(), shape, init, true)
    }

    /// A non-trainable weight (Keras's): saved, restored and loaded like a parameter, never
    /// touched by the optimizer (nor its weight decay); the layer updates it itself (BatchNorm's
    /// moving statistics). Packed after every trainable parameter.
    pub fn add_state(&self, name: impl AsRef<str>, shape: &[usize], init: Init) -> Result<ParamId> {
        self.register(name.as_ref(), shape, init, false)
    }

    fn register(
        &self,
        name: &str,
        shape: &[usize],
        init: Init,
        trainable: bool,
    ) -> Result<ParamId> {
        let name = format!("{}{}", self.prefix, name);
        let len = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .filter(|&n| n <= u32::MAX as usize)
            .ok_or_else(|| {
                Error::model(
                    &name,
                    format!("shape {shape:?} has too many elements for one tensor"),
                )
            })?;
        if let Init::Values(v) = &init {
            if v.len() != len {
                return Err(Error::model(
                    &name,
                    format!("{} values for shape {shape:?}", v.len()),
                ));
            }
        }
        let mut state = self.state.borrow_mut();
        if !state.names.insert(name.clone()) {
            return Err(Error::model(
                &name,
                "a parameter of this name exists already (give each layer its own `pp` prefix)",
            ));
        }
        state.specs.push(Spec {
            name,
            shape: shape.to_vec(),
            init,
            trainable,
        });
        Ok(ParamId(state.specs.len() - 1))
    }

    /// Checks `tensors` (a saved model's) against the registered names and shapes, strictly, as
    /// [`ParamStore::load`] will, but before anything is allocated: a model file whose config
    /// was edited to sizes its tensors do not have is refused here, not after a huge allocation.
    pub fn check(&self, tensors: &[crate::checkpoint::NamedTensor]) -> Result<()> {
        let state = self.state.borrow();
        let names: Vec<String> = state.specs.iter().map(|s| s.name.clone()).collect();
        let shapes: Vec<Vec<usize>> = state.specs.iter().map(|s| s.shape.clone()).collect();
        let report = weight_report(&names, &shapes, tensors);
        if report.is_empty() {
            Ok(())
        } else {
            Err(Error::Weights(report))
        }
    }

    /// Packs every registered parameter (of all views) onto `device`: the buffers first (so a
    /// model too large for the adapter fails before any value is drawn), then each parameter's
    /// initial values, in registration order.
    pub fn build(&self, device: &Device) -> Result<ParamStore> {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let store = ParamStore::packed(
            device,
            state.specs.iter().map(|s| s.name.clone()).collect(),
            state.specs.iter().map(|s| s.shape.clone()).collect(),
            state.specs.iter().map(|s| s.trainable).collect(),
        )?;
        // Registration order for the draws, so that adding states moves no initial value.
        for (view, spec) in store.values.iter().zip(&state.specs) {
            device.write_f32(view, &draw(&mut state.rng, &spec.shape, &spec.init))?;
        }
        Ok(store)
    }
}

/// What a strict load of `tensors` into parameters `names` of `shapes` finds wrong.
fn weight_report(
    names: &[String],
    shapes: &[Vec<usize>],
    tensors: &[crate::checkpoint::NamedTensor],
) -> crate::error::WeightReport {
    let mut report = crate::error::WeightReport::default();
    let by_name = tensors_by_name(tensors);
    for (name, shape) in names.iter().zip(shapes) {
        match by_name.get(name.as_str()) {
            None => report.missing.push(format!("{name} {shape:?}")),
            Some((_, s, v)) if s != shape || v.len() != s.iter().product::<usize>() => report
                .mismatched
                .push(format!("{name}: file {s:?}, model {shape:?}")),
            Some((_, _, v)) => {
                let bad = v.iter().filter(|x| !x.is_finite()).count();
                if bad > 0 {
                    report
                        .non_finite
                        .push(format!("{name} ({bad} of {} values)", v.len()));
                }
            }
        }
    }
    let known: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    for (name, shape, _) in tensors {
        if !known.contains(name.as_str()) {
            report.unexpected.push(format!("{name} {shape:?}"));
        }
    }
    report
}

/// The tensors of a file by name (the first of a name, as a search in order finds).
fn tensors_by_name(
    tensors: &[crate::checkpoint::NamedTensor],
) -> std::collections::HashMap<&str, &crate::checkpoint::NamedTensor> {
    let mut map = std::collections::HashMap::new();
    for t in tensors {
        map.entry(t.0.as_str()).or_insert(t);
    }
    map
}

/// A parameter's initial values under `init`.
fn draw(rng: &mut StdRng, shape: &[usize], init: &Init) -> Vec<f32> {
    let len: usize = shape.iter().product();
    let (fan_in, fan_out) = match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        _ => (
            shape[..shape.len() - 1].iter().product(),
            shape[shape.len() - 1],
        ),
    };
    match *init {
        Init::Zeros => vec![0.0; len],
        Init::Ones => vec![1.0; len],
        Init::UnitForgetBias { units } => (0..len)
            .map(|i| {
                if (i % (4 * units)) / units == 1 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect(),
        Init::GlorotUniform | Init::GlorotUniformFans { .. } => {
            let (fan_in, fan_out) = match *init {
                Init::GlorotUniformFans { fan_in, fan_out } => (fan_in, fan_out),
                _ => (fan_in, fan_out),
            };
            let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
            (0..len).map(|_| rng.random_range(-limit..limit)).collect()
        }
        Init::Uniform(lo, hi) => (0..len).map(|_| rng.random_range(lo..hi)).collect(),
        // A stack of matrices (a bidirectional layer's (D, H, 4H)): one orthogonal matrix each.
        Init::Orthogonal if shape.len() >= 3 => {
            let (rows, cols) = (shape[shape.len() - 2], shape[shape.len() - 1]);
            let stack: usize = shape[..shape.len() - 2].iter().product();
            (0..stack)
                .flat_map(|_| orthogonal(rng, rows, cols))
                .collect()
        }
        Init::Orthogonal => orthogonal(rng, fan_in, fan_out),
        Init::Values(ref v) => v.clone(),
    }
}

/// A model's parameters on a device.
pub struct ParamStore {
    device: Device,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    trainable: Vec<bool>,
    /// Elements of the packed buffers the optimizer updates (every trainable parameter).
    trainable_len: usize,
    values_flat: Tensor,
    values: Vec<Tensor>,
    grads_flat: Tensor,
    grads: Vec<Tensor>,
}

impl ParamStore {
    /// Zeroed parameters `names` of `shapes` on `device`, packed trainable first (so that the
    /// optimizer's share is one prefix), their views indexed by registration order.
    fn packed(
        device: &Device,
        names: Vec<String>,
        shapes: Vec<Vec<usize>>,
        trainable: Vec<bool>,
    ) -> Result<ParamStore> {
        let mut order: Vec<usize> = (0..shapes.len()).collect();
        order.sort_by_key(|&i| !trainable[i]);
        let packed: Vec<Vec<usize>> = order.iter().map(|&i| shapes[i].clone()).collect();
        let (values_flat, packed_values) = device.packed_zeros(&packed)?;
        let (grads_flat, packed_grads) = device.packed_zeros(&packed)?;
        // Back to registration order: views indexed by ParamId.
        let mut placed: Vec<(usize, Tensor, Tensor)> = order
            .iter()
            .zip(packed_values.into_iter().zip(packed_grads))
            .map(|(&id, (v, g))| (id, v, g))
            .collect();
        placed.sort_by_key(|p| p.0);
        let (values, grads): (Vec<Tensor>, Vec<Tensor>) =
            placed.into_iter().map(|(_, v, g)| (v, g)).unzip();
        // Where the first state starts (every element when there is none).
        let trainable_len = order
            .iter()
            .find(|&&i| !trainable[i])
            .map_or(values_flat.len(), |&i| {
                values[i].offset() - values_flat.offset()
            });
        Ok(ParamStore {
            device: device.clone(),
            names,
            shapes,
            trainable,
            trainable_len,
            values_flat,
            values,
            grads_flat,
            grads,
        })
    }

    /// The same parameters (names, shapes, what trains, values) on `device`: a data-parallel
    /// replica ([`crate::Replicas`]).
    pub fn replicate(&self, device: &Device) -> Result<ParamStore> {
        let store = ParamStore::packed(
            device,
            self.names.clone(),
            self.shapes.clone(),
            self.trainable.clone(),
        )?;
        store.copy_values_from(self)?;
        Ok(store)
    }

    /// Every value (trainable or not) from `other`, a store of the same layout on any device.
    pub fn copy_values_from(&self, other: &ParamStore) -> Result<()> {
        let host = other.device.to_f32(&other.values_flat)?;
        for (mine, theirs) in self.values.iter().zip(&other.values) {
            let at = theirs.offset() - other.values_flat.offset();
            self.device.write_f32(mine, &host[at..at + theirs.len()])?;
        }
        Ok(())
    }

    /// The device holding the parameters.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Number of parameters (tensors).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// A parameter's full name (`encoder.dense_1.kernel`).
    pub fn name(&self, id: ParamId) -> &str {
        &self.names[id.0]
    }

    /// A parameter's shape.
    pub fn shape(&self, id: ParamId) -> &[usize] {
        &self.shapes[id.0]
    }

    /// A parameter's values: a view into the packed buffer.
    pub fn value(&self, id: ParamId) -> &Tensor {
        &self.values[id.0]
    }

    /// A parameter's gradient: a view into the packed gradient buffer.
    pub fn grad(&self, id: ParamId) -> &Tensor {
        &self.grads[id.0]
    }

    /// The packed buffers (with alignment padding, which stays zero).
    pub fn values_flat(&self) -> &Tensor {
        &self.values_flat
    }

    /// Whether the optimizer updates this parameter (false for a layer's own state).
    pub fn is_trainable(&self, id: ParamId) -> bool {
        self.trainable[id.0]
    }

    /// The trainable parameters' share of the packed values, the optimizer's (the whole buffer
    /// when no layer keeps state).
    pub fn trainable_values(&self) -> Tensor {
        self.values_flat
            .prefix(self.trainable_len)
            .expect("within the buffer")
    }

    /// The trainable parameters' share of the packed gradients.
    pub fn trainable_grads(&self) -> Tensor {
        self.grads_flat
            .prefix(self.trainable_len)
            .expect("within the buffer")
    }

    /// The packed gradient buffer.
    pub fn grads_flat(&self) -> &Tensor {
        &self.grads_flat
    }

    /// Every parameter's id, in registration order.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> {
        (0..self.names.len()).map(ParamId)
    }

    /// The parameter called `name`.
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

    /// Elements of the non-trainable weights (a layer's own state, as BatchNorm's moving
    /// statistics).
    pub fn count_non_trainable(&self) -> usize {
        self.shapes
            .iter()
            .zip(&self.trainable)
            .filter(|(_, t)| !**t)
            .map(|(s, _)| s.iter().product::<usize>())
            .sum()
    }

    /// Keras's summary footer: total, trainable and (when any) non-trainable parameters.
    pub fn count_lines(&self) -> String {
        let (all, fixed) = (self.count(), self.count_non_trainable());
        if fixed == 0 {
            return format!("Total params: {all}\n");
        }
        format!(
            "Total params: {all}\nTrainable params: {}\nNon-trainable params: {fixed}\n",
            all - fixed
        )
    }

    /// One clear of the packed gradient buffer.
    pub fn zero_grad(&self) -> Result<()> {
        Ok(self.device.zero_(&self.grads_flat)?)
    }

    /// A copy of every parameter's values, kept on the device (one buffer copy, nothing read
    /// back): what early stopping keeps of its best epoch.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let copy = self.device.zeros(self.values_flat.shape())?;
        self.device.copy_into(&copy, 0, &self.values_flat)?;
        Ok(Snapshot(copy))
    }

    /// Puts a [`ParamStore::snapshot`] of this store back (one buffer copy).
    pub fn restore(&self, snapshot: &Snapshot) -> Result<()> {
        if snapshot.0.shape() != self.values_flat.shape() {
            return Err(Error::model(
                "restore",
                "the snapshot was taken of another parameter store",
            ));
        }
        Ok(self.device.copy_into(&self.values_flat, 0, &snapshot.0)?)
    }

    /// Every parameter's values on the host, by name.
    pub fn to_host(&self) -> Result<Vec<crate::checkpoint::NamedTensor>> {
        let flat = self.device.to_f32(&self.values_flat)?;
        let mut out = vec![];
        for ((name, shape), view) in self.names.iter().zip(&self.shapes).zip(&self.values) {
            // Each view's own place: states are packed after every trainable parameter.
            let at = view.offset() - self.values_flat.offset();
            out.push((
                name.clone(),
                shape.clone(),
                flat[at..at + view.len()].to_vec(),
            ));
        }
        Ok(out)
    }

    /// Overwrites the values from named host tensors, strictly (PyTorch's `load_state_dict`):
    /// every parameter must be present with its shape and no other tensor may be. Missing,
    /// unexpected and mis-shaped tensors are refused together, by name, before anything is written.
    pub fn load(&self, tensors: &[crate::checkpoint::NamedTensor]) -> Result<()> {
        let report = weight_report(&self.names, &self.shapes, tensors);
        if !report.is_empty() {
            return Err(Error::Weights(report));
        }
        let by_name = tensors_by_name(tensors);
        for (id, name) in self.names.iter().enumerate() {
            let (_, _, values) = by_name[name.as_str()];
            self.device.write_f32(&self.values[id], values)?;
        }
        Ok(())
    }

    /// Writes every parameter (by name) to a safetensors file, atomically, with `metadata`.
    pub fn save_weights(
        &self,
        path: &std::path::Path,
        metadata: &[(String, String)],
    ) -> Result<()> {
        crate::checkpoint::Checkpoint {
            params: self.to_host()?,
            optimizer: None,
            metadata: metadata.iter().cloned().collect(),
        }
        .save(path)
    }

    /// Loads a safetensors file written by [`save_weights`](Self::save_weights) (or a checkpoint)
    /// into this store, strictly, as [`load`](Self::load). Returns the file's metadata.
    pub fn load_weights(
        &self,
        path: &std::path::Path,
    ) -> Result<std::collections::HashMap<String, String>> {
        let ck = crate::checkpoint::Checkpoint::load(path)?;
        self.load(&ck.params)?;
        Ok(ck.metadata)
    }
}

#[cfg(test)]
mod init_tests {
    use super::*;

    #[test]
    fn lazy_initializers_give_keras_values_and_sizes_are_checked_before_drawing() {
        let d = Device::cpu();
        let pb = ParamBuilder::new(0);
        let bias = pb
            .add("bias", &[2, 8], Init::UnitForgetBias { units: 2 })
            .unwrap();
        let ones = pb.add("gamma", &[3], Init::Ones).unwrap();
        // Registering a tensor too large for any device fails at once, drawing nothing.
        let err = pb
            .add("huge", &[1 << 20, 1 << 20], Init::Ones)
            .unwrap_err()
            .to_string();
        assert!(err.contains("too many elements"), "{err}");
        let store = pb.build(&d).unwrap();
        let forget = [0., 0., 1., 1., 0., 0., 0., 0.];
        assert_eq!(
            d.to_f32(store.value(bias)).unwrap(),
            [forget, forget].concat()
        );
        assert_eq!(d.to_f32(store.value(ones)).unwrap(), [1.0; 3]);
    }
}

/// Every parameter's values of one [`ParamStore`], copied on its device
/// ([`ParamStore::snapshot`]).
#[derive(Clone, Debug)]
pub struct Snapshot(Tensor);
