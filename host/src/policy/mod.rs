//! The policy runtime: runs the WebAssembly component that filters documents and resolves
//! conflicts.
//!
//! A policy is a component of the `essync:policy` world (`wit/policy.wit`): it exports
//! `essync:policy/filter` and `essync:policy/resolver`, each a batch call (a list in, a list of
//! the same length out). [`Policy`] loads one and calls it:
//!
//! - **Every supported interface version.** Components of the current world
//!   ([`WORLD_VERSION`]) and of the earlier `0.2.0` (`wit/0.2.0`) and `0.1.0` (`wit/0.1.0`)
//!   load. A `0.2.0` component is adapted: it is not asked what it needs (essync keeps the
//!   base's content for it) and its conflicts carry no `base-content`. A `0.1.0` component sees
//!   no base, no stamps and no deletes, and what it cannot be asked (a delete to filter, a
//!   delete against a change to resolve) is answered by the default rule (a delete takes part;
//!   the change wins over the delete).
//! - **Needs.** A current component is asked once, when it is loaded, what it needs
//!   ([`Policy::wants_base_content`]): whether it merges from the base's content, which essync
//!   then keeps in its ledger; and whether its filter may answer anything but `keep`
//!   ([`Policy::filters`]): when not, it is never asked, and every candidate is kept.
//!
//! - **Load once.** [`Policy::builtin`] (the default last-write-wins policy, embedded in the
//!   binary), [`Policy::from_file`] and [`Policy::from_bytes`] compile the component once
//!   (wasmtime `Engine`, `Component`, `InstancePre`) after checking that it exports the policy
//!   world at a compatible version: a component of another world is refused with a message
//!   naming the missing export. A [`Policy`] is cheap to clone and shared across tasks.
//!   [`Policy::load`] does the same through a [`CompileCache`] (`cache.rs`): the compiled code
//!   is kept on disk, so the next start with the same component skips the compilation.
//! - **Reload.** [`PolicyReload`] (`reload.rs`) loads a replacement of the policy file when
//!   asked (SIGHUP) or when the file changes, checks it, and keeps the old policy if the new
//!   one is refused.
//! - **Sandbox per call.** Every call gets a fresh store and instance: no preopened
//!   directory, no environment, no arguments, no network, stdin closed, stdout and stderr
//!   captured into the logs, clocks fixed at the Unix epoch, randomness seeded with a constant,
//!   and no way to sleep. The policy can `log` (target `essync::policy`), a bounded number of
//!   messages per call.
//! - **Bounded.** Each call is bounded in time ([`PolicyLimits::timeout`], by epoch
//!   interruption: a ticker thread advances the engine's epoch every 10 ms) and memory
//!   ([`PolicyLimits::memory_bytes`], by a resource limiter). Batches are cut into chunks of
//!   [`PolicyLimits::batch_size`] and run on a blocking thread (`spawn_blocking`).
//! - **Errors per item.** [`Policy::filter`] and [`Policy::resolve`] return one result per
//!   input, in order. A trap, a timeout, running out of memory or an answer of the wrong length
//!   fail the call; the runtime then bisects the batch (see `batch.rs`) so the items that make the
//!   policy fail get a [`PolicyError`] and the others their answer. An answer that cannot be
//!   applied (a document whose content is not a JSON object, whose id is not the item's, ...)
//!   is a [`PolicyError::Malformed`] for that item, and a policy's own refusal a
//!   [`PolicyError::Refused`]. The host never panics on what a policy does.

mod batch;
mod cache;
mod convert;
mod error;
mod guest;
mod reload;
mod sandbox;
#[cfg(test)]
mod tests;
pub mod usage;
mod world;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;
use wasmtime::component::Component;
use wasmtime::{Engine, Store};

pub use cache::{CompileCache, Compiled};
pub use error::PolicyError;
pub use reload::{PolicyReload, ReloadRequest};
pub use sandbox::{Grant, import_grant};

use batch::CallFailure;
use sandbox::CallState;

