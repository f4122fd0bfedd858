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

/// Every pipeline key the launchers compile, learned on the test device once per process: the
/// quick benchmark (every kernel family, both LSTM paths, LeNet and the seed model's training
/// steps, a fit), masked, bidirectional LSTM and GRU layers, every unary op, the broadcast kernels and every
/// optimizer. None without an adapter (skipped).
fn pipeline_keys(test: &str) -> Option<Vec<PipelineKey>> {
    static KEYS: std::sync::OnceLock<Vec<PipelineKey>> = std::sync::OnceLock::new();
    let d = gpu_device(test)?;
    Some(
        KEYS.get_or_init(|| {
            kiln_cli::bench::run(
                &d,
                &kiln_cli::bench::Options {
                    filter: None,
                    repeats: 1,
                    quick: true,
                },
            )
            .unwrap();
            // Masks, initial states and the backward of a bidirectional LSTM (the bench's are
            // unmasked).
            masked_lstm(&d);
            // Every unary op (each an override of one entry) and the broadcast kernels.
            elementwise_ops(&d);
            // Both attention families at every head-width variant (the bench's tuning runs
            // only one family's backward).
            attention_families(&d);
            let keys = d.pipeline_keys();
            let families: std::collections::BTreeSet<&str> =
                keys.iter().map(|k| k.family.file()).collect();
            assert_eq!(
                families.len(),
                ShaderFamily::ALL.len(),
                "the workload reaches every family: {families:?}"
            );
            keys
        })
        .clone(),
    )
}

fn describe(key: &PipelineKey) -> String {
    format!("{} {} {:?}", key.family.file(), key.entry, key.overrides)
}

