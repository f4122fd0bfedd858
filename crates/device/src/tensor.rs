//! Device tensors: a shape, a dtype and a view into storage that lives on one device.
//! Cloning a tensor is cheap (it shares storage); storage goes back to its device's allocator when
//! the last tensor using it is dropped.

use std::sync::{Arc, RwLock};

use crate::counters::CounterCells;
use crate::gpu::pool::PooledBuffer;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
/// A tensor's element type.
pub enum DType {
    /// 32-bit floats.
    F32,
    /// Token ids, class labels, argmax indices.
    U32,
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::U32 => "u32",
        })
    }
}

/// Host-side words of a CPU-device tensor (f32 stored as bits), returned to the counters and to
/// the device's [`CpuPool`] on drop.
pub(crate) struct CpuBuffer {
    pub words: RwLock<Vec<u32>>,
    counters: Arc<CounterCells>,
    pool: Arc<CpuPool>,
}

impl CpuBuffer {
    pub fn new(words: Vec<u32>, counters: Arc<CounterCells>, pool: Arc<CpuPool>) -> Arc<CpuBuffer> {
        counters.alloc(words.len() as u64 * 4);
        Arc::new(CpuBuffer {
            words: RwLock::new(words),
            counters,
            pool,
        })
    }
}

impl Drop for CpuBuffer {
    fn drop(&mut self) {
        let words = std::mem::take(self.words.get_mut().unwrap_or_else(|e| e.into_inner()));
        self.counters.free(words.len() as u64 * 4);
        self.pool.give(words);
    }
}

/// The CPU device's caching allocator: freed tensors' word vectors kept by length and handed out
/// again (zeroed), so a training step that allocates the same shapes every step stops paying the
/// operating system for fresh pages (about 14 ms of a 62 ms LeNet step here). Holds at most
/// [`CpuPool::MAX_BYTES`]; past it, the lengths used longest ago go back to the system first, so
/// shapes that stop recurring (a last partial batch, another sequence length) never crowd out
/// the ones a training step keeps asking for.
pub(crate) struct CpuPool {
    free: std::sync::Mutex<FreeLists>,
    max_bytes: u64,
}

/// Cached vectors by length, each length with the tick it was last given or taken at.
#[derive(Default)]
struct FreeLists {
    lists: std::collections::HashMap<usize, (u64, Vec<Vec<u32>>)>,
    bytes: u64,
    tick: u64,
}

impl Default for CpuPool {
    fn default() -> Self {
        CpuPool::with_budget(Self::MAX_BYTES)
    }
}

impl CpuPool {
    /// The most bytes kept for reuse by default.
    pub const MAX_BYTES: u64 = 1 << 30;

    /// A pool that keeps at most `max_bytes`.
    pub fn with_budget(max_bytes: u64) -> CpuPool {
        CpuPool {
            free: Default::default(),
            max_bytes,
        }
    }

    /// A zeroed vector of `len` words: a cached one if there is one.
    pub fn take(&self, len: usize) -> Vec<u32> {
        match self.pop(len) {
            Some(mut v) => {
                zero(&mut v);
                v
            }
            None => vec![0; len],
        }
    }

    /// A vector of `len` words for an output its kernel writes in full: a cached one as it is
    /// (no zeroing), else a fresh one of NaNs, so that a kernel that skips an element shows it in
    /// the tests (they compare every output with the reference on a fresh device).
    pub fn take_unzeroed(&self, len: usize) -> Vec<u32> {
        self.pop(len)
            .unwrap_or_else(|| vec![f32::NAN.to_bits(); len])
    }

    /// A cached vector of `len` words, as it was freed.
    fn pop(&self, len: usize) -> Option<Vec<u32>> {
        let mut free = self.free.lock().unwrap();
        free.tick += 1;
        let tick = free.tick;
        let (used, list) = free.lists.get_mut(&len)?;
        *used = tick;
        let v = list.pop()?;
        free.bytes -= len as u64 * 4;
        Some(v)
    }

    /// Keeps `words` for reuse (unless it is empty or alone exceeds the budget), then returns
    /// the least recently used lengths' vectors to the system until the pool fits its budget.
    pub fn give(&self, words: Vec<u32>) {
        let bytes = words.len() as u64 * 4;
        if bytes == 0 || bytes > self.max_bytes {
            return;
        }
        let mut free = self.free.lock().unwrap();
        free.tick += 1;
        let tick = free.tick;
        free.bytes += bytes;
        let entry = free.lists.entry(words.len()).or_default();
        entry.0 = tick;
        entry.1.push(words);
        while free.bytes > self.max_bytes {
            let oldest = free
                .lists
                .iter()
                .filter(|(_, (_, list))| !list.is_empty())
                .min_by_key(|(_, (used, _))| *used)
                .map(|(&len, _)| len)
                .expect("bytes over the budget are in some list");
            let list = &mut free.lists.get_mut(&oldest).expect("just found").1;
            list.pop();
            if list.is_empty() {
                free.lists.remove(&oldest);
            }
            free.bytes -= oldest as u64 * 4;
        }
    }

