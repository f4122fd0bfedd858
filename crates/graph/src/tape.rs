//! Reverse-mode autodiff. A [`Tape`] records, for each op whose inputs need gradients, a closure
//! holding what its backward needs. [`Tape::backward`] walks the records in reverse, hands each its
//! output gradient, and routes the input gradients: to the next record, or (for parameters) added
//! into the parameter's view of the packed gradient buffer. A record is dropped as soon as its
//! backward has run, returning its saved tensors to the allocator: memory per step stays flat.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use kiln_device::{Device, Tensor};

use crate::params::{ParamId, ParamStore};
use crate::{Error, Result};

/// A value on the tape. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Var {
    pub(crate) id: usize,
    value: Tensor,
    pub(crate) requires_grad: bool,
    /// For parameters: the gradient view that backward accumulates into (`+=`).
    pub(crate) grad_sink: Option<Tensor>,
}

impl Var {
    /// The value.
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    /// The value's shape.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    /// Whether backward computes a gradient for it.
    pub fn requires_grad(&self) -> bool {
        self.requires_grad
    }
}

/// Receives the gradient of each output (None where nothing downstream used it; never all None)
/// and returns one gradient (or None) per input.
pub(crate) type BackwardFn =
    Box<dyn FnOnce(&Device, Vec<Option<Tensor>>) -> Result<Vec<Option<Tensor>>>>;

struct Record {
    inputs: Vec<Var>,
    outputs: Vec<usize>,
    backward: BackwardFn,
}

/// One forward pass's record. `training` turns dropout on; `Tape::inference` records nothing.
///
/// Gradients reach parameters (into the store's gradient buffer) and inputs (`Tape::input`):
///
/// ```
/// use kiln_graph::kiln_device::Device;
/// use kiln_graph::Tape;
///
/// let d = Device::cpu();
/// let tape = Tape::recording(&d);
/// let x = tape.input(d.from_f32(&[1.0, -2.0, 3.0], &[1, 3])?);
/// let loss = tape.mean(&tape.mul(&x, &x)?)?; // mean(x^2)
/// tape.backward(&loss)?;
/// let dx = d.to_f32(&tape.grad(&x).expect("x is an input"))?;
/// assert_eq!(dx, vec![2.0 / 3.0, -4.0 / 3.0, 2.0]); // 2x / n
/// # Ok::<(), kiln_graph::Error>(())
/// ```
pub struct Tape {
    device: Device,
    records: RefCell<Vec<Record>>,
    next_id: Cell<usize>,
    recording: bool,
    training: bool,
    /// Counter offset for the dropout generator, advanced by each dropout call.
    pub(crate) rng_offset: Cell<u32>,
    pub(crate) seed: u64,
    /// Where this tape's batch lies in a global batch split over replicas ([`Shard`]); random
    /// draws are keyed by the global sample.
    shard: Option<Shard>,
    /// Ids of the values made by [`Tape::input`], and after `backward` their gradients.
    watched: RefCell<Vec<usize>>,
    /// How LSTM layers run on this tape when it chooses ([`Tape::set_lstm_path`]); else the
    /// device's.
    lstm_path: Cell<Option<kiln_device::LstmPath>>,
    input_grads: RefCell<HashMap<usize, Tensor>>,
}

/// One replica's share of a global batch: samples `start..start + len` of `global`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// The first sample's index in the global batch.
    pub start: usize,
    /// Samples in this share.
    pub len: usize,
    /// Samples in the global batch.
    pub global: usize,
}

impl Tape {
    /// A tape for a training step: records backward closures, dropout active.
    pub fn training(device: &Device, seed: u64, rng_offset: u32) -> Tape {
        Tape::new(device, true, true, seed, rng_offset)
    }

    /// No recording, dropout off: evaluation and prediction.
    pub fn inference(device: &Device) -> Tape {
        Tape::new(device, false, false, 0, 0)
    }

    /// Records gradients but keeps dropout off (gradient checks).
    pub fn recording(device: &Device) -> Tape {
        Tape::new(device, true, false, 0, 0)
    }

    /// A training tape for one replica's share of a global batch: every random draw (dropout,
    /// stochastic pooling, attention dropout) takes the values the whole batch's draw would give
    /// these samples, so that the replicas together draw what one process would.
    pub fn training_shard(device: &Device, seed: u64, rng_offset: u32, shard: Shard) -> Tape {
        let mut tape = Tape::new(device, true, true, seed, rng_offset);
        tape.shard = Some(shard);
        tape
    }

    /// The generator's counter for a random draw over `len` values, which are batch-first:
    /// the counter moves past the global batch's draw, and a shard's draw starts at its first
    /// sample's values. Refused under a shard when `len` does not split into its samples.
    pub(crate) fn draw_offset(&self, what: &str, len: usize) -> Result<u32> {
        let offset = self.rng_offset.get();
        let (skip, total) = match self.shard {
            None => (0, len),
            Some(s) => {
                if s.len == 0 || !len.is_multiple_of(s.len) {
                    return Err(Error::Model {
                        what: what.to_string(),
                        message: format!(
                            "a random draw over {len} values does not split into the {} samples of this replica's share of the batch: under data parallelism, random draws must be over batch-first tensors",
                            s.len
                        ),
                    });
                }
                let per_sample = len / s.len;
                (s.start * per_sample, s.global * per_sample)
            }
        };
        self.rng_offset.set(offset.wrapping_add(total as u32));
        Ok(offset.wrapping_add(skip as u32))
    }

    fn new(device: &Device, recording: bool, training: bool, seed: u64, rng_offset: u32) -> Tape {
        Tape {
            shard: None,
            device: device.clone(),
            records: RefCell::new(vec![]),
            next_id: Cell::new(0),
            recording,
            training,
            rng_offset: Cell::new(rng_offset),
            seed,
            watched: RefCell::new(vec![]),
            lstm_path: Cell::new(None),
            input_grads: RefCell::new(HashMap::new()),
        }
    }

