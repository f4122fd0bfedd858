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

/// Host-side words of a CPU-device tensor (f32 stored as bits), returned to the counters on drop.
pub(crate) struct CpuBuffer {
    pub words: RwLock<Vec<u32>>,
    counters: Arc<CounterCells>,
}

impl CpuBuffer {
    pub fn new(words: Vec<u32>, counters: Arc<CounterCells>) -> Arc<CpuBuffer> {
        counters.alloc(words.len() as u64 * 4);
        Arc::new(CpuBuffer {
            words: RwLock::new(words),
            counters,
        })
    }
}

impl Drop for CpuBuffer {
    fn drop(&mut self) {
        let len = self.words.get_mut().map(|w| w.len()).unwrap_or(0);
        self.counters.free(len as u64 * 4);
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
