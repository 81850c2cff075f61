//! What a policy runs in: the engine (compiled once, interrupted by an epoch ticker), the
//! linker (WASI with nothing behind it, plus `log`), and the per-call store (memory limit,
//! captured stdout/stderr, bounded logs, fixed clocks and seeded randomness).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::error::PolicyError;
use super::world::{bindings, bindings_v0_1, bindings_v0_2};

/// How often the ticker advances the engine's epoch: the granularity of call deadlines.
pub(super) const TICK: Duration = Duration::from_millis(10);

/// Most log messages kept from one call; the rest are counted and dropped.
const MAX_LOG_MESSAGES: usize = 100;
/// Longest log message kept, in bytes; longer ones are cut.
const MAX_LOG_MESSAGE_BYTES: usize = 4096;
/// Most bytes kept from one call's stdout and stderr, each (the last ones).
const MAX_OUTPUT_BYTES: usize = 16 * 1024;
/// Most elements of a table a policy may grow (tables hold function references).
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The engine every call of one policy runs on: epoch interruption bounds each call in time.
/// The compile cache, if any, keys its entries by these settings too.
pub(super) fn engine(cache: Option<wasmtime::Cache>) -> Result<Engine, PolicyError> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    config.cache(cache);
    Engine::new(&config).map_err(|e| PolicyError::Engine {
        reason: format!("{e:#}"),
    })
}

/// Starts the thread that advances the engine's epoch every [`TICK`]; it ends by itself once
/// the engine is dropped.
pub(super) fn start_ticker(engine: &Engine) -> Result<(), PolicyError> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("essync-policy-ticker".to_string())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .map(|_| ())
        .map_err(|e| PolicyError::Engine {
            reason: format!("cannot start the ticker thread: {e}"),
        })
}

/// The WASI version whose clock imports are replaced (the version wasmtime-wasi implements;
/// components asking for any compatible 0.2.x version are matched to it).
const WASI_CLOCKS: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Adds the WASI imports a policy gets, with no file system, network, environment or arguments
/// behind them (the world's own import, `log`, is added by the caller for its version).
pub(super) fn add_wasi(linker: &mut Linker<CallState>) -> Result<(), PolicyError> {
    let setup = |e: wasmtime::Error| PolicyError::Engine {
        reason: format!("cannot define the policy imports: {e:#}"),
    };
    wasmtime_wasi::p2::add_to_linker_sync(linker).map_err(setup)?;
    // Waiting on a clock blocks in the host, where the epoch deadline cannot interrupt it: a
    // policy has nothing to wait for, so a wait is a trap.
    linker.allow_shadowing(true);
    let mut clocks = linker.instance(WASI_CLOCKS).map_err(setup)?;
    for name in ["subscribe-duration", "subscribe-instant"] {
        clocks
            .func_wrap(
                name,
                |_, (_,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
                    wasmtime::bail!("a policy cannot sleep or wait on a clock")
                },
            )
            .map_err(setup)?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// How essync answers an import of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// essync provides it (sandboxed, as described).
    Provided,
    /// It links, so that language runtimes that import it load, but every use of it fails.
    Denied,
}

/// What a policy gets for each import it may have, by the start of the import's name: the
/// world's own, and the WASI interfaces [`add_wasi`] links, as [`CallState::new`] sets them up.
const IMPORTS: &[(&str, Grant, &str)] = &[
    (
        "log",
        Grant::Provided,
        "into essync's log (target essync::policy), 100 messages a call at most",
    ),
    (
        "essync:policy/types",
        Grant::Provided,
        "the policy world's types",
    ),
    (
        "wasi:cli/stdout",
        Grant::Provided,
        "captured into essync's debug log (target essync::policy)",
    ),
    (
        "wasi:cli/stderr",
        Grant::Provided,
        "captured into essync's debug log; its end explains a failed call",
    ),
    ("wasi:cli/stdin", Grant::Provided, "empty"),
    (
        "wasi:cli/environment",
        Grant::Provided,
        "empty: no variables, no arguments",
    ),
    ("wasi:cli/exit", Grant::Provided, "exiting fails the call"),
    ("wasi:cli/terminal-", Grant::Provided, "no terminal"),
    (
        "wasi:clocks/",
        Grant::Provided,
        "stopped at the Unix epoch; waiting on one fails the call",
    ),
    (
        "wasi:random/",
        Grant::Provided,
        "seeded: the same numbers in every call",
    ),
    (
        "wasi:io/",
        Grant::Provided,
        "streams and polls, for the standard input and outputs",
    ),
    (
        "wasi:filesystem/",
        Grant::Denied,
        "no file system: no directory is open, so no file can be",
    ),
    (
        "wasi:sockets/",
        Grant::Denied,
        "no network: every address is refused, no name is looked up",
    ),
];

/// How essync answers the import `name` (e.g. `wasi:sockets/tcp@0.2.9`), and how it behaves;
/// `None` for an import essync does not link (a component that has one is refused).
pub fn import_grant(name: &str) -> Option<(Grant, &'static str)> {
    IMPORTS
        .iter()
        .find(|(prefix, _, _)| {
            name.strip_prefix(prefix).is_some_and(|rest| {
                prefix.ends_with(['/', '-']) || rest.is_empty() || rest.starts_with('@')
            })
        })
        .map(|(_, grant, how)| (*grant, *how))
}

/// The data of one call's store.
pub(super) struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    policy: Arc<str>,
    logged: usize,
    dropped_logs: usize,
    stdout: CapturedOutput,
    stderr: CapturedOutput,
}

