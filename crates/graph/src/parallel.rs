//! Data parallelism over several devices of one process, with DistributedDataParallel's
//! semantics: one replica of the parameters and optimizer per device, each global batch split
//! into contiguous shares in sample order, the packed gradients all-reduced once per step (a
//! weighted sum over host memory), then the same update on every replica. Random draws are keyed
//! by the global sample ([`Shard`]), so N replicas train what one process with the same global
//! batch trains, within float rounding.

use kiln_device::{DType, Device, Tensor};

use crate::loss::Objective;
use crate::model::Model;
use crate::optim::Optimizer;
use crate::params::ParamStore;
use crate::step::{forward_and_loss, step_seed, Batch, StepOutput};
use crate::tape::{Shard, Tape};
use crate::{Error, Result};

/// One device's copy of the parameters and the optimizer's state.
pub struct Replica {
    /// The parameters on this replica's device.
    pub params: ParamStore,
    /// The optimizer's state for them.
    pub optimizer: Optimizer,
}

/// The replicas of a data-parallel run beyond the first, whose parameters and optimizer the
/// caller keeps (a `Fit`'s, a training loop's own): every step they all take the same update.
pub struct Replicas {
    others: Vec<Replica>,
}

impl Replicas {
    /// Copies of `first` and its `optimizer` (values, settings, state) on `devices`, one
    /// replica each.
    pub fn new(first: &ParamStore, optimizer: &Optimizer, devices: &[Device]) -> Result<Replicas> {
        let others = devices
            .iter()
            .map(|d| {
                let params = first.replicate(d)?;
                let optimizer = optimizer.replicate(first, &params)?;
                Ok(Replica { params, optimizer })
            })
            .collect::<Result<_>>()?;
        Ok(Replicas { others })
    }

    /// The replicas beyond the first.
    pub fn others(&self) -> &[Replica] {
        &self.others
    }

    /// Replicas in all, the first included.
    pub fn count(&self) -> usize {
        self.others.len() + 1
    }

    /// Makes every replica the first's again (values, optimizer settings and state): after a
    /// resume, or anything else that set the first's parameters outside a step.
    pub fn sync(&mut self, first: &ParamStore, optimizer: &Optimizer) -> Result<()> {
        for r in &mut self.others {
            r.params.copy_values_from(first)?;
            r.optimizer.copy_state_from(optimizer, first, &r.params)?;
        }
        Ok(())
    }

    /// How a global batch of `global` samples splits: replica r takes a contiguous share, the
    /// first `global % replicas` shares one sample more. A share may be empty.
    pub fn shards(&self, global: usize) -> Vec<Shard> {
        let n = self.count();
        (0..n).map(|r| shard_of(global, r, n)).collect()
    }