#[test]
fn every_kernel_the_launchers_compile_translates_to_spirv_msl_hlsl_and_glsl() {
    let Some(keys) = pipeline_keys("shader_backends") else {
        return;
    };
    let mut failures = vec![];
    for key in &keys {
        if let Err(e) = translate(key) {
            failures.push(format!("{}: {e}", describe(key)));
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

/// The Tint check's folder (tools/tint: the pinned npm package `webgpu`, Dawn's node binding,
/// and check.mjs).
fn tint_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/tint")
}

/// Whether `node` runs here.
fn have_node() -> bool {
    std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Chrome's compiler on every kernel: each pipeline key, with its override constants, is built
/// as a compute pipeline by Tint through Dawn's node binding on its null backend, at WebGPU's
/// default limits (tools/tint/check.mjs). naga accepts things Tint refuses (an f32 literal
/// rounded past f32's largest value) and lavapipe offers more than the defaults (the LSTM once
/// bound 10 storage buffers), so neither would catch what this does.
#[test]
fn every_kernel_the_launchers_compile_passes_tint_at_webgpu_default_limits() {
    if !have_node() {
        eprintln!("SKIPPED tint: node is not installed, so Tint (Dawn's WGSL compiler) cannot run; install Node.js to check the kernels with it");
        return;
    }
    let Some(keys) = pipeline_keys("tint") else {
        return;
    };
    let dir = tint_dir();
    if !dir.join("node_modules/webgpu").exists() {
        let out = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .output()
            .expect("npm runs where node does");
        assert!(
            out.status.success(),
            "npm ci in tools/tint failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sources: serde_json::Map<String, serde_json::Value> = ShaderFamily::ALL
        .iter()
        .map(|f| (f.file().to_string(), f.source().into()))
        .collect();
    let pipelines: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            let constants: serde_json::Map<String, serde_json::Value> = k
                .overrides
                .iter()
                .map(|&(name, bits)| (name.to_string(), f64::from_bits(bits).into()))
                .collect();
            serde_json::json!({"file": k.family.file(), "entry": k.entry, "constants": constants})
        })
        .collect();
    let input = tempfile::NamedTempFile::new().unwrap();
    let json = serde_json::json!({"sources": sources, "pipelines": pipelines});
    std::fs::write(input.path(), json.to_string()).unwrap();
    let out = std::process::Command::new("node")
        .arg(dir.join("check.mjs"))
        .arg(input.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check.mjs failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Dawn prints its own validation messages to stdout before the report: the report is the
    // last line.
    let last = stdout.trim().lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("check.mjs prints JSON last ({e}):\n{stdout}"));
    assert_eq!(
        report["limits"]["maxStorageBuffersPerShaderStage"], 8,
        "Dawn's null adapter checks at WebGPU's default limits: {}",
        report["limits"]
    );
    let results = report["results"].as_array().expect("results");
    assert_eq!(results.len(), keys.len());
    let mut failures = vec![];
    for (key, r) in keys.iter().zip(results) {
        let messages: Vec<&str> = r["errors"]
            .as_array()
            .into_iter()
            .chain(r["warnings"].as_array())
            .flatten()
            .filter_map(|m| m.as_str())
            .collect();
        if !messages.is_empty() {
            failures.push(format!("{}: {}", describe(key), messages.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} pipelines fail Tint:\n{}",
        failures.len(),
        keys.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} pipelines built by Tint at WebGPU's default limits",
        keys.len()
    );
}

fn masked_lstm(d: &kiln::device::Device) {
    use kiln::graph::layers::{BidirectionalConfig, EmbeddingConfig, GruConfig, LstmConfig};
    use kiln::graph::*;
    // Both recurrent families: a masked BiLSTM, a masked BiGRU, then one direction of each.
    let config = SequentialConfig::new(&[5])
        .add(EmbeddingConfig::new(9, 3).mask_zero(true))
        .add(BidirectionalConfig::new(
            LstmConfig::new(4).return_sequences(true),
        ))
        .add(BidirectionalConfig::new(
            GruConfig::new(3).return_sequences(true),
        ))
        .add(GruConfig::new(5).return_sequences(true))
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

fn attention_families(d: &kiln::device::Device) {
    use kiln::device::{AttentionInputs, AttentionSpec};
    // The row kernels are not used through wgpu's GL backend (Mesa's GLSL compiler takes many
    // minutes over them); the Vulkan run checks them.
    let gl = d.info().adapter.is_some_and(|a| a.backend == "Gl");
    let families: &[&str] = if gl { &["blocks"] } else { &["blocks", "rows"] };
    for width in [16, 64, 128] {
        let x = d
            .from_f32(&vec![0.5; 8 * width], &[1, 8, 1, width])
            .unwrap();
        let spec = AttentionSpec::for_head(width);
        for &family in families {
            d.pin_tuned_choice(&format!("attention:t8:dk{width}:dv{width}"), family)
                .unwrap();
            let inputs = AttentionInputs::new(&x, &x, &x);
            let out = d.attention(&inputs, &spec).unwrap();
            d.attention_backward(&inputs, &spec, &out, &x).unwrap();
        }
    }
    d.sync().unwrap();
}

fn elementwise_ops(d: &kiln::device::Device) {
    use kiln::device::{BinaryOp, UnaryOp};
    let x = d
        .from_f32(&[0.5, 1.5, 2.0, 3.0, 0.25, 4.0], &[2, 3])
        .unwrap();
    for op in UnaryOp::ALL {
        let y = d.unary(op, &x).unwrap();
        d.unary_backward(op, &x, &y).unwrap();
    }
    let col = d.from_f32(&[1.0, 2.0], &[2, 1]).unwrap();
    for op in BinaryOp::ALL {
        d.binary(op, &x, &col).unwrap();
    }
    let wide = d.broadcast_to(&col, &[2, 3]).unwrap();
    d.sum_to(&wide, &[2, 1]).unwrap();
    // The optimizers the benchmark does not step (it trains with Adam).
    let (w, g, m, v) = (
        d.zeros(&[6]).unwrap(),
        d.zeros(&[6]).unwrap(),
        d.zeros(&[6]).unwrap(),
        d.zeros(&[6]).unwrap(),
    );
    d.rmsprop_update(&kiln::device::RmspropConfig::default(), &w, &g, &m, &v)
        .unwrap();
    d.sgd_update(&kiln::device::SgdConfig::default(), &w, &g, &m)
        .unwrap();
    d.clip_by_value_(&g, 1.0).unwrap();
    d.clip_by_global_norm_(&g, 1.0).unwrap();
    d.sync().unwrap();
}
