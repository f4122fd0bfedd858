//! Adapter choice. By default the best hardware GPU: discrete > integrated > virtual, and
//! Vulkan/Metal/DX12 before GL; with none, the CPU device. A software adapter (wgpu's
//! `DeviceType::Cpu`: Mesa's llvmpipe/lavapipe, WARP, SwiftShader) runs the WGSL kernels on the
//! CPU many times slower than the CPU device's native kernels (on one 2-core machine the seed
//! model's training step took 33 ms on the CPU device and 544 ms on lavapipe, LeNet's 33 ms and
//! 1,137 ms), so the default passes it over; `--device gpu`, a backend or `name:` takes it, as the
//! tests do to run the real kernels. `KILN_DEVICE` or `--device` override the default.

use crate::{Error, Result};

/// What to do when no adapter is found.
pub const NO_ADAPTER_HINT: &str =
    "Install your GPU's Vulkan driver. Without a GPU, `--device cpu` is \
the fastest choice; Mesa's software adapter runs the WGSL kernels on the CPU, slowly, for testing \
them (`apt-get install mesa-vulkan-drivers libvulkan1`: lavapipe).";

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The best hardware GPU adapter, or the CPU device (with a note) when there is none:
    /// software adapters are passed over (see the module doc).
    #[default]
    Auto,
    /// The CPU device (fast kernels checked against the plain reference).
    Cpu,
    /// Any GPU adapter, or the best one of a backend, or one whose name contains a substring.
    Gpu {
        /// Only adapters of this backend.
        backend: Option<wgpu::Backend>,
        /// Only adapters whose name contains this (case-insensitive).
        name: Option<String>,
    },
    /// The adapter at this place in [`list_adapters`]' order (best first, from 0; `kiln info`
    /// numbers them): one of several identical GPUs.
    Adapter(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let gpu = |backend| {
            Ok(DeviceChoice::Gpu {
                backend,
                name: None,
            })
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "gpu" | "wgpu" => gpu(None),
            "vulkan" | "vk" => gpu(Some(wgpu::Backend::Vulkan)),
            "metal" => gpu(Some(wgpu::Backend::Metal)),
            "dx12" | "d3d12" => gpu(Some(wgpu::Backend::Dx12)),
            "gl" | "gles" | "opengl" => gpu(Some(wgpu::Backend::Gl)),
            other if other.parse::<usize>().is_ok() => {
                Ok(DeviceChoice::Adapter(other.parse().expect("checked")))
            }
            other => match other.strip_prefix("name:") {
                Some(name) if !name.is_empty() => Ok(DeviceChoice::Gpu {
                    backend: None,
                    name: Some(name.to_string()),
                }),
                _ => Err(Error::BadDeviceChoice {
                    value: s.to_string(),
                }),
            },
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Gpu {
                backend: None,
                name: None,
            } => f.write_str("gpu"),
            DeviceChoice::Gpu {
                backend: Some(b), ..
            } => write!(f, "{b:?}"),
            DeviceChoice::Gpu { name: Some(n), .. } => write!(f, "name:{n}"),
            DeviceChoice::Adapter(i) => write!(f, "{i}"),
        }
    }
}

impl DeviceChoice {
    /// The choice from `KILN_DEVICE`, or Auto when unset.
    pub fn from_env() -> Result<DeviceChoice> {
        match std::env::var("KILN_DEVICE") {
            Ok(v) => v.parse(),
            Err(_) => Ok(DeviceChoice::Auto),
        }
    }

    fn accepts(&self, info: &wgpu::AdapterInfo) -> bool {
        match self {
            DeviceChoice::Gpu { backend, name } => {
                backend.is_none_or(|b| info.backend == b)
                    && name
                        .as_ref()
                        .is_none_or(|n| info.name.to_lowercase().contains(&n.to_lowercase()))
            }
            DeviceChoice::Auto => !is_software(info),
            DeviceChoice::Cpu => false,
            // By place, not by kind: `pick` counts.
            DeviceChoice::Adapter(_) => true,
        }
    }
}

/// The limits a GPU device is opened with (`KILN_LIMITS`). Every kernel fits WebGPU's default
/// limits (8 storage buffers per stage, 16 KiB of workgroup memory, 256 invocations per
/// workgroup); CI runs the GPU tests at exactly those, so that none can come to need more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LimitsChoice {
    /// WebGPU's defaults, with the adapter's buffer sizes asked for explicitly (a model's tensors,
    /// not a kernel, need them: an embedding past 128 MiB).
    #[default]
    Kiln,
    /// Exactly WebGPU's defaults, what every WebGPU implementation guarantees
    /// (`KILN_LIMITS=webgpu`).
    WebGpu,
    /// Everything the adapter offers (`KILN_LIMITS=adapter`).
    Adapter,
}

impl std::str::FromStr for LimitsChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "kiln" | "default" => Ok(LimitsChoice::Kiln),
            "webgpu" | "web" => Ok(LimitsChoice::WebGpu),
            "adapter" | "max" => Ok(LimitsChoice::Adapter),
            _ => Err(Error::invalid(
                "KILN_LIMITS",
                format!(
                    "unknown value {s:?}: use webgpu (WebGPU's default limits), adapter (all the \
                     adapter offers) or kiln (the defaults with the adapter's buffer sizes; unset)"
                ),
            )),
        }
    }
}

