//! kiln on every WebGPU adapter: a device opened at exactly WebGPU's default limits (8 storage
//! buffers per stage, 16 KiB of workgroup memory, 256 invocations, 128 MiB per binding) trains
//! the seed's model, fused LSTM and all, to the same bits as one opened with everything the
//! adapter offers. (CI also runs every GPU test at the defaults: `KILN_LIMITS=webgpu`.)

use kiln::device::testing::gpu_device;
use kiln::device::{Device, DeviceChoice, LimitsChoice};
use kiln_cli::models::{job, JobName, JobOptions};

fn open(limits: LimitsChoice) -> Device {
    let d = Device::with_limits(
        &DeviceChoice::Gpu {
            backend: None,
            name: None,
        },
        limits,
    )
    .expect("the test adapter opens");
    d.tune_in_memory();
    d
}

/// Trains the seed's model for 20 steps of 16 pairs on the embedded data; the final weights.
fn twenty_steps(device: &Device) -> (Vec<Vec<f32>>, f32) {
    let opts = JobOptions {
        limit: Some(20 * 16),
        ..JobOptions::default()
    };
    let mut j = job(JobName::Qqp, 2019, &opts).expect("the embedded data");
    j.config.epochs = 1;
    let pb = kiln::graph::ParamBuilder::new(2019);
    let model = j.model.init(&pb).unwrap();
    let params = pb.build(device).unwrap();
    let trained = kiln::train::fit(
        &*model,
        &params,
        &j.train,
        None,
        &j.config,
        &kiln::train::RunOptions::default(),
    )
    .unwrap();
    assert_eq!(trained.optimizer.steps(), 20);
    let weights = params.to_host().unwrap().into_iter().map(|t| t.2).collect();
    (weights, trained.history.epochs[0].loss)
}

#[test]
fn the_seed_model_trains_to_the_same_bits_at_webgpu_default_limits() {
    if gpu_device("webgpu_limits").is_none() {
        return;
    }
    let webgpu = open(LimitsChoice::WebGpu);
    let info = webgpu.info();
    let limit = |name: &str| info.limits.iter().find(|l| l.0 == name).unwrap().1;
    assert_eq!(limit("max_storage_buffers_per_shader_stage"), 8);
    assert_eq!(limit("max_compute_workgroup_storage_size"), 16384);
    assert_eq!(limit("max_compute_invocations_per_workgroup"), 256);
    assert!(
        webgpu.lstm_fused_supported(64),
        "the fused LSTM runs at the defaults"
    );
    let adapter = open(LimitsChoice::Adapter);
    let (w_default, loss_default) = twenty_steps(&webgpu);
    let (w_adapter, loss_adapter) = twenty_steps(&adapter);
    assert_eq!(loss_default.to_bits(), loss_adapter.to_bits());
    assert!(loss_default.is_finite() && loss_default > 0.0);
    for (a, b) in w_default.iter().zip(&w_adapter) {
        let (a, b): (Vec<u32>, Vec<u32>) = (
            a.iter().map(|v| v.to_bits()).collect(),
            b.iter().map(|v| v.to_bits()).collect(),
        );
        assert_eq!(a, b, "weights differ between the limits");
    }
}

#[test]
fn limits_are_chosen_by_name_and_refused_when_unknown() {
    assert_eq!(
        "webgpu".parse::<LimitsChoice>().unwrap(),
        LimitsChoice::WebGpu
    );
    assert_eq!(
        "adapter".parse::<LimitsChoice>().unwrap(),
        LimitsChoice::Adapter
    );
    assert_eq!("".parse::<LimitsChoice>().unwrap(), LimitsChoice::Kiln);
    let e = "huge".parse::<LimitsChoice>().unwrap_err().to_string();
    assert!(e.contains("KILN_LIMITS") && e.contains("webgpu"), "{e}");
    // Never more than an adapter offers, whatever is asked.
    let mut small = wgpu_limits_default();
    small.max_storage_buffers_per_shader_stage = 4;
    for choice in [
        LimitsChoice::Kiln,
        LimitsChoice::WebGpu,
        LimitsChoice::Adapter,
    ] {
        assert_eq!(
            choice.required(&small).max_storage_buffers_per_shader_stage,
            4
        );
    }
    let mut big = wgpu_limits_default();
    big.max_storage_buffers_per_shader_stage = 64;
    big.max_buffer_size = 1 << 40;
    let kiln = LimitsChoice::Kiln.required(&big);
    assert_eq!(kiln.max_storage_buffers_per_shader_stage, 8);
    assert_eq!(kiln.max_buffer_size, 1 << 40);
    assert_eq!(
        LimitsChoice::WebGpu.required(&big).max_buffer_size,
        256 << 20
    );
}

fn wgpu_limits_default() -> kiln::device::wgpu::Limits {
    kiln::device::wgpu::Limits::defaults()
}
