//! Per-kernel times of a piece of work ([`Device::profile`](crate::Device::profile)): GPU
//! timestamps around every compute pass where the adapter has them, else the wall clock around
//! every kernel of the CPU device. `kiln profile` prints them as a table and a Chrome trace.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// One kernel's run.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSpan {
    /// The kernel: the shader entry point on a GPU, the op on the CPU device.
    pub name: &'static str,
    /// When it started, in milliseconds from the first timed kernel (GPU) or from the start of
    /// the profile (CPU).
    pub start_ms: f64,
    /// How long it ran, in milliseconds.
    pub ms: f64,
}

/// Where a profile's times come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileClock {
    /// GPU timestamp queries at the start and end of each compute pass.
    GpuTimestamps,
    /// The host's clock around each kernel of the CPU device.
    WallClock,
    /// Nothing: the adapter has no timestamp queries.
    None,
}

impl ProfileClock {
    /// "gpu-timestamp", "wall-clock" or "none", as benchmark records name their timing.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileClock::GpuTimestamps => "gpu-timestamp",
            ProfileClock::WallClock => "wall-clock",
            ProfileClock::None => "none",
        }
    }
}

/// The kernels a profiled piece of work ran, in order.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Every timed kernel, in launch order.
    pub spans: Vec<KernelSpan>,
    /// Where the times come from.
    pub clock: ProfileClock,
    /// Kernels that ran untimed (past the query set's capacity).
    pub untimed: u64,
}

/// One kernel's share of a profile.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTotal {
    /// The kernel.
    pub name: &'static str,
    /// How many times it ran.
    pub calls: usize,
    /// Its summed time, in milliseconds.
    pub ms: f64,
    /// Its share of all kernels' time, 0 to 1.
    pub share: f64,
}

impl Profile {
    /// The summed time of every timed kernel, in milliseconds.
    pub fn kernel_ms(&self) -> f64 {
        self.spans.iter().map(|s| s.ms).sum()
    }

    /// Time per kernel name, longest first (ties by name, so the order is stable).
    pub fn by_kernel(&self) -> Vec<KernelTotal> {
        let mut rows: Vec<KernelTotal> = vec![];
        for s in &self.spans {
            match rows.iter_mut().find(|r| r.name == s.name) {
                Some(r) => {
                    r.calls += 1;
                    r.ms += s.ms;
                }
                None => rows.push(KernelTotal {
                    name: s.name,
                    calls: 1,
                    ms: s.ms,
                    share: 0.0,
                }),
            }
        }
        let total = self.kernel_ms();
        for r in &mut rows {
            r.share = if total > 0.0 { r.ms / total } else { 0.0 };
        }
        rows.sort_by(|a, b| b.ms.total_cmp(&a.ms).then(a.name.cmp(b.name)));
        rows
    }
}

/// The CPU device's recorder: off (one relaxed load per kernel) until a profile starts.
#[derive(Default)]
pub(crate) struct CpuRecorder {
    on: AtomicBool,
    state: Mutex<Option<(Instant, Vec<KernelSpan>)>>,
}

impl CpuRecorder {
    pub fn begin(&self) {
        *self.state.lock().unwrap() = Some((Instant::now(), vec![]));
        self.on.store(true, Ordering::Release);
    }

    pub fn end(&self) -> Vec<KernelSpan> {
        self.on.store(false, Ordering::Release);
        self.state
            .lock()
            .unwrap()
            .take()
            .map(|(_, spans)| spans)
            .unwrap_or_default()
    }

    /// Times the kernel `name` until the guard drops; free when no profile is running.
    pub fn span(&self, name: &'static str) -> SpanGuard<'_> {
        let start = self.on.load(Ordering::Acquire).then(Instant::now);
        SpanGuard {
            recorder: self,
            name,
            start,
        }
    }
}

/// Records a CPU kernel's span when dropped (see [`CpuRecorder::span`]).
pub(crate) struct SpanGuard<'a> {
    recorder: &'a CpuRecorder,
    name: &'static str,
    start: Option<Instant>,
}

impl Drop for SpanGuard<'_> {
    fn drop(&mut self) {
        let Some(start) = self.start else { return };
        let end = Instant::now();
        if let Some((origin, spans)) = self.recorder.state.lock().unwrap().as_mut() {
            spans.push(KernelSpan {
                name: self.name,
                start_ms: start.saturating_duration_since(*origin).as_secs_f64() * 1e3,
                ms: end.duration_since(start).as_secs_f64() * 1e3,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_kernel_sums_calls_and_sorts_longest_first() {
        let span = |name, ms| KernelSpan {
            name,
            start_ms: 0.0,
            ms,
        };
        let p = Profile {
            spans: vec![
                span("a", 1.0),
                span("b", 4.0),
                span("a", 2.0),
                span("c", 3.0),
            ],
            clock: ProfileClock::WallClock,
            untimed: 0,
        };
        let rows = p.by_kernel();
        let names: Vec<_> = rows.iter().map(|r| (r.name, r.calls)).collect();
        assert_eq!(names, [("b", 1), ("a", 2), ("c", 1)]);
        assert_eq!(rows[1].ms, 3.0);
        assert!((rows.iter().map(|r| r.share).sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(p.kernel_ms(), 10.0);
    }

    #[test]
    fn the_recorder_is_silent_when_off() {
        let r = CpuRecorder::default();
        drop(r.span("before"));
        r.begin();
        drop(r.span("during"));
        let spans = r.end();
        drop(r.span("after"));
        assert_eq!(spans.iter().map(|s| s.name).collect::<Vec<_>>(), ["during"]);
        assert!(r.end().is_empty());
    }
}
