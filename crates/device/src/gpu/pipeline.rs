//! The pipeline cache: each (shader family, entry point, override constants) is compiled once.
//! Shapes never enter the WGSL text; kernels are specialized through `override` constants only.
//! Compilation runs inside wgpu error scopes, so a broken shader is an [`Error::ShaderCompile`]
//! naming its file and entry, never a panic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::counters::CounterCells;
use crate::shaders::ShaderFamily;
use crate::{Error, Result};

/// What identifies a compiled pipeline.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    /// The shader file.
    pub family: ShaderFamily,
    /// The entry point.
    pub entry: &'static str,
    /// Override constants by name, values as f64 bits (WGSL overrides are set as f64).
    pub overrides: Vec<(&'static str, u64)>,
}

impl PipelineKey {
    /// A key with no override constants; add them with `with`.
    pub fn new(
        family: ShaderFamily,
        entry: &'static str,
        overrides: &[(&'static str, f64)],
    ) -> Self {
        PipelineKey {
            family,
            entry,
            overrides: overrides.iter().map(|&(k, v)| (k, v.to_bits())).collect(),
        }
    }
}

pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<ShaderFamily, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    counters: Arc<CounterCells>,
    debug: bool,
}

/// Runs `f` inside a validation error scope and turns a captured error into ShaderCompile.
fn scoped<T>(
    device: &wgpu::Device,
    family: ShaderFamily,
    entry: &'static str,
    f: impl FnOnce() -> T,
) -> Result<T> {
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
    let value = f();
    let internal_err = pollster::block_on(internal.pop());
    let validation_err = pollster::block_on(validation.pop());
    match validation_err.or(internal_err) {
        None => Ok(value),
        Some(e) => Err(Error::ShaderCompile {
            file: family.file(),
            entry,
            message: e.to_string(),
        }),
    }
}

impl PipelineCache {
    pub fn new(counters: Arc<CounterCells>) -> Self {
        PipelineCache {
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            counters,
            debug: std::env::var("KILN_DEBUG").is_ok_and(|v| v != "0"),
        }
    }

    pub fn len(&self) -> usize {
        self.pipelines.lock().unwrap().len()
    }

    pub fn keys(&self) -> Vec<PipelineKey> {
        let mut keys: Vec<PipelineKey> = self.pipelines.lock().unwrap().keys().cloned().collect();
        keys.sort_by(|a, b| (a.family.file(), a.entry).cmp(&(b.family.file(), b.entry)));
        keys
    }

    pub fn get(&self, device: &wgpu::Device, key: &PipelineKey) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = self.pipelines.lock().unwrap().get(key) {
            return Ok(p.clone());
        }
        let module = self.module(device, key.family, key.entry)?;
        let constants: Vec<(&str, f64)> = key
            .overrides
            .iter()
            .map(|&(k, bits)| (k, f64::from_bits(bits)))
            .collect();
        if self.debug {
            eprintln!("kiln: compiling pipeline {key:?}");
        }
        let pipeline = scoped(device, key.family, key.entry, || {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(key.entry),
                layout: None,
                module: &module,
                entry_point: Some(key.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            })
        })?;
        CounterCells::add(&self.counters.pipelines_compiled, 1);
        self.pipelines
            .lock()
            .unwrap()
            .insert(key.clone(), pipeline.clone());
        Ok(pipeline)
    }

    fn module(
        &self,
        device: &wgpu::Device,
        family: ShaderFamily,
        entry: &'static str,
    ) -> Result<wgpu::ShaderModule> {
        let mut modules = self.modules.lock().unwrap();
        if let Some(m) = modules.get(&family) {
            return Ok(m.clone());
        }
        let module = scoped(device, family, entry, || {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(family.file()),
                source: wgpu::ShaderSource::Wgsl(family.source().into()),
            })
        })?;
        modules.insert(family, module.clone());
        Ok(module)
    }
}
