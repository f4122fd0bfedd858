//! The wgpu side of a device: command batching, the params arena, launches, uploads, readbacks
//! and GPU timestamps.
//!
//! A launch records one compute pass into the open encoder; nothing is submitted until the caller
//! reads data back, calls `flush`, or the params arena fills. Kernel parameters go into one host
//! arena per batch, written with a single `write_buffer` just before that batch's submit; each
//! dispatch binds its slice of it.

pub(crate) mod pipeline;
pub(crate) mod pool;
pub mod tune;

use std::sync::{Arc, Mutex};

use crate::counters::CounterCells;
use crate::profile::KernelSpan;
use crate::shaders::ShaderFamily;
use crate::tensor::{Storage, Tensor};
use crate::{Error, Result};
use pipeline::{PipelineCache, PipelineKey};
use pool::BufferPool;

const PARAMS_ARENA_BYTES: u64 = 256 * 1024;
const MAX_TIMED_PASSES: u32 = 1024;

/// One kernel launch: which pipeline, its parameters, its buffers by binding number, and how many
/// workgroups (a linear count, split over x and y by [`dispatch_dims`]).
pub(crate) struct Launch<'a> {
    pub family: ShaderFamily,
    pub entry: &'static str,
    pub overrides: &'a [(&'static str, f64)],
    pub params: &'a [u8],
    pub bindings: &'a [(u32, &'a Tensor)],
    pub workgroups: u64,
}

/// Splits a linear workgroup count over x and y so that neither passes the per-dimension limit.
/// Kernels rebuild the linear index as `wid.y * nwg.x + wid.x` and ignore the excess.
pub fn dispatch_dims(workgroups: u64, max_per_dim: u32) -> Option<(u32, u32)> {
    let max = max_per_dim as u64;
    if workgroups <= max {
        return Some((workgroups as u32, 1));
    }
    let y = workgroups.div_ceil(max);
    (y <= max).then_some((max as u32, y as u32))
}

struct Batch {
    encoder: Option<wgpu::CommandEncoder>,
    params: Vec<u8>,
    commands: u32,
}

struct Timer {
    queries: wgpu::QuerySet,
    used: u32,
    /// The entry point of each timed pass, in order.
    labels: Vec<&'static str>,
    /// Passes launched past the query set's capacity.
    untimed: u64,
}

pub(crate) struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// The limits the device was opened with: what kernels may use.
    pub limits: wgpu::Limits,
    /// What the adapter offers (`kiln info` compares it with WebGPU's defaults).
    pub adapter_limits: wgpu::Limits,
    /// How `limits` were chosen.
    pub limits_choice: crate::adapter::LimitsChoice,
    pub features: wgpu::Features,
    pub pool: Arc<BufferPool>,
    pub pipelines: PipelineCache,
    pub counters: Arc<CounterCells>,
    /// Measured kernel choices for this adapter.
    pub tuner: tune::Tuner,
    params_buffer: wgpu::Buffer,
    params_align: usize,
    batch: Mutex<Batch>,
    timer: Mutex<Option<Timer>>,
    error: Arc<Mutex<Option<String>>>,
}

impl GpuContext {
    /// Whether a kernel of `workgroup_bytes` of workgroup memory and `threads` invocations per
    /// workgroup fits the limits the device was opened with: the autotuner offers only those.
    pub fn fits(&self, workgroup_bytes: u32, threads: u32) -> bool {
        workgroup_bytes <= self.limits.max_compute_workgroup_storage_size
            && threads <= self.limits.max_compute_invocations_per_workgroup
    }