impl std::fmt::Display for LimitsChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitsChoice::Kiln => "WebGPU's defaults with the adapter's buffer sizes",
            LimitsChoice::WebGpu => "WebGPU's defaults",
            LimitsChoice::Adapter => "the adapter's",
        })
    }
}

impl LimitsChoice {
    /// The choice from `KILN_LIMITS` (Kiln when unset).
    pub fn from_env() -> Result<LimitsChoice> {
        std::env::var("KILN_LIMITS").unwrap_or_default().parse()
    }

    /// The limits to request from an adapter offering `adapter`: never more than it offers.
    pub fn required(self, adapter: &wgpu::Limits) -> wgpu::Limits {
        let defaults = wgpu::Limits::defaults();
        match self {
            LimitsChoice::Adapter => adapter.clone(),
            LimitsChoice::WebGpu => defaults.or_worse_values_from(adapter),
            LimitsChoice::Kiln => wgpu::Limits {
                max_buffer_size: adapter.max_buffer_size,
                max_storage_buffer_binding_size: adapter.max_storage_buffer_binding_size,
                ..defaults
            }
            .or_worse_values_from(adapter),
        }
    }
}

/// The limits in which `adapter` falls short of WebGPU's defaults, as "name: has X, WebGPU
/// guarantees Y"; empty when it meets them all.
pub fn below_webgpu_defaults(adapter: &wgpu::Limits) -> Vec<String> {
    // The limits a compute library meets: bindings, buffers, workgroups (not textures).
    let compute = |name: &str| {
        [
            "max_compute",
            "max_storage_buffer",
            "max_uniform_buffer",
            "max_buffer_size",
            "max_bind",
            "min_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
    };
    let mut short = vec![];
    wgpu::Limits::defaults().check_limits_with_fail_fn(adapter, false, |name, want, has| {
        if compute(name) {
            short.push(format!("{name}: has {has}, WebGPU guarantees {want}"));
        }
    });
    short
}

/// Whether the adapter runs on the CPU (llvmpipe/lavapipe, WARP, SwiftShader).
pub fn is_software(info: &wgpu::AdapterInfo) -> bool {
    info.device_type == wgpu::DeviceType::Cpu
}

pub use wgpu::Backend;

/// Lower is better.
pub fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (kind, backend)
}

/// One adapter as `kiln info` shows it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// The adapter's name (`NVIDIA H200`, `llvmpipe (LLVM 15.0.7, 256 bits)`).
    pub name: String,
    /// Vulkan, Metal, Dx12 or Gl.
    pub backend: String,
    /// Discrete, integrated, virtual or CPU.
    pub device_type: String,
    /// The driver and its version.
    pub driver: String,
}

impl AdapterSummary {
    /// The summary of wgpu's adapter info.
    pub fn from_info(info: &wgpu::AdapterInfo) -> AdapterSummary {
        AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
        }
    }
}

pub(crate) fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

pub(crate) fn enumerate(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

/// Every adapter wgpu can see, best first.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let mut infos: Vec<_> = enumerate(&instance())
        .iter()
        .map(|a| a.get_info())
        .collect();
    infos.sort_by_key(rank);
    infos.iter().map(AdapterSummary::from_info).collect()
}

/// The best adapter the choice accepts, or None.
pub(crate) fn pick(adapters: Vec<wgpu::Adapter>, choice: &DeviceChoice) -> Option<wgpu::Adapter> {
    if let DeviceChoice::Adapter(place) = choice {
        // list_adapters' order: the same stable sort of the same enumeration.
        let mut ranked = adapters;
        ranked.sort_by_key(|a| rank(&a.get_info()));
        return ranked.into_iter().nth(*place);
    }
    adapters
        .into_iter()
        .filter(|a| choice.accepts(&a.get_info()))
        .min_by_key(|a| rank(&a.get_info()))
}

#[cfg(test)]
mod tests {
    use super::{rank, DeviceChoice};
    use wgpu::{AdapterInfo, Backend, DeviceType};

    fn adapter(name: &str, kind: DeviceType, backend: Backend) -> AdapterInfo {
        AdapterInfo {
            name: name.into(),
            ..AdapterInfo::new(kind, backend)
        }
    }

    #[test]
    fn auto_takes_hardware_gpus_and_passes_over_software_adapters() {
        let lavapipe = adapter(
            "llvmpipe (LLVM 15.0.6, 256 bits)",
            DeviceType::Cpu,
            Backend::Vulkan,
        );
        let h200 = adapter("NVIDIA H200", DeviceType::DiscreteGpu, Backend::Vulkan);
        let igpu = adapter(
            "Intel(R) Graphics",
            DeviceType::IntegratedGpu,
            Backend::Vulkan,
        );
        let auto = DeviceChoice::Auto;
        assert!(auto.accepts(&h200) && auto.accepts(&igpu));
        assert!(
            !auto.accepts(&lavapipe),
            "the CPU device is faster than a software adapter"
        );
        // Asked for, a software adapter is taken: the tests run the real kernels on it.
        for choice in ["gpu", "vulkan", "name:llvmpipe"] {
            let choice: DeviceChoice = choice.parse().unwrap();
            assert!(choice.accepts(&lavapipe), "{choice}");
        }
        assert!(rank(&h200) < rank(&igpu) && rank(&igpu) < rank(&lavapipe));
    }
}
