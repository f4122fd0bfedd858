//! [`Device`]: a wgpu adapter or the CPU reference, behind one API. Tensors are created, read and
//! computed on through it; the kernels' launchers live in `ops`, one file per family.

use std::sync::Arc;

use crate::adapter::{self, AdapterSummary, DeviceChoice, LimitsChoice, NO_ADAPTER_HINT};
use crate::counters::{CounterCells, Counters};
use crate::gpu::tune::TuneMode;
use crate::gpu::GpuContext;
use crate::ops::lstm::LstmPath;
use crate::profile::{CpuRecorder, Profile, ProfileClock, SpanGuard};
use crate::tensor::{CpuBuffer, CpuPool, DType, Storage, Tensor};
use crate::{Error, Result};

pub(crate) enum Backend {
    Gpu(Box<GpuContext>),
    Cpu,
}

struct Inner {
    backend: Backend,
    counters: Arc<CounterCells>,
    note: Option<String>,
    /// The CPU device's kernel timer (see [`Device::profile`]).
    recorder: CpuRecorder,
    /// A CPU device that runs only the plain reference loops ([`Device::cpu_reference`]).
    reference_only: bool,
    /// The CPU device's caching allocator.
    cpu_pool: Arc<CpuPool>,
    /// LSTM layers run unfused unless a tape says otherwise ([`Device::set_lstm_path`]).
    lstm_unfused: std::sync::atomic::AtomicBool,
}

/// A compute device. Cheap to clone; clones share the device.
#[derive(Clone)]
pub struct Device {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Device").field(&self.name()).finish()
    }
}

/// What `kiln info` prints about the device in use.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// The adapter (none for the CPU device).
    pub adapter: Option<AdapterSummary>,
    /// The adapter's features that kiln uses.
    pub features: Vec<String>,
    /// The limits the device was opened with, by wgpu's names.
    pub limits: Vec<(&'static str, u64)>,
    /// How those limits were chosen (`KILN_LIMITS`).
    pub limits_choice: Option<LimitsChoice>,
    /// Where the adapter falls short of WebGPU's default limits (empty: it meets them all).
    pub below_webgpu: Vec<String>,
}

/// What a build of kiln-device without optimization prints, once, when a device opens.
pub const UNOPTIMIZED_WARNING: &str = "kiln: kiln-device was built without optimization \
     (opt-level 0), so training runs tens of times slower than it should. Build with --release, \
     or keep debug builds fast with this in your Cargo.toml:\n\n[profile.dev.package.\"*\"]\nopt-level = 2\n";

/// Prints [`UNOPTIMIZED_WARNING`] on stderr, once per process, in a build without optimization.
fn warn_if_unoptimized() {
    #[cfg(kiln_unoptimized)]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| eprintln!("{UNOPTIMIZED_WARNING}"));
    }
}

impl Device {
    /// The CPU device: fast host kernels ([`cpu`](crate::cpu)) where a step spends its time, the
    /// reference loops elsewhere.
    pub fn cpu() -> Device {
        warn_if_unoptimized();
        Device {
            inner: Arc::new(Inner {
                backend: Backend::Cpu,
                counters: Arc::default(),
                note: None,
                recorder: CpuRecorder::default(),
                reference_only: false,
                cpu_pool: Arc::default(),
                lstm_unfused: Default::default(),
            }),
        }
    }

    /// A CPU device that runs the plain reference loops ([`reference`](crate::reference))
    /// everywhere instead of the fast kernels ([`cpu`](crate::cpu)): the spec, as a device, for
    /// tests that compare an adapter or the fast CPU kernels against it.
    pub fn cpu_reference() -> Device {
        let mut d = Device::cpu();
        Arc::get_mut(&mut d.inner)
            .expect("fresh device")
            .reference_only = true;
        d
    }

    /// Whether this is the CPU device running its fast kernels (not [`Device::cpu_reference`]).
    pub(crate) fn cpu_fast(&self) -> bool {
        matches!(self.inner.backend, Backend::Cpu) && !self.inner.reference_only
    }

    /// Opens the device the choice names. `Auto` falls back to the CPU device when no hardware GPU
    /// exists (see [`Device::note`]; a software adapter is taken only when asked for); an explicit
    /// GPU choice that matches nothing is [`Error::NoAdapter`]. A GPU device is opened with the
    /// limits `KILN_LIMITS` names (see [`LimitsChoice`]).
    pub fn new(choice: &DeviceChoice) -> Result<Device> {
        Device::with_limits(choice, LimitsChoice::from_env()?)
    }