use world::bindings::essync::policy::types as wit;
use world::{Instance, Pre, World};

/// The WIT package a policy implements.
pub const WORLD_PACKAGE: &str = "essync:policy";
/// The world a policy is a component of.
pub const WORLD: &str = "policy";
/// The version of the `essync:policy` package this essync runs.
pub const WORLD_VERSION: &str = "0.3.0";
/// The earlier versions whose components this essync still runs, adapted, newest first.
pub const OLDER_WORLD_VERSIONS: [&str; 2] = ["0.2.0", "0.1.0"];

/// The default policy (last-write-wins), compiled from `policies/` for `wasm32-wasip2`.
static BUILTIN: &[u8] = include_bytes!(env!("ESSYNC_BUILTIN_POLICY"));

/// The name of the built-in policy.
pub const BUILTIN_NAME: &str = "last-write-wins";

/// The WIT of the current `essync:policy` world (`wit/policy.wit`), as this essync was built
/// with: what `essync policy wit` prints and `essync policy new` writes.
pub const WIT: &str = include_str!("../../../wit/policy.wit");

/// Where a policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// The built-in default policy ([`BUILTIN_NAME`]).
    Builtin,
    /// A component file.
    File(PathBuf),
}

/// How policies are loaded: the bounds of their calls and where their compiled code is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// The bounds of every call.
    pub limits: PolicyLimits,
    /// Where compiled code is kept between runs.
    pub cache: CompileCache,
}

/// The bounds of every call of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyLimits {
    /// Most time one call (instantiation included) may run; enforced within 10 ms.
    pub timeout: Duration,
    /// Most memory one call may use (linear memories), in bytes.
    pub memory_bytes: usize,
    /// Most items per call: larger batches are cut into chunks of this size.
    pub batch_size: usize,
}

impl Default for PolicyLimits {
    /// 2 s per call, 64 MiB, 1,000 items per call.
    fn default() -> Self {
        PolicyLimits {
            timeout: Duration::from_secs(2),
            memory_bytes: 64 << 20,
            batch_size: 1000,
        }
    }
}

/// The store a document was read from (the stores' own [`crate::store::Side`]).
pub use crate::store::Side;

/// Who set a document's timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stamp {
    /// The document's writer: the timestamp it carries is new in this version.
    Written,
    /// essync: the version carries no timestamp of its own, or it changed and kept the base's;
    /// the timestamp is when the change was made as far as essync can tell (Cassandra's write
    /// time, or when essync first saw the Elasticsearch version).
    Observed,
}

/// One version of a document, and who set its timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    /// The document; its timestamp must be set.
    pub document: crate::Document,
    /// Who set the timestamp.
    pub stamp: Stamp,
}

impl Version {
    /// A version whose writer set its timestamp.
    pub fn written(document: crate::Document) -> Self {
        Self {
            document,
            stamp: Stamp::Written,
        }
    }
}

/// A change about to take part in the sync: a new version read from one store, or the delete
/// of a document from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Where the change was made.
    pub side: Side,
    /// The new version; for a delete, the version that was deleted (the base).
    pub version: Version,
    /// Whether the change is a delete.
    pub deleted: bool,
}

/// What happens to a candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The document takes part as it is.
    Keep,
    /// The document takes part as this document (same id); both sides get it.
    Transform(crate::Document),
    /// The document's id is left alone on both sides.
    Skip {
        /// The policy's reason, for the logs.
        reason: String,
    },
}

/// Both versions of one id that both sides changed since the base; a version is absent where
/// that side deleted the document or never had it.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The id every version shares.
    pub id: Uuid,
    /// The version both sides held after the last sync, if essync synced this id before.
    pub base: Option<crate::Document>,
    /// Whether `base` carries the synced content; when false its content is `{}` (essync kept
    /// none: the policy did not ask, or the id was synced before it did).
    pub base_content: bool,
    /// The Elasticsearch version.
    pub elasticsearch: Option<Version>,
    /// The Cassandra version.
    pub cassandra: Option<Version>,
}

