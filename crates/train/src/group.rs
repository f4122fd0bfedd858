//! What a run that is one rank of a process group ([`crate::Fit::collective`]) does besides its
//! steps: agree with rank 0 at the start, take rank 0's state, and stop when any rank stops.

use kiln_graph::Collective;

use crate::callback::FitState;
use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::{Error, Result};

/// Refuses a rank whose model, settings, data size or kiln version differ from rank 0's (on
/// every rank, naming those that differ), then makes rank 0's parameters, optimizer state and
/// first epoch (a resumed checkpoint's) every rank's.
pub(crate) fn start(
    group: &dyn Collective,
    state: &mut FitState,
    cfg: &TrainConfig,
    train: &Dataset,
) -> Result<()> {
    let mine = fingerprint(state, cfg, train);
    let mut root = mine.to_le_bytes();
    group.broadcast(&mut root)?;
    let mut differs = vec![0.0; group.size()];
    differs[group.rank()] = f32::from(u8::from(u64::from_le_bytes(root) != mine));
    group.all_reduce_sum(&mut differs)?;
    let bad: Vec<String> = (0..group.size())
        .filter(|&r| differs[r] != 0.0)
        .map(|r| r.to_string())
        .collect();
    if !bad.is_empty() {
        return Err(Error::config(
            "ranks",
            format!(
                "rank(s) {} run another model, other settings, other data or another kiln than rank 0 (kiln {}): start every rank with the same command and files",
                bad.join(", "),
                env!("CARGO_PKG_VERSION")
            ),
        ));
    }
    let params = state.params;
    let d = params.device();
    let mut values: Vec<f32> = d.to_f32(params.values_flat())?;
    group.broadcast(bytemuck::cast_slice_mut(&mut values))?;
    d.write_f32(params.values_flat(), &values)?;
    let (step, mut m, mut v) = state.optimizer.state(params)?;
    let mut counts = [step, state.first_epoch as u64];
    group.broadcast(bytemuck::cast_slice_mut(&mut counts))?;
    group.broadcast(bytemuck::cast_slice_mut(&mut m))?;
    group.broadcast(bytemuck::cast_slice_mut(&mut v))?;
    state.optimizer.load_state(params, counts[0], &m, &v)?;
    state.first_epoch = counts[1] as usize;
    Ok(())
}

/// Whether any rank's `flag` is set (`flag` itself without a group).
pub(crate) fn any(group: Option<&dyn Collective>, flag: bool) -> Result<bool> {
    let Some(group) = group else {
        return Ok(flag);
    };
    let mut count = [f32::from(u8::from(flag))];
    group.all_reduce_sum(&mut count)?;
    Ok(count[0] > 0.0)
}

/// FNV-1a over what every rank must share: kiln's version, the model's parameters (names and
/// shapes) and config, the settings and the training set's size.
fn fingerprint(state: &FitState, cfg: &TrainConfig, train: &Dataset) -> u64 {
    let params = state.params;
    let shapes: Vec<String> = params
        .ids()
        .map(|id| format!("{}{:?}", params.name(id), params.shape(id)))
        .collect();
    let text = format!(
        "{}|{}|{}|{}|{}",
        env!("CARGO_PKG_VERSION"),
        shapes.join(","),
        state.model.config_json().unwrap_or_default(),
        serde_json::to_string(cfg).unwrap_or_default(),
        train.len()
    );
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