    /// [`Device::new`] with the limits to open a GPU device with: `LimitsChoice::WebGpu` opens it
    /// at exactly WebGPU's defaults, as a browser would.
    pub fn with_limits(choice: &DeviceChoice, limits: LimitsChoice) -> Result<Device> {
        if *choice == DeviceChoice::Cpu {
            return Ok(Device::cpu());
        }
        let instance = adapter::instance();
        let adapters = adapter::enumerate(&instance);
        let seen = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?})", i.name, i.backend)
            })
            .collect::<Vec<_>>();
        let software = adapters
            .iter()
            .map(|a| a.get_info())
            .find(adapter::is_software)
            .map(|i| format!("{} ({:?})", i.name, i.backend));
        let Some(adapter) = adapter::pick(adapters, choice) else {
            if *choice == DeviceChoice::Auto {
                let note = match software {
                    Some(name) => format!(
                        "no GPU found; running on the CPU device, which is faster than the \
                         software adapter {name} (`--device gpu` takes that one)"
                    ),
                    None => format!("no GPU found; running on the CPU device. {NO_ADAPTER_HINT}"),
                };
                let mut cpu = Device::cpu();
                Arc::get_mut(&mut cpu.inner).expect("fresh device").note = Some(note);
                return Ok(cpu);
            }
            return Err(Error::NoAdapter {
                requested: choice.to_string(),
                seen: if seen.is_empty() {
                    "none".into()
                } else {
                    seen.join(", ")
                },
                hint: NO_ADAPTER_HINT,
            });
        };
        Self::from_adapter(adapter, limits)
    }

    /// Opens the device chosen by `KILN_DEVICE` (Auto when unset).
    pub fn from_env() -> Result<Device> {
        Device::new(&DeviceChoice::from_env()?)
    }

    fn from_adapter(adapter: wgpu::Adapter, limits: LimitsChoice) -> Result<Device> {
        warn_if_unoptimized();
        if crate::TuneMode::from_env().is_none() {
            let value = std::env::var("KILN_AUTOTUNE").unwrap_or_default();
            return Err(Error::invalid(
                "KILN_AUTOTUNE",
                format!(
                    "unknown value {value:?}: use 1 or on (measure kernel choices at first use, \
                     the default), cached (only choices already measured), or 0 or off (the \
                     built-in shape rules)"
                ),
            ));
        }
        let info = adapter.get_info();
        let required_features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("kiln"),
            required_features,
            required_limits: limits.required(&adapter.limits()),
            ..Default::default()
        }))
        .map_err(|e| Error::DeviceRequest {
            adapter: info.name.clone(),
            message: e.to_string(),
        })?;
        let counters: Arc<CounterCells> = Arc::default();
        let ctx = GpuContext::new(
            device,
            queue,
            info,
            counters.clone(),
            (adapter.limits(), limits),
        );
        Ok(Device {
            inner: Arc::new(Inner {
                backend: Backend::Gpu(Box::new(ctx)),
                counters,
                note: None,
                recorder: CpuRecorder::default(),
                reference_only: false,
                cpu_pool: Arc::default(),
                lstm_unfused: Default::default(),
            }),
        })
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// How LSTM layers run on this device unless a tape says otherwise (kiln-graph's
    /// `Tape::lstm`): [`LstmPath::Fused`] by default.
    pub fn lstm_path(&self) -> LstmPath {
        if self
            .inner
            .lstm_unfused
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            LstmPath::Unfused
        } else {
            LstmPath::Fused
        }
    }

    /// Sets how LSTM layers run on this device (and its clones), for every tape that does not
    /// choose for itself: `kiln train --lstm unfused` sets it for a whole run.
    pub fn set_lstm_path(&self, path: LstmPath) {
        self.inner.lstm_unfused.store(
            path == LstmPath::Unfused,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Whether this is a GPU device (any wgpu adapter, software ones included).
    pub fn is_gpu(&self) -> bool {
        matches!(self.inner.backend, Backend::Gpu(_))
    }

    /// Why this device was chosen when it is not what was asked for (e.g. no adapter: CPU).
    pub fn note(&self) -> Option<&str> {
        self.inner.note.as_deref()
    }

    /// A short name: the adapter's name and backend, or "cpu".
    pub fn name(&self) -> String {
        match &self.inner.backend {
            Backend::Gpu(g) => format!("{} ({:?})", g.info.name, g.info.backend),
            Backend::Cpu if self.inner.reference_only => "cpu (reference)".to_string(),
            Backend::Cpu => "cpu".to_string(),
        }
    }

    /// The adapter, its features and limits (what `kiln info` prints).
    pub fn info(&self) -> DeviceInfo {
        match &self.inner.backend {
            Backend::Cpu => DeviceInfo {
                adapter: None,
                features: vec![],
                limits: vec![],
                limits_choice: None,
                below_webgpu: vec![],
            },
            Backend::Gpu(g) => {
                let l = &g.limits;
                DeviceInfo {
                    limits_choice: Some(g.limits_choice),
                    below_webgpu: adapter::below_webgpu_defaults(&g.adapter_limits),
                    adapter: Some(AdapterSummary::from_info(&g.info)),
                    features: g
                        .features
                        .iter_names()
                        .map(|(n, _)| n.to_string())
                        .collect(),
                    limits: vec![
                        ("max_buffer_size", l.max_buffer_size),
                        (
                            "max_storage_buffer_binding_size",
                            l.max_storage_buffer_binding_size,
                        ),
                        (
                            "max_storage_buffers_per_shader_stage",
                            l.max_storage_buffers_per_shader_stage as u64,
                        ),
                        (
                            "max_compute_workgroups_per_dimension",
                            l.max_compute_workgroups_per_dimension as u64,
                        ),
                        (
                            "max_compute_invocations_per_workgroup",
                            l.max_compute_invocations_per_workgroup as u64,
                        ),
                        (
                            "max_compute_workgroup_storage_size",
                            l.max_compute_workgroup_storage_size as u64,
                        ),
                        (
                            "min_storage_buffer_offset_alignment",
                            l.min_storage_buffer_offset_alignment as u64,
                        ),
                        (
                            "min_uniform_buffer_offset_alignment",
                            l.min_uniform_buffer_offset_alignment as u64,
                        ),
                    ],
                }
            }
        }
    }

    /// Whether kernel times come from GPU timestamps (else the wall clock).
    pub fn has_timestamps(&self) -> bool {
        matches!(&self.inner.backend, Backend::Gpu(g) if g.has_timestamps())
    }

    /// Runs `f` with GPU timestamps around every pass it launches and returns the summed GPU time
    /// in milliseconds; None where the adapter has no TIMESTAMP_QUERY (and on the CPU device).
    pub fn gpu_time<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<(T, Option<f64>)> {
        if !self.is_gpu() {
            return Ok((f()?, None));
        }
        let (value, profile) = self.profile(f)?;
        let timed = profile.clock == ProfileClock::GpuTimestamps;
        Ok((value, timed.then(|| profile.kernel_ms())))
    }

    /// Runs `f` and returns what each kernel it launched took: GPU timestamps around every compute
    /// pass where the adapter has them (up to 1,024 passes; the rest are counted as untimed),
    /// the wall clock around every kernel on the CPU device. Waits for the GPU before returning.
    pub fn profile<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<(T, Profile)> {
        let (value, spans, clock, untimed) = match &self.inner.backend {
            Backend::Cpu => {
                self.inner.recorder.begin();
                let value = f();
                let spans = self.inner.recorder.end();
                (value, spans, ProfileClock::WallClock, 0)
            }
            Backend::Gpu(g) if g.begin_timing()? => {
                let value = f();
                let (spans, untimed) = g.end_timing()?.unwrap_or_default();
                (value, spans, ProfileClock::GpuTimestamps, untimed)
            }
            Backend::Gpu(g) => {
                let value = f();
                g.sync()?;
                (value, vec![], ProfileClock::None, 0)
            }
        };
        Ok((
            value?,
            Profile {
                spans,
                clock,
                untimed,
            },
        ))
    }

    /// Times a CPU-device kernel under `name` until the guard drops, when a profile is running.
    pub(crate) fn span(&self, name: &'static str) -> SpanGuard<'_> {
        self.inner.recorder.span(name)
    }

    /// A new device on this one's adapter (for the CPU device, another CPU device): a second
    /// replica for data parallelism on one adapter. The adapter is found again by its place
    /// among those of its name and backend.
    pub fn open_another(&self) -> Result<Device> {
        let Backend::Gpu(g) = &self.inner.backend else {
            return Ok(if self.inner.reference_only {
                Device::cpu_reference()
            } else {
                Device::cpu()
            });
        };
        let backend = format!("{:?}", g.info.backend);
        let place = crate::adapter::list_adapters()
            .iter()
            .position(|a| a.name == g.info.name && a.backend == backend)
            .ok_or_else(|| Error::NoAdapter {
                requested: self.name(),
                seen: "it is no longer listed".into(),
                hint: crate::adapter::NO_ADAPTER_HINT,
            })?;
        Device::new(&DeviceChoice::Adapter(place))
    }

    /// Whether `other` is this device (a clone of it), not merely one of the same kind.
    pub fn same_device(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The counters so far (dispatches, submits, readbacks, bytes, live buffers).
    pub fn counters(&self) -> Counters {
        self.inner.counters.snapshot()
    }

    /// Starts `peak_bytes` afresh from the bytes live now, to measure the peak of what follows.
    pub fn reset_peak_bytes(&self) {
        let c = &self.inner.counters;
        c.peak_bytes.store(
            c.bytes_live.load(std::sync::atomic::Ordering::Relaxed),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Bytes the caching allocator holds for reuse.
    pub fn cached_bytes(&self) -> u64 {
        match &self.inner.backend {
            Backend::Gpu(g) => g.pool.cached_bytes(),
            Backend::Cpu => self.inner.cpu_pool.cached_bytes(),
        }
    }

    /// Frees the allocator's cached buffers.
    pub fn empty_cache(&self) {
        match &self.inner.backend {
            Backend::Gpu(g) => g.pool.empty_cache(),
            Backend::Cpu => self.inner.cpu_pool.empty(),
        }
    }

    /// The keys (family, entry point, override constants) of the pipelines compiled so far: what
    /// the launchers have used, for checking those exact kernels elsewhere (other back ends).
    pub fn pipeline_keys(&self) -> Vec<crate::PipelineKey> {
        match &self.inner.backend {
            Backend::Gpu(g) => g.pipelines.keys(),
            Backend::Cpu => vec![],
        }
    }

    /// How kernel choices are tuned on this adapter (see [`TuneMode`]; `KILN_AUTOTUNE` sets the
    /// starting mode). A no-op on the CPU device.
    pub fn set_tune_mode(&self, mode: TuneMode) {
        if let Some(g) = self.gpu() {
            g.tuner.set_mode(mode);
        }
    }

    /// The tuned choices (shape class, choice) this adapter knows, from its cache file and this
    /// process's measurements; empty on the CPU device.
    pub fn tuned_choices(&self) -> Vec<(String, String)> {
        self.gpu().map(|g| g.tuner.choices()).unwrap_or_default()
    }

    /// Pins a tuned choice for this process (not written to the cache file): `class` as
    /// [`Device::tuned_choices`] names them, `choice` one its kernel takes (`large`, `medium` or
    /// `small` for a matmul class, `rows1` to `rows8` for an LSTM class, optionally with hidden
    /// units per thread: `rows8:units1`; `blocks` or `rows` for an attention class,
    /// `attention:t<T>:dk<Dk>:dv<Dv>`, T the longer sequence rounded up to a power of two).
    /// For benchmarks and tests that compare choices; refused on the CPU device and for a
    /// choice the class does not take.
    pub fn pin_tuned_choice(&self, class: &str, choice: &str) -> Result<()> {
        match self.gpu() {
            Some(g) if g.tuner.pin(class, choice) => Ok(()),
            Some(_) => Err(Error::invalid(
                "pin_tuned_choice",
                format!(
                    "`{choice}` is not a choice of `{class}`; matmul classes take large, \
                     medium or small, LSTM classes rows1 to rows8, optionally with :units1, :units2, \
                     :units4 or :units8, attention classes blocks or rows"
                ),
            )),
            None => Err(Error::invalid(
                "pin_tuned_choice",
                "the CPU device has no tuned choices",
            )),
        }
    }

    /// The choices measured (or pinned) in this process, as [`Device::tuned_choices`] lists them.
    pub fn tuned_here(&self) -> Vec<(String, String)> {
        self.gpu().map(|g| g.tuner.measured()).unwrap_or_default()
    }

    /// The file the tuned choices are kept in (None on the CPU device, without a cache folder, or
    /// after [`Device::tune_in_memory`]).
    pub fn tune_file(&self) -> Option<std::path::PathBuf> {
        self.gpu().and_then(|g| g.tuner.file())
    }

    /// Keeps kernel choices in this process only: the choices read from the tuning cache file are
    /// forgotten (those measured or pinned here stay) and the file is never written. The test
    /// helpers ([`crate::testing::gpu_device`]) use it, so that tests run as on a fresh machine
    /// whatever the user's cache holds, and leave it untouched. Shared by the device's clones.
    pub fn tune_in_memory(&self) {
        if let Some(g) = self.gpu() {
            g.tuner.detach();
        }
    }

    /// Compiled pipelines held by the cache.
    pub fn pipelines_cached(&self) -> usize {
        match &self.inner.backend {
            Backend::Gpu(g) => g.pipelines.len(),
            Backend::Cpu => 0,
        }
    }

    /// Compiles (or finds in the cache) the pipeline for a shader entry point with the given override
    /// constants: warms the cache ahead of a timed run, and reports a broken kernel as
    /// [`Error::ShaderCompile`]. A no-op on the CPU device.
    pub fn compile(
        &self,
        family: crate::ShaderFamily,
        entry: &'static str,
        overrides: &[(&'static str, f64)],
    ) -> Result<()> {
        if let Some(g) = self.gpu() {
            g.pipelines.get(
                &g.device,
                &crate::PipelineKey::new(family, entry, overrides),
            )?;
        }
        Ok(())
    }

    /// Submits recorded work without waiting for it.
    pub fn flush(&self) -> Result<()> {
        match &self.inner.backend {
            Backend::Gpu(g) => g.flush(),
            Backend::Cpu => Ok(()),
        }
    }

    /// Submits recorded work and waits until the device is idle.
    pub fn sync(&self) -> Result<()> {
        match &self.inner.backend {
            Backend::Gpu(g) => g.sync(),
            Backend::Cpu => Ok(()),
        }
    }

    pub(crate) fn gpu(&self) -> Option<&GpuContext> {
        match &self.inner.backend {
            Backend::Gpu(g) => Some(g),
            Backend::Cpu => None,
        }
    }

    /// Elements between packed views: the storage offset alignment, at least 256 bytes.
    pub fn pack_alignment(&self) -> usize {
        let bytes = self.gpu().map_or(256, |g| {
            g.limits.min_storage_buffer_offset_alignment.max(256)
        });
        bytes as usize / 4
    }

    /// An uninitialised tensor (GPU buffers may hold a previous tensor's data); ops overwrite it.
    pub(crate) fn alloc(&self, op: &'static str, dtype: DType, shape: &[usize]) -> Result<Tensor> {
        let len: usize = shape.iter().product();
        if len == 0 {
            return Err(Error::invalid(
                op,
                format!("empty tensor of shape {shape:?}"),
            ));
        }
        let bytes = len as u64 * 4;
        let storage = match &self.inner.backend {
            Backend::Gpu(g) => {
                let limit = g.max_binding_bytes();
                if bytes > limit {
                    return Err(Error::TooLarge {
                        op,
                        shape: shape.to_vec(),
                        bytes,
                        limit,
                    });
                }
                Storage::Gpu(Arc::new(g.pool.acquire(bytes)))
            }
            Backend::Cpu => {
                if len > u32::MAX as usize {
                    return Err(Error::TooLarge {
                        op,
                        shape: shape.to_vec(),
                        bytes,
                        limit: u32::MAX as u64 * 4,
                    });
                }
                Storage::Cpu(self.cpu_buffer(self.inner.cpu_pool.take(len)))
            }
        };
        Ok(Tensor {
            storage,
            offset: 0,
            shape: shape.to_vec(),
            dtype,
            max_value: None,
        })
    }

    fn check_len(op: &'static str, len: usize, shape: &[usize]) -> Result<()> {
        let want: usize = shape.iter().product();
        if len != want {
            return Err(Error::shape(
                op,
                format!("{want} values for shape {shape:?}"),
                format!("{len} values"),
            ));
        }
        Ok(())
    }

    fn upload_words(
        &self,
        op: &'static str,
        words: &[u32],
        dtype: DType,
        shape: &[usize],
    ) -> Result<Tensor> {
        Self::check_len(op, words.len(), shape)?;
        let t = self.alloc(op, dtype, shape)?;
        self.write_words(&t, words)?;
        Ok(t)
    }

    fn write_words(&self, t: &Tensor, words: &[u32]) -> Result<()> {
        match &t.storage {
            Storage::Cpu(c) => {
                let mut w = c.words.write().unwrap();
                w[t.offset..t.offset + words.len()].copy_from_slice(words);
                CounterCells::add(&self.inner.counters.bytes_up, words.len() as u64 * 4);
                Ok(())
            }
            Storage::Gpu(_) => self
                .gpu()
                .ok_or(Error::DeviceMismatch { op: "write" })?
                .write(t, words),
        }
    }

    /// A tensor of `shape` holding `data` (row-major), uploaded.
    pub fn from_f32(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        self.upload_words("from_f32", bytemuck::cast_slice(data), DType::F32, shape)
    }

    /// A u32 tensor (ids, labels); its largest value is remembered for range checks.
    pub fn from_u32(&self, data: &[u32], shape: &[usize]) -> Result<Tensor> {
        let mut t = self.upload_words("from_u32", data, DType::U32, shape)?;
        t.max_value = data.iter().copied().max();
        Ok(t)
    }

    /// Overwrites an f32 tensor (or view) with host data of the same length.
    pub fn write_f32(&self, t: &Tensor, data: &[f32]) -> Result<()> {
        self.check("write_f32", t)?;
        Self::check_len("write_f32", data.len(), t.shape())?;
        self.write_words(t, bytemuck::cast_slice(data))
    }

    /// A zeroed tensor of `shape`.
    pub fn zeros(&self, shape: &[usize]) -> Result<Tensor> {
        let t = self.alloc("zeros", DType::F32, shape)?;
        if let (Some(g), Storage::Gpu(b)) = (self.gpu(), &t.storage) {
            g.record(|enc| enc.clear_buffer(&b.buffer, t.byte_offset(), Some(t.byte_len())));
        }
        Ok(t)
    }

    /// One uninitialised buffer holding several tensors, each at an aligned offset (what
    /// [`Device::pack_alignment`] gives), and views of them: a kernel that writes several outputs
    /// binds the buffer once (WebGPU guarantees only 8 storage buffers per stage) and the caller
    /// gets each output as a tensor of its own.
    pub(crate) fn alloc_packed(
        &self,
        op: &'static str,
        shapes: &[&[usize]],
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let align = self.pack_alignment();
        let mut offsets = Vec::with_capacity(shapes.len());
        let mut total = 0usize;
        for s in shapes {
            offsets.push(total);
            let len = s.iter().product::<usize>();
            total = total
                .checked_add(len.next_multiple_of(align))
                .ok_or_else(|| Error::invalid(op, "outputs past usize"))?;
        }
        let flat = self.alloc(op, DType::F32, &[total.max(1)])?;
        let views = shapes
            .iter()
            .zip(offsets)
            .map(|(s, offset)| Tensor {
                offset: flat.offset + offset,
                shape: s.to_vec(),
                ..flat.clone()
            })
            .collect();
        Ok((flat, views))
    }

    /// One zeroed buffer holding several tensors, each at an aligned offset, and views of them.
    /// Optimizers update the whole buffer in one dispatch.
    pub fn packed_zeros(&self, shapes: &[Vec<usize>]) -> Result<(Tensor, Vec<Tensor>)> {
        let align = self.pack_alignment();
        let mut offsets = Vec::with_capacity(shapes.len());
        let mut total = 0usize;
        for s in shapes {
            offsets.push(total);
            total += s.iter().product::<usize>().next_multiple_of(align);
        }
        let flat = self.zeros(&[total.max(1)])?;
        let views = shapes
            .iter()
            .zip(offsets)
            .map(|(s, offset)| Tensor {
                offset,
                shape: s.clone(),
                ..flat.clone()
            })
            .collect();
        Ok((flat, views))
    }

    fn read_words(&self, t: &Tensor) -> Result<Vec<u32>> {
        match &t.storage {
            Storage::Cpu(c) => {
                let w = c.words.read().unwrap();
                CounterCells::add(&self.inner.counters.readbacks, 1);
                CounterCells::add(&self.inner.counters.bytes_down, t.byte_len());
                Ok(w[t.offset..t.offset + t.len()].to_vec())
            }
            Storage::Gpu(_) => self
                .gpu()
                .ok_or(Error::DeviceMismatch { op: "read" })?
                .read(t),
        }
    }

    /// Copies an f32 tensor to the host (submits pending work and waits for it).
    pub fn to_f32(&self, t: &Tensor) -> Result<Vec<f32>> {
        self.check("to_f32", t)?;
        Ok(bytemuck::cast_slice(&self.read_words(t)?).to_vec())
    }

    /// A u32 tensor's values, read back.
    pub fn to_u32(&self, t: &Tensor) -> Result<Vec<u32>> {
        self.check_device("to_u32", t)?;
        if t.dtype != DType::U32 {
            return Err(Error::DType {
                op: "to_u32",
                arg: "tensor",
                expected: DType::U32,
                got: t.dtype,
            });
        }
        self.read_words(t)
    }

    /// A copy of `t` on this device.
    pub fn to_device(&self, t: &Tensor, from: &Device) -> Result<Tensor> {
        let words = from.read_words(t)?;
        let mut out = self.upload_words("to_device", &words, t.dtype, &t.shape)?;
        out.max_value = t.max_value;
        Ok(out)
    }

    /// Copies `src` into `dst` starting at element `at` (recorded like a kernel, no host round trip).
    pub fn copy_into(&self, dst: &Tensor, at: usize, src: &Tensor) -> Result<()> {
        let op = "copy_into";
        self.check_device(op, dst)?;
        self.check_device(op, src)?;
        if dst.dtype != src.dtype {
            return Err(Error::DType {
                op,
                arg: "src",
                expected: dst.dtype,
                got: src.dtype,
            });
        }
        if at + src.len() > dst.len() {
            return Err(Error::shape(
                op,
                format!("room for {} elements at {at} in {:?}", src.len(), dst.shape),
                format!("{:?}", src.shape),
            ));
        }
        match (&dst.storage, &src.storage) {
            (Storage::Cpu(d), Storage::Cpu(s)) => {
                let words = s.words.read().unwrap()[src.offset..src.offset + src.len()].to_vec();
                d.words.write().unwrap()[dst.offset + at..dst.offset + at + words.len()]
                    .copy_from_slice(&words);
                Ok(())
            }
            (Storage::Gpu(d), Storage::Gpu(s)) => {
                let g = self.gpu().ok_or(Error::DeviceMismatch { op })?;
                let dst_at = dst.byte_offset() + at as u64 * 4;
                g.record(|enc| {
                    enc.copy_buffer_to_buffer(
                        &s.buffer,
                        src.byte_offset(),
                        &d.buffer,
                        dst_at,
                        src.byte_len(),
                    )
                });
                Ok(())
            }
            _ => Err(Error::DeviceMismatch { op }),
        }
    }

    pub(crate) fn check_device(&self, op: &'static str, t: &Tensor) -> Result<()> {
        let ok = match (&self.inner.backend, &t.storage) {
            (Backend::Gpu(g), _) => g.owns(t),
            (Backend::Cpu, Storage::Cpu(_)) => true,
            _ => false,
        };
        ok.then_some(()).ok_or(Error::DeviceMismatch { op })
    }

    /// Checks that `t` is an f32 tensor on this device. `op` is `&&'static str` so that call sites
    /// read `self.check("op", t)`.
    pub(crate) fn check(&self, op: &'static str, t: &Tensor) -> Result<()> {
        self.check_device(op, t)?;
        if t.dtype != DType::F32 {
            return Err(Error::DType {
                op,
                arg: "input",
                expected: DType::F32,
                got: t.dtype,
            });
        }
        Ok(())
    }

    /// Host copy of a CPU tensor's values as f32 (CPU device only).
    pub(crate) fn host_f32(&self, t: &Tensor) -> Vec<f32> {
        let Storage::Cpu(c) = &t.storage else {
            unreachable!("checked by check_device")
        };
        let w = c.words.read().unwrap();
        bytemuck::cast_slice(&w[t.offset..t.offset + t.len()]).to_vec()
    }

    pub(crate) fn host_u32(&self, t: &Tensor) -> Vec<u32> {
        let Storage::Cpu(c) = &t.storage else {
            unreachable!("checked by check_device")
        };
        let w = c.words.read().unwrap();
        w[t.offset..t.offset + t.len()].to_vec()
    }

    /// A new CPU tensor holding `data` (CPU device only; counts as a dispatch of the reference).
    pub(crate) fn host_tensor(&self, data: Vec<f32>, shape: &[usize]) -> Tensor {
        CounterCells::add(&self.inner.counters.dispatches, 1);
        let words = f32_words(data);
        Tensor {
            storage: Storage::Cpu(self.cpu_buffer(words)),
            offset: 0,
            shape: shape.to_vec(),
            dtype: DType::F32,
            max_value: None,
        }
    }

    /// A new CPU tensor of u32 `words` (a kernel's second output, such as pooling's picks: not
    /// counted as a dispatch of its own, and no bound on its values is recorded).
    pub(crate) fn host_tensor_u32(&self, words: Vec<u32>, shape: &[usize]) -> Tensor {
        Tensor {
            storage: Storage::Cpu(self.cpu_buffer(words)),
            offset: 0,
            shape: shape.to_vec(),
            dtype: DType::U32,
            max_value: None,
        }
    }

    /// `len` zeroed u32 words from the CPU pool, or unzeroed ones (see [`Device::host_out`])
    /// when the fast kernel about to run writes them all.
    pub(crate) fn host_words(&self, len: usize, written_in_full: bool) -> Vec<u32> {
        if written_in_full && self.cpu_fast() {
            self.inner.cpu_pool.take_unzeroed(len)
        } else {
            self.inner.cpu_pool.take(len)
        }
    }

    /// Stores host values into an existing CPU tensor (in-place ops).
    pub(crate) fn host_store(&self, t: &Tensor, data: &[f32]) {
        let Storage::Cpu(c) = &t.storage else {
            unreachable!("checked by check_device")
        };
        c.words.write().unwrap()[t.offset..t.offset + t.len()]
            .copy_from_slice(bytemuck::cast_slice(data));
    }

    /// A CPU tensor's values in place, read-only (CPU device only; no copy). Take one guard per
    /// buffer: a write guard on storage that a read guard also holds would wait forever, so
    /// callers check [`Tensor::same_storage`] first.
    pub(crate) fn host_read<'t>(&self, t: &'t Tensor) -> HostRead<'t> {
        let Storage::Cpu(c) = &t.storage else {
            unreachable!("checked by check_device")
        };
        HostRead {
            words: c.words.read().unwrap(),
            range: t.offset..t.offset + t.len(),
        }
    }

    /// Two CPU tensors' values in place, read-only, for `f`: one guard when they share storage
    /// (a second read guard on a lock could wait behind another thread's writer forever).
    pub(crate) fn host_read_pair<R>(
        &self,
        a: &Tensor,
        b: &Tensor,
        f: impl FnOnce(&[f32], &[f32]) -> R,
    ) -> R {
        self.host_read_all([a, b], [], |[a, b], []| f(a, b))
    }

    /// Several CPU tensors' values in place, read-only, for `f`: the `given` ones, and the
    /// `optional` ones where present. One read guard per storage (a second read guard on a lock
    /// could wait behind another thread's writer forever) and no copies (the LSTM's inputs and
    /// cache at batch 256 are tens of MB a step).
    pub(crate) fn host_read_all<R, const N: usize, const M: usize>(
        &self,
        given: [&Tensor; N],
        optional: [Option<&Tensor>; M],
        f: impl FnOnce([&[f32]; N], [Option<&[f32]>; M]) -> R,
    ) -> R {
        let mut guards: Vec<(&Tensor, std::sync::RwLockReadGuard<'_, Vec<u32>>)> = Vec::new();
        for t in given
            .iter()
            .copied()
            .chain(optional.iter().flatten().copied())
        {
            if !guards.iter().any(|(g, _)| g.same_storage(t)) {
                let Storage::Cpu(c) = &t.storage else {
                    unreachable!("checked by check_device")
                };
                guards.push((t, c.words.read().unwrap()));
            }
        }
        let view = |t: &Tensor| -> &[f32] {
            let words = guards
                .iter()
                .find(|(g, _)| g.same_storage(t))
                .map(|(_, w)| w)
                .unwrap_or_else(|| unreachable!("a guard per storage"));
            bytemuck::cast_slice(&words[t.offset..t.offset + t.len()])
        };
        f(given.map(view), optional.map(|t| t.map(view)))
    }

    /// A CPU tensor's values in place, writable (CPU device only; see [`Device::host_read`]).
    pub(crate) fn host_write<'t>(&self, t: &'t Tensor) -> HostWrite<'t> {
        let Storage::Cpu(c) = &t.storage else {
            unreachable!("checked by check_device")
        };
        HostWrite {
            words: c.words.write().unwrap(),
            range: t.offset..t.offset + t.len(),
        }
    }

    /// A zeroed host vector of `len` floats for a CPU kernel's output, from the caching allocator.
    pub(crate) fn host_zeros(&self, len: usize) -> Vec<f32> {
        words_f32(self.inner.cpu_pool.take(len))
    }

    /// An output of `len` values that the fast kernel about to run writes in full, so it is not
    /// zeroed first ([`CpuPool::take_unzeroed`](crate::tensor::CpuPool::take_unzeroed): NaN
    /// when fresh, what it held when reused). On the reference device it is zeroed, as the
    /// reference loops may rely on.
    pub(crate) fn host_out(&self, len: usize) -> Vec<f32> {
        words_f32(self.host_words(len, true))
    }

    fn cpu_buffer(&self, words: Vec<u32>) -> Arc<CpuBuffer> {
        CpuBuffer::new(
            words,
            self.inner.counters.clone(),
            self.inner.cpu_pool.clone(),
        )
    }

    pub(crate) fn count_dispatch(&self) {
        CounterCells::add(&self.inner.counters.dispatches, 1);
    }
}

/// A read guard on a CPU tensor's values ([`Device::host_read`]).
pub(crate) struct HostRead<'a> {
    words: std::sync::RwLockReadGuard<'a, Vec<u32>>,
    range: std::ops::Range<usize>,
}

impl HostRead<'_> {
    /// The values as u32 (ids).
    pub fn u32(&self) -> &[u32] {
        &self.words[self.range.clone()]
    }
}

impl std::ops::Deref for HostRead<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        bytemuck::cast_slice(&self.words[self.range.clone()])
    }
}

