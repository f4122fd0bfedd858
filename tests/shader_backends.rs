//! Portability without the hardware: every kernel the launchers compile, with the exact override
//! constants they compile it with, is translated by naga's SPIR-V (Vulkan), MSL (Metal), HLSL
//! (DX12) and GLSL (GL) back ends, so a kernel that Metal or DX12 would reject fails here.
//!
//! The keys come from the device's pipeline cache after a workload that reaches every launcher:
//! the quick benchmark (every kernel family, both LSTM paths, LeNet and the seed model's training
//! steps, a fit) and masked, bidirectional LSTMs. Needs an adapter (lavapipe in CI) to learn the
//! keys; without one it is skipped like the other GPU tests.

use kiln::device::testing::gpu_device;
use kiln::device::{PipelineKey, ShaderFamily};
use naga::back::{glsl, hlsl, msl, spv};
use naga::ShaderStage::Compute;

fn translate(key: &PipelineKey) -> Result<(), String> {
    let family: ShaderFamily = key.family;
    let source = family.source();
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .map_err(|e| e.emit_to_string(source))?;
    let constants: naga::back::PipelineConstants = key
        .overrides
        .iter()
        .map(|&(k, bits)| (k.to_string(), f64::from_bits(bits)))
        .collect();
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((Compute, key.entry)),
        &constants,
    )
    .map_err(|e| format!("overrides: {e}"))?;
    let entry = key.entry.to_string();
    spv::write_vec(
        &module,
        &info,
        &spv::Options::default(),
        Some(&spv::PipelineOptions {
            shader_stage: Compute,
            entry_point: entry.clone(),
        }),
    )
    .map_err(|e| format!("SPIR-V: {e}"))?;
    msl::write_string(
        &module,
        &info,
        &msl::Options {
            lang_version: (2, 1),
            ..msl::Options::default()
        },
        &msl::PipelineOptions {
            entry_point: Some((Compute, entry.clone())),
            ..msl::PipelineOptions::default()
        },
    )
    .map_err(|e| format!("MSL: {e}"))?;
    let mut hlsl_text = String::new();
    hlsl::Writer::new(
        &mut hlsl_text,
        &hlsl::Options {
            shader_model: hlsl::ShaderModel::V5_1,
            ..hlsl::Options::default()
        },
        &hlsl::PipelineOptions {
            entry_point: Some((Compute, entry.clone())),
        },
    )
    .write(&module, &info, None)
    .map_err(|e| format!("HLSL: {e}"))?;
    let mut glsl_text = String::new();
    glsl::Writer::new(
        &mut glsl_text,
        &module,
        &info,
        &glsl::Options {
            version: glsl::Version::Embedded {
                version: 310,
                is_webgl: false,
            },
            ..glsl::Options::default()
        },
        &glsl::PipelineOptions {
            shader_stage: Compute,
            entry_point: entry,
            multiview: None,
        },
        naga::proc::BoundsCheckPolicies::default(),
    )
    .map_err(|e| format!("GLSL: {e}"))?
    .write()
    .map_err(|e| format!("GLSL: {e}"))?;
    Ok(())
}

#[test]
fn every_kernel_the_launchers_compile_translates_to_spirv_msl_hlsl_and_glsl() {
    let Some(d) = gpu_device("shader_backends") else {
        return;
    };
    kiln::bench::run(
        &d,
        &kiln::bench::Options {
            filter: None,
            repeats: 1,
            quick: true,
        },
    )
    .unwrap();
    // Masks, initial states and the backward of a bidirectional LSTM (the bench's are unmasked).
    masked_lstm(&d);
    let keys = d.pipeline_keys();
    let families: std::collections::BTreeSet<&str> = keys.iter().map(|k| k.family.file()).collect();
    assert_eq!(
        families.len(),
        ShaderFamily::ALL.len(),
        "the workload reaches every family: {families:?}"
    );
    let mut failures = vec![];
    for key in &keys {
        if let Err(e) = translate(key) {
            failures.push(format!(
                "{} {} {:?}: {e}",
                key.family.file(),
                key.entry,
                key.overrides
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} kernels fail a back end:\n{}",
        failures.len(),
        keys.len(),
        failures.join("\n")
    );
    eprintln!("{} kernels translated by four back ends", keys.len());
}

fn masked_lstm(d: &kiln::device::Device) {
    use kiln::graph::layers::{BidirectionalConfig, EmbeddingConfig, LstmConfig};
    use kiln::graph::*;
    let config = SequentialConfig::new(&[5])
        .add(EmbeddingConfig::new(9, 3).mask_zero(true))
        .add(BidirectionalConfig::new(
            LstmConfig::new(4).return_sequences(true),
        ))
        .add(LstmConfig::new(2));
    let b = ParamBuilder::new(0);
    let model = config.init(&b).unwrap();
    let params = b.build(d).unwrap();
    let tape = Tape::training(d, 1, 0);
    let x = tape.constant(
        d.from_u32(&[1, 2, 0, 0, 0, 3, 4, 5, 6, 0], &[2, 5])
            .unwrap(),
    );
    let y = model.forward(&tape, &params, &x).unwrap();
    let loss = tape.mean(&y).unwrap();
    tape.backward(&loss).unwrap();
    d.sync().unwrap();
}