    /// The context of a device opened on an adapter offering `adapter_limits`, with the limits
    /// `limits_choice` asked for (the device's own limits are read from it).
    pub fn new(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        counters: Arc<CounterCells>,
        (adapter_limits, limits_choice): (wgpu::Limits, crate::adapter::LimitsChoice),
    ) -> GpuContext {
        let error = Arc::new(Mutex::new(None::<String>));
        let sink = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap();
            if slot.is_none() {
                *slot = Some(e.to_string());
            }
        }));
        let limits = device.limits();
        let params_buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln params arena"),
            size: PARAMS_ARENA_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        GpuContext {
            pool: BufferPool::new(device.clone(), counters.clone()),
            pipelines: PipelineCache::new(counters.clone()),
            features: device.features(),
            params_align: limits.min_uniform_buffer_offset_alignment as usize,
            adapter_limits,
            limits_choice,
            limits,
            params_buffer,
            batch: Mutex::new(Batch {
                encoder: None,
                params: Vec::with_capacity(PARAMS_ARENA_BYTES as usize),
                commands: 0,
            }),
            timer: Mutex::new(None),
            tuner: tune::Tuner::new(&info),
            error,
            counters,
            device,
            queue,
            info,
        }
    }

    fn take_error(&self) -> Result<()> {
        match self.error.lock().unwrap().take() {
            Some(message) => Err(Error::Gpu { message }),
            None => Ok(()),
        }
    }

    pub fn owns(&self, t: &Tensor) -> bool {
        matches!(&t.storage, Storage::Gpu(b) if b.pool().same_pool(&self.pool))
    }

    /// Largest tensor one binding can hold.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    pub fn launch(&self, l: Launch<'_>) -> Result<()> {
        if l.workgroups == 0 {
            return Ok(());
        }
        let (x, y) = dispatch_dims(
            l.workgroups,
            self.limits.max_compute_workgroups_per_dimension,
        )
        .ok_or_else(|| {
            Error::invalid(
                l.entry,
                format!("{} workgroups exceed the dispatch limit", l.workgroups),
            )
        })?;
        let key = PipelineKey::new(l.family, l.entry, l.overrides);
        let pipeline = self.pipelines.get(&self.device, &key)?;

        let mut batch = self.batch.lock().unwrap();
        let slot = batch.params.len().next_multiple_of(self.params_align);
        if slot + l.params.len() > PARAMS_ARENA_BYTES as usize {
            self.submit_locked(&mut batch);
        }
        let offset = batch.params.len().next_multiple_of(self.params_align);
        batch.params.resize(offset, 0);
        batch.params.extend_from_slice(l.params);

        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.params_buffer,
                offset: offset as u64,
                size: wgpu::BufferSize::new(l.params.len() as u64),
            }),
        }];
        for &(binding, t) in l.bindings {
            let Storage::Gpu(buf) = &t.storage else {
                return Err(Error::DeviceMismatch { op: l.entry });
            };
            entries.push(wgpu::BindGroupEntry {
                binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &buf.buffer,
                    offset: t.byte_offset(),
                    size: wgpu::BufferSize::new(t.byte_len()),
                }),
            });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(l.entry),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });

        let mut timer = self.timer.lock().unwrap();
        let timestamp_writes = match timer.as_mut() {
            Some(t) if t.used + 2 <= MAX_TIMED_PASSES * 2 => {
                let i = t.used;
                t.used += 2;
                t.labels.push(l.entry);
                Some((t.queries.clone(), i))
            }
            Some(t) => {
                t.untimed += 1;
                None
            }
            None => None,
        };
        drop(timer);

        let encoder = self.encoder(&mut batch);
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(l.entry),
                timestamp_writes: timestamp_writes.as_ref().map(|(q, i)| {
                    wgpu::ComputePassTimestampWrites {
                        query_set: q,
                        beginning_of_pass_write_index: Some(*i),
                        end_of_pass_write_index: Some(*i + 1),
                    }
                }),
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(x, y, 1);
        }
        batch.commands += 1;
        CounterCells::add(&self.counters.dispatches, 1);
        Ok(())
    }

    fn encoder<'b>(&self, batch: &'b mut Batch) -> &'b mut wgpu::CommandEncoder {
        batch.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("kiln batch"),
                })
        })
    }

    /// Records a command that is not a dispatch (clear, copy) into the open encoder.
    pub fn record(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut batch = self.batch.lock().unwrap();
        f(self.encoder(&mut batch));
        batch.commands += 1;
    }

    fn submit_locked(&self, batch: &mut Batch) {
        let Some(encoder) = batch.encoder.take() else {
            return;
        };
        if !batch.params.is_empty() {
            self.queue
                .write_buffer(&self.params_buffer, 0, &batch.params);
            batch.params.clear();
        }
        self.queue.submit([encoder.finish()]);
        batch.commands = 0;
        CounterCells::add(&self.counters.submits, 1);
    }

    /// Submits what has been recorded.
    pub fn flush(&self) -> Result<()> {
        self.submit_locked(&mut self.batch.lock().unwrap());
        self.take_error()
    }

    /// Waits until the GPU has finished everything submitted.
    pub fn sync(&self) -> Result<()> {
        self.flush()?;
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu {
                message: e.to_string(),
            })?;
        self.take_error()
    }

    /// Writes host words into a tensor's buffer. Recorded work that may still read a recycled buffer
    /// is submitted first: `write_buffer` lands before the next submit's commands.
    pub fn write(&self, t: &Tensor, words: &[u32]) -> Result<()> {
        let Storage::Gpu(buf) = &t.storage else {
            return Err(Error::DeviceMismatch { op: "upload" });
        };
        let mut batch = self.batch.lock().unwrap();
        if batch.commands > 0 {
            self.submit_locked(&mut batch);
        }
        self.queue
            .write_buffer(&buf.buffer, t.byte_offset(), bytemuck::cast_slice(words));
        CounterCells::add(&self.counters.bytes_up, words.len() as u64 * 4);
        Ok(())
    }

    /// Copies a tensor to the host: copy into a staging buffer, submit, map, wait.
    pub fn read(&self, t: &Tensor) -> Result<Vec<u32>> {
        let Storage::Gpu(buf) = &t.storage else {
            return Err(Error::DeviceMismatch { op: "read" });
        };
        let bytes = t.byte_len();
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut batch = self.batch.lock().unwrap();
            self.encoder(&mut batch).copy_buffer_to_buffer(
                &buf.buffer,
                t.byte_offset(),
                &staging,
                0,
                bytes,
            );
            batch.commands += 1;
            self.submit_locked(&mut batch);
        }
        let words = self.map_read(&staging)?;
        CounterCells::add(&self.counters.readbacks, 1);
        CounterCells::add(&self.counters.bytes_down, bytes);
        Ok(words)
    }

    fn map_read(&self, staging: &wgpu::Buffer) -> Result<Vec<u32>> {
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            sender.send(r).ok();
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Readback {
                message: e.to_string(),
            })?;
        self.take_error()?;
        match pollster::block_on(receiver.receive()) {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                return Err(Error::Readback {
                    message: e.to_string(),
                })
            }
            None => {
                return Err(Error::Readback {
                    message: "map callback dropped".into(),
                })
            }
        }
        let words = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Readback {
                    message: e.to_string(),
                })?;
            bytemuck::pod_collect_to_vec::<u8, u32>(&view)
        };
        staging.unmap();
        Ok(words)
    }

    /// Runs `f` with timestamp recording paused (kiln's own measurements stay out of a profile).
    pub fn untimed<T>(&self, f: impl FnOnce() -> T) -> T {
        let saved = self.timer.lock().unwrap().take();
        let value = f();
        *self.timer.lock().unwrap() = saved;
        value
    }

    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Starts recording GPU timestamps around every pass launched until [`Self::end_timing`].
    /// Returns false (and records nothing) where the adapter lacks TIMESTAMP_QUERY.
    pub fn begin_timing(&self) -> Result<bool> {
        if !self.has_timestamps() {
            return Ok(false);
        }
        self.flush()?;
        let queries = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("kiln timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: MAX_TIMED_PASSES * 2,
        });
        *self.timer.lock().unwrap() = Some(Timer {
            queries,
            used: 0,
            labels: vec![],
            untimed: 0,
        });
        Ok(true)
    }

    /// Stops timing and returns each timed pass (its entry point, start and duration, from the
    /// first pass's start) and the count of passes past the query set's capacity.
    pub fn end_timing(&self) -> Result<Option<(Vec<KernelSpan>, u64)>> {
        let Some(timer) = self.timer.lock().unwrap().take() else {
            return Ok(None);
        };
        if timer.used == 0 {
            return Ok(Some((vec![], timer.untimed)));
        }
        let bytes = timer.used as u64 * 8;
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln timestamp resolve"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln timestamp readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut batch = self.batch.lock().unwrap();
            let enc = self.encoder(&mut batch);
            enc.resolve_query_set(&timer.queries, 0..timer.used, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
            batch.commands += 1;
            self.submit_locked(&mut batch);
        }
        let words = self.map_read(&staging)?;
        // Timestamps are u64; the words are only 4-aligned, so join them by hand (little endian).
        let ticks: Vec<u64> = words
            .chunks_exact(2)
            .map(|w| w[0] as u64 | (w[1] as u64) << 32)
            .collect();
        let ms_per_tick = self.queue.get_timestamp_period() as f64 / 1e6;
        let origin = ticks.iter().step_by(2).copied().min().unwrap_or(0);
        let spans = ticks
            .chunks_exact(2)
            .zip(timer.labels)
            .map(|(p, name)| KernelSpan {
                name,
                start_ms: p[0].saturating_sub(origin) as f64 * ms_per_tick,
                ms: p[1].saturating_sub(p[0]) as f64 * ms_per_tick,
            })
            .collect();
        Ok(Some((spans, timer.untimed)))
    }
}