    /// One optimizer step of every replica on a global batch on the first's device: each runs
    /// forward and backward on its share, its loss scaled to its share of the global mean; the
    /// gradients are summed in replica order over host memory (one readback and one upload
    /// each) and every replica takes the same update, at the first's rate. Non-trainable state
    /// (a BatchNorm's running statistics) is the first replica's afterwards, as DDP broadcasts
    /// its buffers. `objective` must be a mean over samples, as kiln's losses are. Returns the
    /// global batch's mean loss and predictions, on the first's device, as
    /// [`train_step`](crate::train_step) does.
    pub fn step(
        &mut self,
        model: &dyn Model,
        (first, optimizer): (&ParamStore, &mut Optimizer),
        objective: &dyn Objective,
        batch: &Batch,
        seed: u64,
    ) -> Result<StepOutput> {
        let source = first.device().clone();
        let global = batch.target.shape().first().copied().unwrap_or(0);
        if global == 0 {
            return Err(Error::Model {
                what: "data parallelism".into(),
                message: "an empty batch: give at least one sample".into(),
            });
        }
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
        let key = step_seed(seed, optimizer.steps());
        // Each tensor of the global batch read to the host at most once, for the replicas that
        // cannot take a view of it.
        let others = !self.others.is_empty();
        let global_batch: Vec<(&Tensor, Option<HostValues>)> = batch
            .inputs
            .iter()
            .chain([&batch.target])
            .map(|x| Ok((x, HostValues::read(&source, x, others)?)))
            .collect::<Result<_>>()?;
        let stores: Vec<&ParamStore> = std::iter::once(first)
            .chain(self.others.iter().map(|r| &r.params))
            .collect();
        let mut outs = Vec::with_capacity(shards.len());
        // Every replica's forward and backward are submitted before any gradient is read, so
        // that GPUs work at once.
        for (params, shard) in stores.iter().zip(&shards) {
            let d = params.device();
            params.zero_grad()?;
            if shard.len == 0 {
                continue;
            }
            let mut share = global_batch
                .iter()
                .map(|(x, host)| share_of(&source, d, x, host.as_ref(), shard))
                .collect::<Result<Vec<_>>>()?;
            let target = share.pop().expect("the target comes last");
            let share = Batch {
                inputs: share,
                target,
            };
            let tape = Tape::training_shard(d, key, 0, *shard);
            let (out, loss) = backward_share(&tape, model, params, objective, &share, *shard)?;
            d.flush()?;
            outs.push((
                d.clone(),
                shard.len,
                loss.value().clone(),
                out.value().clone(),
            ));
        }
        let mut sum = source.to_f32(first.grads_flat())?;
        for r in &self.others {
            let g = r.params.device().to_f32(r.params.grads_flat())?;
            sum.iter_mut().zip(&g).for_each(|(s, g)| *s += g);
        }
        source.write_f32(first.grads_flat(), &sum)?;
        optimizer.step(first)?;
        for r in &mut self.others {
            r.params.device().write_f32(r.params.grads_flat(), &sum)?;
            r.optimizer.set_lr(optimizer.lr());
            r.optimizer.step(&r.params)?;
        }
        self.broadcast_states(first)?;
        // The global mean loss and the predictions, gathered on the first device.
        let (mut loss, mut pred, mut pred_shape) = (0.0, vec![], vec![]);
        for (d, len, l, p) in &outs {
            loss += d.to_f32(l)?[0] * (*len as f32 / global as f32);
            pred.extend(d.to_f32(p)?);
            pred_shape = p.shape().to_vec();
        }
        if let Some(rows) = pred_shape.first_mut() {
            *rows = global;
        }
        Ok(StepOutput {
            loss: source.from_f32(&[loss], &[1])?,
            pred: source.from_f32(&pred, &pred_shape)?,
        })
    }

    /// Copies the first replica's non-trainable values to the others.
    fn broadcast_states(&self, first: &ParamStore) -> Result<()> {
        for id in first.ids().filter(|&id| !first.is_trainable(id)) {
            let values = first.device().to_f32(first.value(id))?;
            for r in &self.others {
                r.params.device().write_f32(r.params.value(id), &values)?;
            }
        }
        Ok(())
    }
}

/// A tensor of the global batch on the host.
enum HostValues {
    F32(Vec<f32>),
    U32(Vec<u32>),
}

impl HostValues {
    /// `x` read from `from` where a replica will need it: ids always (a device view of ids is
    /// not taken), values where `other_devices` will take shares.
    fn read(from: &Device, x: &Tensor, other_devices: bool) -> Result<Option<HostValues>> {
        Ok(match x.dtype() {
            DType::U32 => Some(HostValues::U32(from.to_u32(x)?)),
            DType::F32 if other_devices => Some(HostValues::F32(from.to_f32(x)?)),
            DType::F32 => None,
        })
    }
}

