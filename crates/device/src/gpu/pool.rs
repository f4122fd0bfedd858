//! The caching allocator: freed buffers go back to a free list by size class and are reused.
//! Size classes are powers of two up to 1 MiB and quarter steps of a power of two above, so a
//! training step that asks for the same shapes every time creates no buffers after the first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::counters::CounterCells;

pub(crate) const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

pub(crate) fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    let pow = bytes.next_power_of_two();
    if pow <= 1 << 20 {
        return pow;
    }
    let quarter = pow / 8; // steps of a quarter of the previous power of two
    bytes.div_ceil(quarter) * quarter
}

pub(crate) struct BufferPool {
    device: wgpu::Device,
    free: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    pub counters: Arc<CounterCells>,
}

/// A buffer lent to a tensor; it returns to the pool when dropped.
pub(crate) struct PooledBuffer {
    pub buffer: wgpu::Buffer,
    pub class: u64,
    pool: Arc<BufferPool>,
}

impl BufferPool {
    pub fn new(device: wgpu::Device, counters: Arc<CounterCells>) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            device,
            free: Mutex::new(HashMap::new()),
            counters,
        })
    }

    pub fn acquire(self: &Arc<Self>, bytes: u64) -> PooledBuffer {
        let class = size_class(bytes);
        let reused = self.free.lock().unwrap().get_mut(&class).and_then(Vec::pop);
        let buffer = reused.unwrap_or_else(|| {
            CounterCells::add(&self.counters.buffers_created, 1);
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kiln tensor"),
                size: class,
                usage: USAGE,
                mapped_at_creation: false,
            })
        });
        self.counters.alloc(class);
        PooledBuffer {
            buffer,
            class,
            pool: self.clone(),
        }
    }

    /// Bytes held in the free lists.
    pub fn cached_bytes(&self) -> u64 {
        let free = self.free.lock().unwrap();
        free.iter().map(|(c, v)| c * v.len() as u64).sum()
    }

    /// Drop every cached buffer.
    pub fn empty_cache(&self) {
        for (_, v) in self.free.lock().unwrap().drain() {
            for b in v {
                b.destroy();
            }
        }
    }

    pub fn same_pool(&self, other: &Arc<BufferPool>) -> bool {
        std::ptr::eq(self, Arc::as_ptr(other))
    }
}

impl PooledBuffer {
    pub fn pool(&self) -> &Arc<BufferPool> {
        &self.pool
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        self.pool.counters.free(self.class);
        if let Ok(mut free) = self.pool.free.lock() {
            free.entry(self.class)
                .or_default()
                .push(self.buffer.clone());
        }
    }
}
