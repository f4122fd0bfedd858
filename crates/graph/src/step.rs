//! One training step, the unit that `fit`, the benchmarks and the examples share:
//! zero the packed gradients; forward on a training tape (dropout keyed by the step); loss;
//! backward; one fused optimizer dispatch. Nothing is read back: the loss and the prediction
//! stay on the device for the caller to accumulate or read when it chooses.

use kiln_device::Tensor;

use crate::loss::Objective;
use crate::model::Model;
use crate::optim::Optimizer;
use crate::params::ParamStore;
use crate::tape::Tape;
use crate::Result;

/// A batch on the device: the model's inputs (each batch first) and the targets.
#[derive(Clone, Debug)]
pub struct Batch {
    /// One tensor per model input.
    pub inputs: Vec<Tensor>,
    /// The targets.
    pub target: Tensor,
}

/// What a step leaves on the device.
#[derive(Clone, Debug)]
pub struct StepOutput {
    /// The batch's mean loss, `[1]`.
    pub loss: Tensor,
    /// The model's output.
    pub pred: Tensor,
}

/// The key of step `step`'s dropout masks: one independent stream per step (Threefry keys), so a
/// resumed run draws the same masks as an uninterrupted one.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    seed ^ step.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// One optimizer step of `model` on `batch`; dropout masks derive from `seed` and the
/// optimizer's step count.
pub fn train_step(
    model: &dyn Model,
    params: &ParamStore,
    optimizer: &mut Optimizer,
    objective: &dyn Objective,
    batch: &Batch,
    seed: u64,
) -> Result<StepOutput> {
    let d = params.device();
    params.zero_grad()?;
    let tape = Tape::training(d, step_seed(seed, optimizer.steps()), 0);
    let (out, loss) = forward_and_loss(&tape, model, params, objective, batch)?;
    tape.backward(&loss)?;
    optimizer.step(params)?;
    Ok(StepOutput {
        loss: loss.value().clone(),
        pred: out.value().clone(),
    })
}

/// The model's output on `batch` and its loss, recorded on `tape`.
pub(crate) fn forward_and_loss(
    tape: &Tape,
    model: &dyn Model,
    params: &ParamStore,
    objective: &dyn Objective,
    batch: &Batch,
) -> Result<(crate::Var, crate::Var)> {
    let inputs: Vec<_> = batch
        .inputs
        .iter()
        .map(|x| tape.constant(x.clone()))
        .collect();
    let out = model.forward(tape, params, &inputs)?;
    let loss = objective.loss(tape, &out, &batch.target)?;
    Ok((out, loss))
}