impl CallState {
    /// A fresh sandbox: no preopened directory, no environment, no arguments, no network
    /// (all socket addresses denied, name lookup off), stdin closed, stdout and stderr
    /// captured, clocks fixed at the Unix epoch, randomness seeded with a constant.
    pub(super) fn new(policy: Arc<str>, memory_bytes: usize) -> Self {
        let stdout = CapturedOutput::default();
        let stderr = CapturedOutput::default();
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FixedClock)
            .monotonic_clock(FixedClock)
            .secure_random(wasmtime_wasi::Deterministic::new(SEED.to_vec()))
            .insecure_random(wasmtime_wasi::Deterministic::new(SEED.to_vec()))
            .insecure_random_seed(0x5eed)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        CallState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: memory_bytes,
                used: 0,
                exceeded: false,
            },
            policy,
            logged: 0,
            dropped_logs: 0,
            stdout,
            stderr,
        }
    }

    /// Logs what the policy wrote to stdout and stderr, and the log messages it lost; returns
    /// the lines of stderr, which say why a policy failed (see `guest.rs`).
    pub(super) fn finish(&mut self) -> Vec<String> {
        let policy = self.policy.clone();
        let stdout = self.stdout.take_lines();
        let stderr = self.stderr.take_lines();
        for (stream, lines) in [("stdout", &stdout), ("stderr", &stderr)] {
            for line in lines {
                tracing::debug!(target: "essync::policy", policy = %policy, stream, "{line}");
            }
        }
        if self.dropped_logs > 0 {
            tracing::warn!(
                target: "essync::policy",
                policy = %policy,
                "dropped {} log messages past the limit of {MAX_LOG_MESSAGES} per call",
                self.dropped_logs
            );
        }
        stderr
    }
}

/// Constant bytes for the policy's random sources: a policy must answer the same way every
/// time, so its randomness is reproducible.
const SEED: [u8; 16] = *b"essync-policy-rn";

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::essync::policy::types::Host for CallState {}
impl bindings_v0_1::essync::policy::types::Host for CallState {}
impl bindings_v0_2::essync::policy::types::Host for CallState {}

impl bindings::PolicyImports for CallState {
    fn log(&mut self, level: bindings::essync::policy::types::Level, message: String) {
        use bindings::essync::policy::types::Level;
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        self.log_message(level, &message);
    }
}

impl bindings_v0_2::PolicyImports for CallState {
    fn log(&mut self, level: bindings_v0_2::essync::policy::types::Level, message: String) {
        use bindings_v0_2::essync::policy::types::Level;
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        self.log_message(level, &message);
    }
}

