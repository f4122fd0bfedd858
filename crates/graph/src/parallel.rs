//! Data parallelism over several devices of one process, with DistributedDataParallel's
//! semantics: one replica of the parameters and optimizer per device, each global batch split
//! into contiguous shares in sample order, the packed gradients all-reduced once per step (a
//! weighted sum over host memory), then the same update on every replica. Random draws are keyed
//! by the global sample ([`Shard`]), so N replicas train what one process with the same global
//! batch trains, within float rounding.

use kiln_device::{DType, Device, Tensor};

use crate::loss::Objective;
use crate::model::Model;
use crate::optim::{Optimizer, OptimizerConfig};
use crate::params::{ParamBuilder, ParamStore};
use crate::step::{step_seed, Batch};
use crate::tape::{Shard, Tape};
use crate::{Error, Result};

/// One device's copy of the parameters and the optimizer's state.
pub struct Replica {
    /// The parameters on this replica's device.
    pub params: ParamStore,
    /// The optimizer's state for them.
    pub optimizer: Optimizer,
}

/// What a data-parallel step gives back.
#[derive(Clone, Debug)]
pub struct ParallelStepOutput {
    /// The global batch's mean loss (the replicas' losses weighted by their shares).
    pub loss: f32,
    /// Each replica's predictions for its share, in replica order (concatenated, the global
    /// batch's), on that replica's device.
    pub preds: Vec<Tensor>,
}

/// Replicas of one model on several devices, trained as one.
pub struct DataParallel {
    replicas: Vec<Replica>,
}

impl DataParallel {
    /// Builds the parameters on the first device from `builder` and copies them to the others
    /// (every replica starts from the first one's values), with an optimizer on each.
    pub fn new(
        builder: &ParamBuilder,
        devices: &[Device],
        config: OptimizerConfig,
    ) -> Result<DataParallel> {
        let Some((first, rest)) = devices.split_first() else {
            return Err(Error::Model {
                what: "data parallelism".into(),
                message: "no devices: give at least one".into(),
            });
        };
        let params = builder.build(first)?;
        let values = params.to_host()?;
        let mut replicas = vec![Replica {
            optimizer: Optimizer::new(config, &params)?,
            params,
        }];
        for d in rest {
            let params = builder.build(d)?;
            params.load(&values)?;
            replicas.push(Replica {
                optimizer: Optimizer::new(config, &params)?,
                params,
            });
        }
        Ok(DataParallel { replicas })
    }

    /// The replicas, the first one's parameters being the model's.
    pub fn replicas(&self) -> &[Replica] {
        &self.replicas
    }

    /// The first replica's parameters (every replica holds the same trainable values).
    pub fn params(&self) -> &ParamStore {
        &self.replicas[0].params
    }

    /// How a global batch of `global` samples splits: replica r takes a contiguous share, the
    /// first `global % replicas` shares one sample more. A share may be empty.
    pub fn shards(&self, global: usize) -> Vec<Shard> {
        let n = self.replicas.len();
        let (base, extra) = (global / n, global % n);
        let mut start = 0;
        (0..n)
            .map(|r| {
                let len = base + usize::from(r < extra);
                let shard = Shard { start, len, global };
                start += len;
                shard
            })
            .collect()
    }

