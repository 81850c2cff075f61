//! `essync policy bench POLICY CASES`: what a policy will cost, measured before it is deployed.
//!
//! - **load**: compiling the component (what a start costs the first time), and reading it back
//!   from the compile cache (every later start), when there is one;
//! - **instance**: creating the fresh instance every call runs in;
//! - **filter**, **resolve**: the time per document in calls of 1,000 (a sync's batch size),
//!   made by repeating the inputs of the cases file, instantiation included; and the most
//!   memory a call used, which the per-call memory limit must allow.
//!
//! Calls run one after another on one thread, under the default limits, as in a sync.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use essync::policy::{CompileCache, Compiled, LoadOptions, Policy, PolicyError, PolicyLimits};

/// Items per call: the batch size of a sync.
const BATCH: usize = 1000;
/// Each measurement runs at least this long, and at least [`MIN_CALLS`] calls.
const MEASURE_FOR: Duration = Duration::from_secs(2);
const MIN_CALLS: u32 = 3;

pub fn run(path: &Path, cases: &Path, cache: &CompileCache) -> anyhow::Result<ExitCode> {
    let source = super::source(path);
    let limits = PolicyLimits::default();
    let policy = Policy::load(&source, &LoadOptions::default())?;
    let inputs = super::read_cases(cases, policy.wants_base_content())?;
    println!(
        "policy    {}: {}, essync:policy@{}",
        policy.name(),
        bytes(policy.size()),
        policy.world_version()
    );
    let mut load = format!("{} compiling", duration(policy.load_time()));
    if let Some(dir) = cache.dir() {
        let options = LoadOptions {
            limits,
            cache: cache.clone(),
        };
        // The first load through the cache may have to fill it.
        let mut cached = Policy::load(&source, &options)?;
        if cached.compiled() != Compiled::FromCache {
            cached = Policy::load(&source, &options)?;
        }
        if cached.compiled() == Compiled::FromCache {
            load.push_str(&format!(
                ", {} from the compile cache ({})",
                duration(cached.load_time()),
                dir.display()
            ));
        } else {
            load.push_str(&format!(
                " (the compile cache {} is not used)",
                dir.display()
            ));
        }
    }
    println!("load      {load}");

    let (calls, took) = repeat(|| policy.probe().map(|_| ()))?;
    println!(
        "instance  {} per call (every call runs in a fresh instance)",
        duration(took / calls)
    );

    if policy.filters() {
        let filter = |batch: Vec<_>| policy.filter_blocking(batch);
        println!(
            "filter    {}",
            batch_line(&policy, &inputs.candidates, filter)?
        );
    } else {
        println!("filter    never called: the policy says it keeps every change");
    }
    let resolve = |batch: Vec<_>| policy.resolve_blocking(batch);
    println!(
        "resolve   {}",
        batch_line(&policy, &inputs.conflicts, resolve)?
    );
    println!(
        "limits    {} and {} per call (--policy-timeout-ms, --policy-memory-mib)",
        duration(limits.timeout),
        bytes(limits.memory_bytes)
    );
    Ok(ExitCode::SUCCESS)
}

/// The cost of one kind of call on batches of [`BATCH`] items made from `cases` (repeated).
fn batch_line<T: Clone, A>(
    policy: &Policy,
    cases: &[T],
    call: impl Fn(Vec<T>) -> Vec<Result<A, PolicyError>>,
) -> anyhow::Result<String> {
    if cases.is_empty() {
        return Ok("no case to make a batch of".to_string());
    }
    let batch: Vec<T> = cases.iter().cycle().take(BATCH).cloned().collect();
    measure(policy, || {
        let batch = batch.clone();
        let started = Instant::now();
        let answers = call(batch);
        (started.elapsed(), first_failure(&answers))
    })
}

/// Runs calls of [`BATCH`] items for [`MEASURE_FOR`]; one line of figures.
fn measure(
    policy: &Policy,
    mut call: impl FnMut() -> (Duration, Option<PolicyError>),
) -> anyhow::Result<String> {
    // A first call warms up, and says whether the policy copes with the batch at all.
    if let (_, Some(e)) = call() {
        anyhow::bail!("a call of {BATCH} items fails: {e}");
    }
    policy.reset_peak_memory();
    let (mut calls, mut took) = (0u32, Duration::ZERO);
    while calls < MIN_CALLS || took < MEASURE_FOR {
        let (elapsed, failure) = call();
        if let Some(e) = failure {
            anyhow::bail!("a call of {BATCH} items fails: {e}");
        }
        calls += 1;
        took += elapsed;
    }
    let per_call = took / calls;
    Ok(format!(
        "{} per document, {} per call of {BATCH} ({calls} calls); peak memory {} per call",
        duration(per_call / BATCH as u32),
        duration(per_call),
        bytes(policy.peak_memory())
    ))
}

/// Calls `f` for [`MEASURE_FOR`] (and [`MIN_CALLS`] times at least): how many times, how long.
fn repeat(mut f: impl FnMut() -> Result<(), PolicyError>) -> anyhow::Result<(u32, Duration)> {
    let started = Instant::now();
    let mut calls = 0u32;
    while calls < MIN_CALLS || started.elapsed() < MEASURE_FOR {
        f()?;
        calls += 1;
    }
    Ok((calls, started.elapsed()))
}

/// The first failure of a whole call (a trap, a timeout, out of memory) among the answers;
/// refusals are answers.
fn first_failure<T>(answers: &[Result<T, PolicyError>]) -> Option<PolicyError> {
    answers
        .iter()
        .filter_map(|answer| answer.as_ref().err())
        .find(|e| e.is_call_failure())
        .cloned()
}

/// A duration to three significant digits or so, in the unit that suits it.
fn duration(d: Duration) -> String {
    let seconds = d.as_secs_f64();
    if seconds >= 1.0 {
        format!("{seconds:.2} s")
    } else if seconds >= 1e-3 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{:.1} µs", seconds * 1e6)
    }
}

/// A size in bytes, in the unit that suits it.
pub fn bytes(n: usize) -> String {
    let n = n as f64;
    if n >= (1 << 20) as f64 {
        format!("{:.1} MiB", n / (1 << 20) as f64)
    } else if n >= 1024.0 {
        format!("{:.0} KiB", n / 1024.0)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_written_in_the_unit_that_suits_them() {
        assert_eq!(duration(Duration::from_millis(5310)), "5.31 s");
        assert_eq!(duration(Duration::from_micros(4200)), "4.2 ms");
        assert_eq!(duration(Duration::from_nanos(16_100)), "16.1 µs");
        assert_eq!(bytes(18_568_003), "17.7 MiB");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
        assert_eq!(bytes(3000), "3 KiB");
        assert_eq!(bytes(12), "12 B");
    }
}