impl bindings_v0_1::PolicyImports for CallState {
    fn log(&mut self, level: bindings_v0_1::essync::policy::types::Level, message: String) {
        use bindings_v0_1::essync::policy::types::Level;
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        self.log_message(level, &message);
    }
}

impl CallState {
    /// A policy's message, at its level, under target `essync::policy` (bounded per call).
    fn log_message(&mut self, level: tracing::Level, message: &str) {
        if self.logged >= MAX_LOG_MESSAGES {
            self.dropped_logs += 1;
            return;
        }
        self.logged += 1;
        let message = cut(message, MAX_LOG_MESSAGE_BYTES);
        let policy = &*self.policy;
        match level {
            tracing::Level::TRACE => tracing::trace!(target: "essync::policy", policy, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(target: "essync::policy", policy, "{message}"),
            tracing::Level::INFO => tracing::info!(target: "essync::policy", policy, "{message}"),
            tracing::Level::WARN => tracing::warn!(target: "essync::policy", policy, "{message}"),
            _ => tracing::error!(target: "essync::policy", policy, "{message}"),
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(super) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Bounds the memory of one call (all linear memories and tables of the instance).
pub(super) struct MemoryLimiter {
    limit: usize,
    used: usize,
    /// Set when the policy asked for more than the limit: a trap that follows is reported as
    /// out of memory.
    pub(super) exceeded: bool,
}

impl MemoryLimiter {
    /// The memory the call has grown to, in bytes.
    pub(super) fn used(&self) -> usize {
        self.used
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grown = self.used.saturating_add(desired.saturating_sub(current));
        if grown > self.limit {
            self.exceeded = true;
            // A trap rather than a failed `memory.grow`: the policy stops here, and the error
            // says why, instead of a language runtime's abort.
            wasmtime::bail!("memory limit of {} bytes reached", self.limit);
        }
        self.used = grown;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.exceeded = true;
            wasmtime::bail!("table limit of {MAX_TABLE_ELEMENTS} elements reached");
        }
        Ok(true)
    }
}

/// A new store for one call, its deadline set `ticks` epochs ahead.
pub(super) fn store(engine: &Engine, state: CallState, ticks: u64) -> Store<CallState> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();
    store
}

/// Both clocks stand still at the Unix epoch: a policy's answer must not depend on when it
/// runs (the documents carry their own timestamps).
struct FixedClock;

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// What a policy writes to stdout or stderr, kept (its last [`MAX_OUTPUT_BYTES`]) to be logged
/// after the call.
#[derive(Clone, Default)]
struct CapturedOutput(Arc<Mutex<Vec<u8>>>);

impl CapturedOutput {
    fn append(&self, bytes: &[u8]) {
        // The end is kept: it says why a call failed.
        let mut buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        buffer.extend_from_slice(&bytes[bytes.len().saturating_sub(MAX_OUTPUT_BYTES)..]);
        let excess = buffer.len().saturating_sub(MAX_OUTPUT_BYTES);
        buffer.drain(..excess);
    }

    fn take_lines(&self) -> Vec<String> {
        let buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&buffer)
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(str::to_string)
            .collect()
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_OUTPUT_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_provided_or_denied_by_their_names() {
        for name in [
            "log",
            "essync:policy/types@0.2.0",
            "wasi:cli/stdout@0.2.6",
            "wasi:cli/terminal-stdin@0.2.9",
            "wasi:clocks/wall-clock@0.2.12",
            "wasi:random/insecure-seed@0.2.6",
            "wasi:io/streams@0.2.9",
        ] {
            assert!(
                matches!(import_grant(name), Some((Grant::Provided, _))),
                "{name}"
            );
        }
        for name in ["wasi:sockets/tcp@0.2.9", "wasi:filesystem/preopens@0.2.9"] {
            assert!(
                matches!(import_grant(name), Some((Grant::Denied, _))),
                "{name}"
            );
        }
        for name in ["logger", "wasi:http/types@0.2.0", "wasi:cli/stdoutx@0.2.0"] {
            assert_eq!(import_grant(name), None, "{name}");
        }
    }
}