    /// One optimizer step on a global batch, on the first replica's device: each replica runs forward and
    /// backward on its share, its loss scaled to its share of the global mean; the gradients are
    /// summed in replica order over host memory (one readback and one upload each) and every
    /// replica takes the same update. Non-trainable state (a BatchNorm's running statistics)
    /// is the first replica's afterwards, as DDP broadcasts its buffers. `objective` must be a
    /// mean over samples, as kiln's losses are.
    pub fn step(
        &mut self,
        model: &dyn Model,
        objective: &dyn Objective,
        batch: &Batch,
        seed: u64,
    ) -> Result<ParallelStepOutput> {
        let source = self.replicas[0].params.device().clone();
        let global = batch.target.shape().first().copied().unwrap_or(0);
        for x in &batch.inputs {
            if x.shape().first() != Some(&global) {
                return Err(Error::Model {
                    what: "data parallelism".into(),
                    message: format!(
                        "an input of shape {:?} in a batch of {global} targets: every input must be batch-first",
                        x.shape()
                    ),
                });
            }
        }
        let shards = self.shards(global);
        let step = self.replicas[0].optimizer.steps();
        let mut losses = Vec::with_capacity(shards.len());
        let mut preds = Vec::with_capacity(shards.len());
        // Every replica's forward and backward are submitted before any gradient is read, so
        // that GPUs work at once.
        for (replica, shard) in self.replicas.iter().zip(&shards) {
            let d = replica.params.device();
            replica.params.zero_grad()?;
            if shard.len == 0 {
                losses.push(None);
                preds.push(None);
                continue;
            }
            let share = Batch {
                inputs: batch
                    .inputs
                    .iter()
                    .map(|x| share_of(&source, d, x, shard))
                    .collect::<Result<_>>()?,
                target: share_of(&source, d, &batch.target, shard)?,
            };
            let tape = Tape::training_shard(d, step_seed(seed, step), 0, *shard);
            let inputs: Vec<_> = share
                .inputs
                .iter()
                .map(|x| tape.constant(x.clone()))
                .collect();
            let out = model.forward(&tape, &replica.params, &inputs)?;
            let loss = objective.loss(&tape, &out, &share.target)?;
            let weight = shard.len as f32 / global as f32;
            let scaled = tape.mul_scalar(&loss, weight)?;
            tape.backward(&scaled)?;
            d.flush()?;
            losses.push(Some(scaled.value().clone()));
            preds.push(Some(out.value().clone()));
        }
        let mut sum: Option<Vec<f32>> = None;
        for replica in &self.replicas {
            let g = replica
                .params
                .device()
                .to_f32(replica.params.grads_flat())?;
            match sum.as_mut() {
                None => sum = Some(g),
                Some(s) => s.iter_mut().zip(&g).for_each(|(s, g)| *s += g),
            }
        }
        let sum = sum.unwrap_or_default();
        for replica in &mut self.replicas {
            let d = replica.params.device().clone();
            d.write_f32(replica.params.grads_flat(), &sum)?;
            replica.optimizer.step(&replica.params)?;
        }
        self.broadcast_states()?;
        let mut loss = 0.0;
        for (replica, l) in self.replicas.iter().zip(&losses) {
            if let Some(l) = l {
                loss += replica.params.device().to_f32(l)?[0];
            }
        }
        Ok(ParallelStepOutput {
            loss,
            preds: preds.into_iter().flatten().collect(),
        })
    }

    /// Copies the first replica's non-trainable values to the others.
    fn broadcast_states(&self) -> Result<()> {
        let (first, rest) = self.replicas.split_first().expect("at least one replica");
        let p0 = &first.params;
        for id in p0.ids().filter(|&id| !p0.is_trainable(id)) {
            let values = p0.device().to_f32(p0.value(id))?;
            for r in rest {
                r.params.device().write_f32(r.params.value(id), &values)?;
            }
        }
        Ok(())
    }
}

/// Samples `shard.start..shard.start + shard.len` of `x` (batch-first, on `from`), on `device`:
/// a view of the values where it is the same device.
fn share_of(from: &Device, device: &Device, x: &Tensor, shard: &Shard) -> Result<Tensor> {
    let mut shape = x.shape().to_vec();
    shape[0] = shard.len;
    let per_sample = x.len() / shard.global.max(1);
    let span = shard.start * per_sample..(shard.start + shard.len) * per_sample;
    Ok(match x.dtype() {
        DType::F32 if from.same_device(device) => from.narrow(x, 0, shard.start, shard.len)?,
        DType::F32 => device.from_f32(&from.to_f32(x)?[span], &shape)?,
        DType::U32 => device.from_u32(&from.to_u32(x)?[span], &shape)?,
    })
}
