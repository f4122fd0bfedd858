//! Work counters kept by every device: what was dispatched, submitted, read back and held.
//! Training and benchmarks report them per step from [`Counters`] snapshots.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a device's counters. Subtract two snapshots to get the work in between.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Kernel launches (compute dispatches on a GPU, reference calls on the CPU device).
    pub dispatches: u64,
    /// Queue submissions.
    pub submits: u64,
    /// Host reads of device data.
    pub readbacks: u64,
    /// Bytes uploaded to the device.
    pub bytes_up: u64,
    /// Bytes read back from the device.
    pub bytes_down: u64,
    /// Tensors' buffers alive now, and their bytes (rounded to the allocator's size classes).
    pub buffers_live: u64,
    /// Their bytes.
    pub bytes_live: u64,
    /// The most `bytes_live` has been.
    pub peak_bytes: u64,
    /// Buffers the allocator had to create (the rest were reused from its cache).
    pub buffers_created: u64,
    /// Pipelines compiled by the pipeline cache.
    pub pipelines_compiled: u64,
}

impl Counters {
    /// Work done between `earlier` and `self` (live and peak figures are taken from `self`). A
    /// count that went down meanwhile (autotuning on another thread took its own measurements
    /// back) gives 0, not an underflow.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            dispatches: self.dispatches.saturating_sub(earlier.dispatches),
            submits: self.submits.saturating_sub(earlier.submits),
            readbacks: self.readbacks.saturating_sub(earlier.readbacks),
            bytes_up: self.bytes_up.saturating_sub(earlier.bytes_up),
            bytes_down: self.bytes_down.saturating_sub(earlier.bytes_down),
            buffers_live: self.buffers_live,
            bytes_live: self.bytes_live,
            peak_bytes: self.peak_bytes,
            buffers_created: self.buffers_created.saturating_sub(earlier.buffers_created),
            pipelines_compiled: self
                .pipelines_compiled
                .saturating_sub(earlier.pipelines_compiled),
        }
    }
}

#[derive(Default, Debug)]
pub(crate) struct CounterCells {
    pub dispatches: AtomicU64,
    pub submits: AtomicU64,
    pub readbacks: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    pub buffers_live: AtomicU64,
    pub bytes_live: AtomicU64,
    pub peak_bytes: AtomicU64,
    pub buffers_created: AtomicU64,
    pub pipelines_compiled: AtomicU64,
}

impl CounterCells {
    pub fn add(cell: &AtomicU64, n: u64) {
        cell.fetch_add(n, Relaxed);
    }

    pub fn alloc(&self, bytes: u64) {
        self.buffers_live.fetch_add(1, Relaxed);
        let live = self.bytes_live.fetch_add(bytes, Relaxed) + bytes;
        self.peak_bytes.fetch_max(live, Relaxed);
    }

    pub fn free(&self, bytes: u64) {
        self.buffers_live.fetch_sub(1, Relaxed);
        self.bytes_live.fetch_sub(bytes, Relaxed);
    }

    /// Takes back the work counted since `earlier` (dispatches, submits, readbacks, transfers,
    /// buffers created): for kiln's own measurements (autotuning), which callers did not ask for
    /// and must not see in their per-step figures. Pipelines compiled stay counted: they stay in
    /// the cache and serve the caller's later launches.
    pub fn discount(&self, earlier: &Counters) {
        let spent = self.snapshot().since(earlier);
        for (cell, n) in [
            (&self.dispatches, spent.dispatches),
            (&self.submits, spent.submits),
            (&self.readbacks, spent.readbacks),
            (&self.bytes_up, spent.bytes_up),
            (&self.bytes_down, spent.bytes_down),
            (&self.buffers_created, spent.buffers_created),
        ] {
            // Saturating: two threads tuning on one device at once may each take back work the
            // other counted.
            let _ = cell.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n)));
        }
    }

    pub fn snapshot(&self) -> Counters {
        Counters {
            dispatches: self.dispatches.load(Relaxed),
            submits: self.submits.load(Relaxed),
            readbacks: self.readbacks.load(Relaxed),
            bytes_up: self.bytes_up.load(Relaxed),
            bytes_down: self.bytes_down.load(Relaxed),
            buffers_live: self.buffers_live.load(Relaxed),
            bytes_live: self.bytes_live.load(Relaxed),
            peak_bytes: self.peak_bytes.load(Relaxed),
            buffers_created: self.buffers_created.load(Relaxed),
            pipelines_compiled: self.pipelines_compiled.load(Relaxed),
        }
    }
}