/// A write guard on a CPU tensor's values ([`Device::host_write`]).
pub(crate) struct HostWrite<'a> {
    words: std::sync::RwLockWriteGuard<'a, Vec<u32>>,
    range: std::ops::Range<usize>,
}

impl std::ops::Deref for HostWrite<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        bytemuck::cast_slice(&self.words[self.range.clone()])
    }
}

impl std::ops::DerefMut for HostWrite<'_> {
    fn deref_mut(&mut self) -> &mut [f32] {
        bytemuck::cast_slice_mut(&mut self.words[self.range.clone()])
    }
}

/// f32 values as their bit patterns, reusing the allocation (f32 and u32 share size and alignment).
fn f32_words(data: Vec<f32>) -> Vec<u32> {
    let mut data = std::mem::ManuallyDrop::new(data);
    let (ptr, len, cap) = (data.as_mut_ptr(), data.len(), data.capacity());
    // SAFETY: the allocation came from a Vec<f32>; u32 has f32's size and alignment and every bit
    // pattern is a valid u32, so it is a valid Vec<u32> of the same length and capacity. `data`
    // is not dropped, so the allocation has one owner.
    unsafe { Vec::from_raw_parts(ptr.cast::<u32>(), len, cap) }
}

/// Words as f32 values, reusing the allocation (the inverse of [`f32_words`]).
fn words_f32(words: Vec<u32>) -> Vec<f32> {
    let mut words = std::mem::ManuallyDrop::new(words);
    let (ptr, len, cap) = (words.as_mut_ptr(), words.len(), words.capacity());
    // SAFETY: as in f32_words: same size and alignment, and every bit pattern is a valid f32.
    unsafe { Vec::from_raw_parts(ptr.cast::<f32>(), len, cap) }
}
