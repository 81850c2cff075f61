//! CPU time spent inside policy calls, process-wide: the share of essync's CPU that goes to the
//! policy (served as `essync_policy_cpu_seconds_total` by `--metrics`).
//!
//! Measured with the calling thread's CPU clock around each batch call, so time the thread
//! spends waiting (for a blocking-pool slot, for the scheduler) does not count.

use std::sync::atomic::{AtomicU64, Ordering};

/// Nanoseconds of thread CPU time spent in policy calls since the process started.
static CPU_NANOS: AtomicU64 = AtomicU64::new(0);

/// Runs `call` and adds the CPU time the current thread spent in it to the process total.
pub(crate) fn measured<T>(call: impl FnOnce() -> T) -> T {
    let start = thread_cpu_nanos();
    let answer = call();
    CPU_NANOS.fetch_add(thread_cpu_nanos().saturating_sub(start), Ordering::Relaxed);
    answer
}

/// CPU seconds spent in policy calls (filter and resolve, conversions included) since the
/// process started.
pub fn cpu_seconds() -> f64 {
    CPU_NANOS.load(Ordering::Relaxed) as f64 / 1e9
}

#[cfg(unix)]
fn thread_cpu_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}

/// No per-thread CPU clock: the counter stays at zero.
#[cfg(not(unix))]
fn thread_cpu_nanos() -> u64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_call_adds_its_cpu_time() {
        let before = cpu_seconds();
        let spin = std::time::Instant::now();
        measured(|| {
            let mut x = 0u64;
            while spin.elapsed() < std::time::Duration::from_millis(200) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        });
        // Other tests' policy calls may add to the total, never take from it; a loaded machine
        // may give the spinning thread only part of a core.
        let busy = cpu_seconds() - before;
        assert!(busy >= 0.01, "200 ms of spinning counted as {busy} s");
    }
}