/// Samples `shard.start..shard.start + shard.len` of `x` (batch-first, on `from`, with its
/// `host` values where [`HostValues::read`] read them), on `device`: a view of the values where
/// it is the same device.
fn share_of(
    from: &Device,
    device: &Device,
    x: &Tensor,
    host: Option<&HostValues>,
    shard: &Shard,
) -> Result<Tensor> {
    let mut shape = x.shape().to_vec();
    shape[0] = shard.len;
    let per_sample = x.len() / shard.global.max(1);
    let span = shard.start * per_sample..(shard.start + shard.len) * per_sample;
    Ok(match host {
        _ if x.dtype() == DType::F32 && from.same_device(device) => {
            from.narrow(x, 0, shard.start, shard.len)?
        }
        Some(HostValues::F32(v)) => device.from_f32(&v[span], &shape)?,
        Some(HostValues::U32(v)) => device.from_u32(&v[span], &shape)?,
        None => unreachable!("read for every share that is not a view"),
    })
}

/// Forward and backward of one replica's or rank's `share` of a global batch on `tape`, its
/// loss scaled to the share's part of the global mean: the output and the unscaled loss.
fn backward_share(
    tape: &Tape,
    model: &dyn Model,
    params: &ParamStore,
    objective: &dyn Objective,
    share: &Batch,
    shard: Shard,
) -> Result<(crate::Var, crate::Var)> {
    let (out, loss) = forward_and_loss(tape, model, params, objective, share)?;
    let part = shard.len as f32 / shard.global.max(1) as f32;
    tape.backward(&tape.mul_scalar(&loss, part)?)?;
    Ok((out, loss))
}

/// A group of processes (ranks) that train one model together, each on its own device and its
/// share of every global batch: what MPI gives kiln (the `kiln` binary's `mpi` feature), or any
/// transport that sums buffers. Every call is collective: each rank makes the same calls in the
/// same order.
pub trait Collective {
    /// This process's place in the group, from 0.
    fn rank(&self) -> usize;
    /// Processes in the group.
    fn size(&self) -> usize;
    /// Sums `data` elementwise over the ranks, in place: every rank gets the same values.
    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<()>;
    /// Rank 0's `data` on every rank (the same length on each).
    fn broadcast(&self, data: &mut [u8]) -> Result<()>;
}

/// The samples of a global batch that are rank `rank`'s of `size`: the split
/// [`Replicas::shards`] makes.
pub fn shard_of(global: usize, rank: usize, size: usize) -> Shard {
    let size = size.max(1);
    let (base, extra) = (global / size, global % size);
    let start = rank * base + rank.min(extra);
    Shard {
        start,
        len: base + usize::from(rank < extra),
        global,
    }
}

/// One optimizer step of this rank's replica in a [`Collective`] group: forward and backward on
/// its share (`batch`, None for an empty share; `shard` says where it lies in the global
/// batch), the loss scaled to its share of the global mean; the packed gradients summed over
/// the ranks (one readback, one all-reduce, one upload), with the first rank's learning rate
/// riding along so that every rank updates at the same rate; then the update. Returns this
/// rank's mean loss and predictions (None for an empty share).
pub fn train_step_shared(
    model: &dyn Model,
    params: &ParamStore,
    optimizer: &mut Optimizer,
    objective: &dyn Objective,
    (batch, shard): (Option<&Batch>, Shard),
    seed: u64,
    group: &dyn Collective,
) -> Result<Option<StepOutput>> {
    let d = params.device();
    params.zero_grad()?;
    let out = match batch {
        Some(batch) if shard.len > 0 => {
            let tape = Tape::training_shard(d, step_seed(seed, optimizer.steps()), 0, shard);
            let (out, loss) = backward_share(&tape, model, params, objective, batch, shard)?;
            Some(StepOutput {
                loss: loss.value().clone(),
                pred: out.value().clone(),
            })
        }
        _ => None,
    };
    let mut grads = d.to_f32(params.grads_flat())?;
    grads.push(if group.rank() == 0 {
        optimizer.lr()
    } else {
        0.0
    });
    group.all_reduce_sum(&mut grads)?;
    let lr = grads.pop().expect("the rate rides at the end");
    d.write_f32(params.grads_flat(), &grads)?;
    optimizer.set_lr(lr);
    optimizer.step(params)?;
    Ok(out)
}
