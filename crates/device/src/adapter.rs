//! Adapter choice. By default the best GPU: discrete > integrated > virtual > software, and
//! Vulkan/Metal/DX12 before GL. `KILN_DEVICE` or `--device` override it with a backend, an
//! adapter-name substring, or `cpu` for the CPU device.

use crate::{Error, Result};

/// What to install when no adapter is found.
pub const NO_ADAPTER_HINT: &str = "Install a Vulkan driver; on Linux without a GPU, Mesa's software \
adapter works: `apt-get install mesa-vulkan-drivers libvulkan1` (lavapipe). Or pass `--device cpu`.";

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The best GPU adapter, or the CPU device (with a note) when there is none.
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
            _ => true,
        }
    }
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
    adapters
        .into_iter()
        .filter(|a| choice.accepts(&a.get_info()))
        .min_by_key(|a| rank(&a.get_info()))
}