    /// Bytes held for reuse.
    pub fn cached_bytes(&self) -> u64 {
        self.free.lock().unwrap().bytes
    }

    /// Frees every cached vector.
    pub fn empty(&self) {
        *self.free.lock().unwrap() = Default::default();
    }
}

#[cfg(test)]
mod pool_tests {
    use super::CpuPool;

    /// Past its budget the pool lets the lengths used longest ago go, and keeps serving the
    /// ones in use: shapes that stop recurring cannot crowd them out.
    #[test]
    fn a_full_pool_evicts_the_least_recently_used_lengths() {
        let pool = CpuPool::with_budget(4 * 1000);
        // A step's working set: two lengths, taken and given back every step.
        pool.give(vec![1; 300]);
        pool.give(vec![2; 200]);
        assert_eq!(pool.cached_bytes(), 2000);
        for step in 0..10 {
            let a = pool.take_unzeroed(300);
            let b = pool.take_unzeroed(200);
            assert_eq!(
                (a[0], b[0]),
                (1, 2),
                "step {step}: the working set was evicted"
            );
            // While they are in use, a one-off length is freed (a partial batch, another
            // sequence length); then the step's buffers come back.
            pool.give(vec![3; 400 + step]);
            pool.give(a);
            pool.give(b);
            assert!(pool.cached_bytes() <= 4000, "over budget at step {step}");
        }
        // One vector larger than the whole budget is not kept, and evicts nothing.
        pool.give(vec![4; 2000]);
        assert_eq!(pool.take_unzeroed(300)[0], 1);
        assert_eq!(pool.take_unzeroed(2000)[0], f32::NAN.to_bits());
        pool.empty();
        assert_eq!(pool.cached_bytes(), 0);
    }
}

#[derive(Clone)]
pub(crate) enum Storage {
    Gpu(Arc<PooledBuffer>),
    Cpu(Arc<CpuBuffer>),
}

/// A tensor on a device. `offset` is in elements; views of a packed buffer have aligned offsets.
#[derive(Clone)]
pub struct Tensor {
    pub(crate) storage: Storage,
    pub(crate) offset: usize,
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: DType,
    /// For u32 tensors: an upper bound on the values when the host knows one (the maximum of uploaded
    /// data, the axis length for argmax), so index checks against a vocabulary need no readback.
    pub(crate) max_value: Option<u32>,
}

impl Tensor {
    /// Its shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Its element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Its number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Offset in bytes into the backing buffer.
    pub(crate) fn byte_offset(&self) -> u64 {
        self.offset as u64 * 4
    }

    pub(crate) fn byte_len(&self) -> u64 {
        self.len() as u64 * 4
    }

    /// The same data under another shape with the same number of elements.
    pub fn reshape(&self, shape: &[usize]) -> crate::Result<Tensor> {
        if shape.iter().product::<usize>() != self.len() {
            return Err(crate::Error::shape(
                "reshape",
                format!("{} elements", self.len()),
                format!("{shape:?}"),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    /// Where it starts in its buffer, in elements (views of one packed buffer differ here).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// A view of the first `len` elements, flat (no copy): e.g. the trainable part of a packed
    /// parameter buffer.
    pub fn prefix(&self, len: usize) -> crate::Result<Tensor> {
        if len > self.len() {
            return Err(crate::Error::shape(
                "prefix",
                format!("at most {} elements", self.len()),
                format!("{len}"),
            ));
        }
        Ok(Tensor {
            shape: vec![len],
            ..self.clone()
        })
    }

    /// Whether two tensors share storage (in-place ops refuse aliased arguments).
    pub(crate) fn same_storage(&self, other: &Tensor) -> bool {
        match (&self.storage, &other.storage) {
            (Storage::Gpu(a), Storage::Gpu(b)) => Arc::ptr_eq(a, b),
            (Storage::Cpu(a), Storage::Cpu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match self.storage {
            Storage::Gpu(_) => "gpu",
            Storage::Cpu(_) => "cpu",
        };
        write!(f, "Tensor({place}, {}, {:?})", self.dtype, self.shape)
    }
}

/// Zeroes `words`, on rayon's threads when it is large: a training step re-zeroes most of its
/// outputs (LeNet's, about 9 ms of a 49 ms step on 2 cores with one thread).
fn zero(words: &mut [u32]) {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    if words.len() <= CHUNK {
        words.fill(0);
    } else {
        words.par_chunks_mut(CHUNK).for_each(|c| c.fill(0));
    }
}