    /// The device the tape records on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether dropout is active.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// How LSTM layers run on this tape: its own choice, else the device's
    /// ([`Device::lstm_path`]).
    pub fn lstm_path(&self) -> kiln_device::LstmPath {
        self.lstm_path
            .get()
            .unwrap_or_else(|| self.device.lstm_path())
    }

    /// Runs this tape's LSTM layers fused or unfused, whatever the device's default.
    pub fn set_lstm_path(&self, path: kiln_device::LstmPath) {
        self.lstm_path.set(Some(path));
    }

    fn fresh_id(&self) -> usize {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// A value that needs no gradient (inputs, labels).
    pub fn constant(&self, value: Tensor) -> Var {
        Var {
            id: self.fresh_id(),
            value,
            requires_grad: false,
            grad_sink: None,
        }
    }

    /// An input whose gradient is wanted: after [`backward`](Self::backward), [`grad`](Self::grad)
    /// returns d(loss)/d(input) (saliency maps, adversarial examples, the gradient reaching each
    /// timestep). On a tape that does not record it is a constant.
    pub fn input(&self, value: Tensor) -> Var {
        let var = Var {
            id: self.fresh_id(),
            value,
            requires_grad: self.recording,
            grad_sink: None,
        };
        if self.recording {
            self.watched.borrow_mut().push(var.id);
        }
        var
    }

    /// The gradient that the last [`backward`](Self::backward) reached `x` with, for a value made
    /// by [`input`](Self::input); None when the loss does not depend on it or before backward.
    /// (Parameter gradients live in the [`ParamStore`].)
    pub fn grad(&self, x: &Var) -> Option<Tensor> {
        self.input_grads.borrow().get(&x.id).cloned()
    }

    /// A parameter: its gradient accumulates into the store's packed gradient buffer.
    pub fn param(&self, store: &ParamStore, id: ParamId) -> Var {
        Var {
            id: self.fresh_id(),
            value: store.value(id).clone(),
            requires_grad: self.recording,
            grad_sink: Some(store.grad(id).clone()),
        }
    }

    /// The result of an op. Records `backward` only when recording and some input needs a
    /// gradient; it receives d(output) and returns one gradient (or None) per input.
    pub(crate) fn record(
        &self,
        value: Tensor,
        inputs: &[&Var],
        backward: impl FnOnce(&Device, &Tensor) -> Result<Vec<Option<Tensor>>> + 'static,
    ) -> Var {
        let mut outputs = self.record_multi(vec![value], inputs, move |d, mut douts| {
            let dout = douts.pop().flatten().expect("a single output's gradient");
            backward(d, &dout)
        });
        outputs.pop().expect("one output")
    }

    /// An op with several outputs (the LSTM's sequence and last states). `backward` gets one
    /// optional gradient per output.
    /// Whether an op on `inputs` is recorded for backward (what it may keep for it).
    pub(crate) fn needs_grad(&self, inputs: &[&Var]) -> bool {
        self.recording && inputs.iter().any(|v| v.requires_grad)
    }

    pub(crate) fn record_multi(
        &self,
        values: Vec<Tensor>,
        inputs: &[&Var],
        backward: impl FnOnce(&Device, Vec<Option<Tensor>>) -> Result<Vec<Option<Tensor>>> + 'static,
    ) -> Vec<Var> {
        let requires_grad = self.needs_grad(inputs);
        let outputs: Vec<Var> = values
            .into_iter()
            .map(|value| Var {
                id: self.fresh_id(),
                value,
                requires_grad,
                grad_sink: None,
            })
            .collect();
        if requires_grad {
            self.records.borrow_mut().push(Record {
                inputs: inputs.iter().map(|v| (*v).clone()).collect(),
                outputs: outputs.iter().map(|v| v.id).collect(),
                backward: Box::new(backward),
            });
        }
        outputs
    }

    /// Back-propagates from `loss` (seeded with ones), accumulating into parameter gradients and
    /// keeping the gradients of [`input`](Self::input)s for [`grad`](Self::grad). Consumes the
    /// records: call once per tape.
    pub fn backward(&self, loss: &Var) -> Result<()> {
        let mut grads: HashMap<usize, Tensor> = HashMap::new();
        if !loss.requires_grad {
            return Ok(());
        }
        grads.insert(loss.id, self.device.full(loss.shape(), 1.0)?);
        let records = std::mem::take(&mut *self.records.borrow_mut());
        for record in records.into_iter().rev() {
            let douts: Vec<Option<Tensor>> =
                record.outputs.iter().map(|id| grads.remove(id)).collect();
            if douts.iter().all(Option::is_none) {
                continue;
            }
            let dins = (record.backward)(&self.device, douts)?;
            for (input, din) in record.inputs.iter().zip(dins) {
                let Some(din) = din else { continue };
                if !input.requires_grad {
                    continue;
                }
                if let Some(sink) = &input.grad_sink {
                    self.device.axpy(sink, &din.reshape(sink.shape())?, 1.0)?;
                } else if let Some(prev) = grads.remove(&input.id) {
                    grads.insert(input.id, self.device.add(&prev, &din)?);
                } else {
                    grads.insert(input.id, din);
                }
            }
        }
        // What is left are gradients of leaves: keep those of the watched inputs.
        let watched = self.watched.borrow();
        let mut kept = self.input_grads.borrow_mut();
        for id in watched.iter() {
            if let Some(g) = grads.remove(id) {
                kept.insert(*id, g);
            }
        }
        Ok(())
    }
}