/// What both sides should hold for one id.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Leave both sides as they are.
    Unchanged,
    /// Both sides get the Elasticsearch version (present, checked).
    UseElasticsearch,
    /// Both sides get the Cassandra version (present, checked).
    UseCassandra,
    /// Both sides get this document (the conflict's id, checked).
    Write(crate::Document),
    /// The document is removed from both sides.
    Delete,
}

/// One export's call on a batch, in a given store and instance.
type WasmCall<'a, I, A> = dyn FnMut(&mut Store<CallState>, &Instance, &[I]) -> wasmtime::Result<Vec<Result<A, String>>>
    + 'a;

/// One item of a batch, before the call.
enum Input<I, A> {
    /// Sent to the component.
    Send(I),
    /// Answered without the component (what an older world cannot be asked).
    Answered(A),
    /// Not sent: the item itself is invalid.
    Invalid(PolicyError),
}

/// A loaded policy component, ready to be called. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Policy {
    inner: Arc<Inner>,
    limits: PolicyLimits,
    /// The deadline of a call, in epoch ticks.
    deadline_ticks: u64,
}

/// What is compiled once and shared by every clone.
struct Inner {
    name: Arc<str>,
    version: String,
    exports: Vec<String>,
    imports: Vec<String>,
    engine: Engine,
    pre: Pre,
    size: usize,
    load_time: Duration,
    compiled: Compiled,
    /// Whether the component merges from the base's content (its `needs`, asked once at load).
    base_content: AtomicBool,
    /// Whether the component's `filter` may answer anything but `keep` (its `needs`); when not,
    /// it is never called.
    filters: AtomicBool,
    /// The most linear memory a call used, in bytes (see [`Policy::peak_memory`]).
    peak_memory: AtomicUsize,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.inner.name)
            .field("version", &self.inner.version)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// The built-in default policy (last-write-wins), embedded in the binary.
    pub fn builtin(limits: PolicyLimits) -> Result<Policy, PolicyError> {
        Policy::from_bytes(BUILTIN_NAME, BUILTIN, limits)
    }

    /// Loads a policy component from a `.wasm` file; the policy is named after the file.
    pub fn from_file(path: &Path, limits: PolicyLimits) -> Result<Policy, PolicyError> {
        let bytes = std::fs::read(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source: Arc::new(source),
        })?;
        Policy::from_bytes(&path.display().to_string(), &bytes, limits)
    }

    /// Loads a policy, through the compile cache of `options`. Blocks while it compiles
    /// (milliseconds for a Rust policy, seconds for a large one that is not in the cache yet).
    pub fn load(source: &PolicySource, options: &LoadOptions) -> Result<Policy, PolicyError> {
        match source {
            PolicySource::Builtin => {
                Policy::compile(BUILTIN_NAME, BUILTIN, options.limits, &options.cache)
            }
            PolicySource::File(path) => {
                let bytes = std::fs::read(path).map_err(|source| PolicyError::Read {
                    path: path.to_path_buf(),
                    source: Arc::new(source),
                })?;
                Policy::compile(
                    &path.display().to_string(),
                    &bytes,
                    options.limits,
                    &options.cache,
                )
            }
        }
    }

    /// Loads a policy component from its bytes (binary, or the WebAssembly text format),
    /// compiling it (no compile cache).
    pub fn from_bytes(
        name: &str,
        bytes: &[u8],
        limits: PolicyLimits,
    ) -> Result<Policy, PolicyError> {
        Policy::compile(name, bytes, limits, &CompileCache::Off)
    }

    fn compile(
        name: &str,
        bytes: &[u8],
        limits: PolicyLimits,
        cache: &CompileCache,
    ) -> Result<Policy, PolicyError> {
        let started = Instant::now();
        if is_core_module(bytes) {
            return Err(PolicyError::NotAComponent {
                name: name.to_string(),
            });
        }
        if !looks_like_wasm(bytes) {
            return Err(PolicyError::Invalid {
                name: name.to_string(),
                reason: "it is neither WebAssembly (no \\0asm header) nor its text format"
                    .to_string(),
            });
        }
        let cache = cache.open();
        let engine = sandbox::engine(cache.clone())?;
        let component = Component::new(&engine, bytes).map_err(|e| PolicyError::Invalid {
            name: name.to_string(),
            reason: one_line(&e),
        })?;
        // The cache was made for this load alone: a hit is this component's.
        let compiled = match &cache {
            Some(cache) if cache.cache_hits() > 0 => Compiled::FromCache,
            Some(_) => Compiled::Fresh { cached: true },
            None => Compiled::Fresh { cached: false },
        };
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(&engine).map(|(n, _)| n.to_string()).collect();
        let imports: Vec<String> = ty.imports(&engine).map(|(n, _)| n.to_string()).collect();
        let (version, world) = world::check_exports(name, &exports)?;
        let pre = Pre::new(name, &engine, &component, world)?;
        sandbox::start_ticker(&engine)?;
        match world {
            World::Current => {}
            World::V0_2 => tracing::info!(
                "policy {name} is built for essync:policy@{version}; it runs adapted (essync \
                 keeps the base's content for it; rebuild it against @{WORLD_VERSION} to say \
                 whether it needs it)"
            ),
            World::V0_1 => tracing::info!(
                "policy {name} is built for essync:policy@{version}; it runs adapted (it sees \
                 no base and no deletes; rebuild it against @{WORLD_VERSION} for them)"
            ),
        }
        let load_time = started.elapsed();
        tracing::debug!(
            policy = name,
            version,
            ?compiled,
            ?load_time,
            "policy loaded"
        );
        let inner = Arc::new(Inner {
            name: Arc::from(name),
            version,
            exports,
            imports,
            engine,
            pre,
            size: bytes.len(),
            load_time,
            compiled,
            base_content: AtomicBool::new(false),
            filters: AtomicBool::new(true),
            peak_memory: AtomicUsize::new(0),
        });
        let policy = Policy::limited(inner, limits);
        let needs = policy.ask_needs()?;
        (policy.inner.base_content).store(needs.base_content, Ordering::Relaxed);
        (policy.inner.filters).store(needs.filters, Ordering::Relaxed);
        tracing::debug!(
            policy = name,
            base_content = needs.base_content,
            filters = needs.filters,
            "policy needs"
        );
        Ok(policy)
    }

    fn limited(inner: Arc<Inner>, limits: PolicyLimits) -> Policy {
        let tick = sandbox::TICK.as_nanos().max(1);
        // One tick more than the limit: the first tick may come at once.
        let deadline_ticks = u64::try_from(limits.timeout.as_nanos().div_ceil(tick))
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        Policy {
            inner,
            limits: PolicyLimits {
                batch_size: limits.batch_size.max(1),
                ..limits
            },
            deadline_ticks,
        }
    }

    /// The same compiled policy under other limits (no recompilation).
    pub fn with_limits(&self, limits: PolicyLimits) -> Policy {
        Policy::limited(self.inner.clone(), limits)
    }

    /// The policy's name: `last-write-wins` for the built-in one, else the file or the name
    /// it was loaded with.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The version of the `essync:policy` world the component exports (e.g. `0.2.0`).
    pub fn world_version(&self) -> &str {
        &self.inner.version
    }

    /// The version of the world the component runs as: [`WORLD_VERSION`], or the one of
    /// [`OLDER_WORLD_VERSIONS`] it is adapted from (its exports may carry a later patch).
    pub fn runs_as(&self) -> &'static str {
        match self.inner.pre.world() {
            World::Current => WORLD_VERSION,
            World::V0_2 => OLDER_WORLD_VERSIONS[0],
            World::V0_1 => OLDER_WORLD_VERSIONS[1],
        }
    }

    /// Whether the policy merges from the base's content (the version both sides held after
    /// the last sync), so that essync keeps that content in its ledger: what a current
    /// component's `needs` answered when it was loaded (the built-in policy does not). A
    /// component of world 0.2.0 may merge, and essync keeps the content for it; one of 0.1.0
    /// sees no base.
    pub fn wants_base_content(&self) -> bool {
        self.inner.base_content.load(Ordering::Relaxed)
    }

    /// Whether the policy's `filter` may answer anything but `keep`, as a current component's
    /// `needs` answered when it was loaded (the built-in policy does not; components of the
    /// earlier worlds do). When it does not, [`Policy::filter`] keeps every candidate without
    /// calling the component.
    pub fn filters(&self) -> bool {
        self.inner.filters.load(Ordering::Relaxed)
    }

    /// Everything the component exports, by name.
    pub fn exports(&self) -> &[String] {
        &self.inner.exports
    }

    /// Everything the component imports, by name.
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> PolicyLimits {
        self.limits
    }

    /// The size of the component, in bytes.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// How long loading took: checking, compiling (or reading the compile cache), linking.
    pub fn load_time(&self) -> Duration {
        self.inner.load_time
    }

    /// Whether the compiled code came from the compile cache.
    pub fn compiled(&self) -> Compiled {
        self.inner.compiled
    }

    /// The most memory (linear memories) one call of this policy has used so far, in bytes;
    /// every call starts from the component's initial memory.
    pub fn peak_memory(&self) -> usize {
        self.inner.peak_memory.load(Ordering::Relaxed)
    }

    /// Starts [`Policy::peak_memory`] over (for measuring one kind of call).
    pub fn reset_peak_memory(&self) {
        self.inner.peak_memory.store(0, Ordering::Relaxed);
    }

    /// Asks the component what it needs, once, in a sandbox of its own as every call gets (a
    /// component of an earlier world is not asked: its world says).
    fn ask_needs(&self) -> Result<world::PolicyNeeds, PolicyError> {
        if let Some(needs) = self.inner.pre.world().needs() {
            return Ok(needs);
        }
        let state = CallState::new(self.inner.name.clone(), self.limits.memory_bytes);
        let mut store = sandbox::store(&self.inner.engine, state, self.deadline_ticks);
        let needs = self
            .inner
            .pre
            .instantiate(&mut store)
            .and_then(|instance| instance.needs(&mut store));
        match needs {
            Ok(needs) => {
                store.data_mut().finish();
                Ok(needs)
            }
            Err(e) => Err(self.failure(&mut store, &e)),
        }
    }

    /// Instantiates the component once in its sandbox, as every call does, and drops the
    /// instance: checks that it starts within its limits.
    pub fn probe(&self) -> Result<(), PolicyError> {
        let state = CallState::new(self.inner.name.clone(), self.limits.memory_bytes);
        let mut store = sandbox::store(&self.inner.engine, state, self.deadline_ticks);
        match self.inner.pre.instantiate(&mut store) {
            Ok(_) => {
                store.data_mut().finish();
                Ok(())
            }
            Err(e) => Err(self.failure(&mut store, &e)),
        }
    }

    /// Filters a batch: one result per candidate, in order. Runs on a blocking thread.
    ///
    /// The policy's CPU time (see [`usage::cpu_seconds`]) is the call's: the conversions and the
    /// component's run, not freeing the caller's documents afterwards.
    pub async fn filter(&self, batch: Vec<Candidate>) -> Vec<Result<Verdict, PolicyError>> {
        self.filter_returning(batch).await.1
    }

    /// [`Policy::filter`], handing the candidates back with the verdicts (none if the call's
    /// thread failed): a caller that keeps the documents does not copy them to ask.
    pub(crate) async fn filter_returning(
        &self,
        batch: Vec<Candidate>,
    ) -> (Vec<Candidate>, Vec<Result<Verdict, PolicyError>>) {
        if !self.filters() {
            // Nothing is asked (see `filter_items`): no blocking thread is needed.
            let verdicts = self.filter_items(&batch);
            return (batch, verdicts);
        }
        let len = batch.len();
        let policy = self.clone();
        tokio::task::spawn_blocking(move || {
            let verdicts = usage::measured(|| policy.filter_items(&batch));
            (batch, verdicts)
        })
        .await
        .unwrap_or_else(|e| (Vec::new(), internal(len, &e)))
    }

    /// Resolves a batch: one result per conflict, in order. Runs on a blocking thread, measured
    /// as [`Policy::filter`] is.
    pub async fn resolve(&self, batch: Vec<Conflict>) -> Vec<Result<Resolution, PolicyError>> {
        let len = batch.len();
        let policy = self.clone();
        tokio::task::spawn_blocking(move || usage::measured(|| policy.resolve_items(&batch)))
            .await
            .unwrap_or_else(|e| internal(len, &e))
    }

    /// [`Policy::filter`] on the current thread, for callers outside an async runtime. Blocks
    /// for up to the time limit per chunk (more when isolating failures).
    pub fn filter_blocking(&self, batch: Vec<Candidate>) -> Vec<Result<Verdict, PolicyError>> {
        self.filter_items(&batch)
    }

    /// [`Policy::resolve`] on the current thread, for callers outside an async runtime. Blocks
    /// for up to the time limit per chunk (more when isolating failures).
    pub fn resolve_blocking(&self, batch: Vec<Conflict>) -> Vec<Result<Resolution, PolicyError>> {
        self.resolve_items(&batch)
    }

    fn filter_items(&self, batch: &[Candidate]) -> Vec<Result<Verdict, PolicyError>> {
        if !self.filters() {
            // The policy said its filter keeps every change: asking would only cost. What could
            // not be sent is still an error of its own.
            return batch
                .iter()
                .map(|c| convert::checked(&c.version.document).map(|_| Verdict::Keep))
                .collect();
        }
        let world = self.inner.pre.world();
        let inputs = batch
            .iter()
            .map(|candidate| {
                if candidate.deleted && world == World::V0_1 {
                    // An older policy is never asked about a delete: it takes part.
                    return Input::Answered(Ok(wit::Verdict::Keep));
                }
                match convert::candidate_to_wit(candidate) {
                    Ok(item) => Input::Send(item),
                    Err(e) => Input::Invalid(e),
                }
            })
            .collect();
        let answers = self.run(inputs, &mut |store, instance, items| {
            instance.filter(store, items)
        });
        batch
            .iter()
            .zip(answers)
            .map(|(candidate, answer)| {
                convert::verdict_from_wit(&self.inner.name, candidate, answer?)
            })
            .collect()
    }

    fn resolve_items(&self, batch: &[Conflict]) -> Vec<Result<Resolution, PolicyError>> {
        let world = self.inner.pre.world();
        let inputs = batch
            .iter()
            .map(|conflict| {
                let one_sided = conflict.elasticsearch.is_none() || conflict.cassandra.is_none();
                if one_sided && world == World::V0_1 {
                    // An older policy is never asked about a delete against a change: the
                    // change wins, as in the default policy.
                    return Input::Answered(Ok(match &conflict.elasticsearch {
                        Some(_) => wit::Resolution::UseElasticsearch,
                        None if conflict.cassandra.is_some() => wit::Resolution::UseCassandra,
                        None => wit::Resolution::Unchanged,
                    }));
                }
                match convert::conflict_to_wit(conflict) {
                    Ok(item) => Input::Send(item),
                    Err(e) => Input::Invalid(e),
                }
            })
            .collect();
        let answers = self.run(inputs, &mut |store, instance, items| {
            instance.resolve(store, items)
        });
        batch
            .iter()
            .zip(answers)
            .map(|(conflict, answer)| {
                convert::resolution_from_wit(&self.inner.name, conflict, answer?)
            })
            .collect()
    }

    /// Calls the policy on the inputs to send, chunk by chunk, isolating failures; the others
    /// keep their answer or error. One result per input, in order.
    fn run<I, A>(
        &self,
        inputs: Vec<Input<I, Result<A, String>>>,
        call: &mut WasmCall<'_, I, A>,
    ) -> Vec<Result<Result<A, String>, PolicyError>> {
        let mut sent = Vec::with_capacity(inputs.len());
        let mut kept = Vec::with_capacity(inputs.len());
        for input in inputs {
            match input {
                Input::Send(item) => {
                    sent.push(item);
                    kept.push(None);
                }
                Input::Answered(answer) => kept.push(Some(Ok(answer))),
                Input::Invalid(e) => kept.push(Some(Err(e))),
            }
        }
        let mut answers = Vec::with_capacity(sent.len());
        for chunk in sent.chunks(self.limits.batch_size) {
            answers.extend(batch::isolate(chunk, &mut |items: &[I]| {
                self.call_once(items, call)
            }));
        }
        let mut answers = answers.into_iter();
        kept.into_iter()
            .map(|kept| match kept {
                Some(result) => result,
                None => answers.next().unwrap_or_else(|| {
                    Err(PolicyError::Internal {
                        reason: "an answer went missing".to_string(),
                    })
                }),
            })
            .collect()
    }

    /// One call in a fresh store and instance.
    fn call_once<I, A>(
        &self,
        items: &[I],
        call: &mut WasmCall<'_, I, A>,
    ) -> Result<Vec<Result<A, String>>, CallFailure> {
        let inner = &*self.inner;
        let state = CallState::new(inner.name.clone(), self.limits.memory_bytes);
        let mut store = sandbox::store(&inner.engine, state, self.deadline_ticks);
        let instance = match inner.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => return Err(CallFailure::Always(self.failure(&mut store, &e))),
        };
        let answers = call(&mut store, &instance, items);
        inner
            .peak_memory
            .fetch_max(store.data().limiter.used(), Ordering::Relaxed);
        match answers {
            Ok(answers) => {
                store.data_mut().finish();
                if answers.len() == items.len() {
                    Ok(answers)
                } else {
                    Err(CallFailure::Batch(PolicyError::WrongLength {
                        name: inner.name.to_string(),
                        expected: items.len(),
                        got: answers.len(),
                    }))
                }
            }
            Err(e) => Err(CallFailure::Batch(self.failure(&mut store, &e))),
        }
    }

    /// Turns a failed call into the error it is: out of memory, timeout or trap.
    fn failure(&self, store: &mut Store<CallState>, error: &wasmtime::Error) -> PolicyError {
        let stderr = store.data_mut().finish();
        let name = self.inner.name.to_string();
        // The error and its wasm backtrace; not the host's stack.
        tracing::debug!(target: "essync::policy", policy = %name, "call failed: {error:#}");
        if store.data().limiter.exceeded {
            return PolicyError::OutOfMemory {
                name,
                limit: self.limits.memory_bytes,
            };
        }
        if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
            return PolicyError::Timeout {
                name,
                limit: self.limits.timeout,
            };
        }
        // A trap (a panic, an exception) only names the instruction that stopped the call: what
        // the policy's language wrote says why, and where. Any other error is the host's reason
        // (a wait on a clock, an exit).
        let reason = match error.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => guest::explain(&stderr).unwrap_or_else(|| trap.to_string()),
            None => error.root_cause().to_string(),
        };
        PolicyError::Trap { name, reason }
    }
}

/// Every item gets the error of a worker that died.
fn internal<T>(len: usize, error: &tokio::task::JoinError) -> Vec<Result<T, PolicyError>> {
    (0..len)
        .map(|_| {
            Err(PolicyError::Internal {
                reason: format!("the policy worker failed: {error}"),
            })
        })
        .collect()
}

/// A core module starts with the wasm magic and version 1; a component has layer 1.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

/// Binary WebAssembly, or plausibly its text format (which wasmtime also compiles).
fn looks_like_wasm(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\0asm")
        || bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'(' || *b == b';')
}

/// An error and its causes on one line (wasmtime's messages may span several).
pub(super) fn one_line(error: &wasmtime::Error) -> String {
    crate::store::one_line(&format!("{error:#}"))
}
