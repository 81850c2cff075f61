//! The policy runtime: runs the WebAssembly component that filters documents and resolves
//! conflicts.
//!
//! A policy is a component of the `essync:policy` world (`wit/policy.wit`): it exports
//! `essync:policy/filter` and `essync:policy/resolver`, each a batch call (a list in, a list of
//! the same length out). [`Policy`] loads one and calls it:
//!
//! - **Load once.** [`Policy::builtin`] (the default last-write-wins policy, embedded in the
//!   binary), [`Policy::from_file`] and [`Policy::from_bytes`] compile the component once
//!   (wasmtime `Engine`, `Component`, `InstancePre`) after checking that it exports the policy
//!   world at a compatible version: a component of another world is refused with a message
//!   naming the missing export. A [`Policy`] is cheap to clone and shared across tasks.
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
mod convert;
mod error;
mod sandbox;
#[cfg(test)]
mod tests;
pub mod usage;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;
use wasmtime::component::Component;
use wasmtime::{Engine, Store};

pub use error::PolicyError;

use batch::CallFailure;
use sandbox::CallState;

/// Host bindings of the `essync:policy` world, generated from `wit/`.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "essync:policy/policy",
    });
}

use bindings::essync::policy::types as wit;

/// The WIT package a policy implements.
pub const WORLD_PACKAGE: &str = "essync:policy";
/// The world a policy is a component of.
pub const WORLD: &str = "policy";
/// The version of the `essync:policy` package this essync runs.
pub const WORLD_VERSION: &str = "0.1.0";

/// The interfaces a policy exports, without their version.
const EXPORTS: [&str; 2] = ["essync:policy/filter", "essync:policy/resolver"];

/// The default policy (last-write-wins), compiled from `policies/` for `wasm32-wasip2`.
static BUILTIN: &[u8] = include_bytes!(env!("ESSYNC_BUILTIN_POLICY"));

/// The name of the built-in policy.
pub const BUILTIN_NAME: &str = "last-write-wins";

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

/// A document about to take part in the sync, with the store it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Where the document was read.
    pub side: Side,
    /// The document; its timestamp must be set.
    pub document: crate::Document,
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

/// Both versions of one id, either possibly absent.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The id both versions share.
    pub id: Uuid,
    /// The Elasticsearch version; its timestamp must be set.
    pub elasticsearch: Option<crate::Document>,
    /// The Cassandra version; its timestamp must be set.
    pub cassandra: Option<crate::Document>,
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
}

/// One export's call on a batch, in a given store and instance.
type WasmCall<'a, I, A> = dyn FnMut(
        &mut Store<CallState>,
        &bindings::Policy,
        &[I],
    ) -> wasmtime::Result<Vec<Result<A, String>>>
    + 'a;

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
    pre: bindings::PolicyPre<CallState>,
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

    /// Loads a policy component from its bytes (binary, or the WebAssembly text format).
    pub fn from_bytes(
        name: &str,
        bytes: &[u8],
        limits: PolicyLimits,
    ) -> Result<Policy, PolicyError> {
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
        let engine = sandbox::engine()?;
        let component = Component::new(&engine, bytes).map_err(|e| PolicyError::Invalid {
            name: name.to_string(),
            reason: one_line(&e),
        })?;
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(&engine).map(|(n, _)| n.to_string()).collect();
        let imports: Vec<String> = ty.imports(&engine).map(|(n, _)| n.to_string()).collect();
        let version = check_exports(name, &exports)?;
        let linker = sandbox::linker(&engine)?;
        let instance_pre =
            linker
                .instantiate_pre(&component)
                .map_err(|e| PolicyError::UnsupportedImport {
                    name: name.to_string(),
                    reason: one_line(&e),
                })?;
        let pre = bindings::PolicyPre::new(instance_pre).map_err(|e| PolicyError::WrongWorld {
            name: name.to_string(),
            expected: WORLD_VERSION.to_string(),
            reason: one_line(&e),
        })?;
        sandbox::start_ticker(&engine)?;
        tracing::debug!(policy = name, version, "policy loaded");
        let inner = Arc::new(Inner {
            name: Arc::from(name),
            version,
            exports,
            imports,
            engine,
            pre,
        });
        Ok(Policy::limited(inner, limits))
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

    /// The version of the `essync:policy` world the component exports (e.g. `0.1.0`).
    pub fn world_version(&self) -> &str {
        &self.inner.version
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
    pub async fn filter(&self, batch: Vec<Candidate>) -> Vec<Result<Verdict, PolicyError>> {
        let len = batch.len();
        let policy = self.clone();
        tokio::task::spawn_blocking(move || usage::measured(|| policy.filter_blocking(batch)))
            .await
            .unwrap_or_else(|e| internal(len, &e))
    }

    /// Resolves a batch: one result per conflict, in order. Runs on a blocking thread.
    pub async fn resolve(&self, batch: Vec<Conflict>) -> Vec<Result<Resolution, PolicyError>> {
        let len = batch.len();
        let policy = self.clone();
        tokio::task::spawn_blocking(move || usage::measured(|| policy.resolve_blocking(batch)))
            .await
            .unwrap_or_else(|e| internal(len, &e))
    }

    /// [`Policy::filter`] on the current thread, for callers outside an async runtime. Blocks
    /// for up to the time limit per chunk (more when isolating failures).
    pub fn filter_blocking(&self, batch: Vec<Candidate>) -> Vec<Result<Verdict, PolicyError>> {
        let inputs: Vec<Result<wit::Candidate, PolicyError>> =
            batch.iter().map(convert::candidate_to_wit).collect();
        let answers = self.run(inputs, &mut |store, instance, items| {
            instance.essync_policy_filter().call_filter(store, items)
        });
        batch
            .into_iter()
            .zip(answers)
            .map(|(candidate, answer)| {
                convert::verdict_from_wit(&self.inner.name, &candidate, answer?)
            })
            .collect()
    }

    /// [`Policy::resolve`] on the current thread, for callers outside an async runtime. Blocks
    /// for up to the time limit per chunk (more when isolating failures).
    pub fn resolve_blocking(&self, batch: Vec<Conflict>) -> Vec<Result<Resolution, PolicyError>> {
        let inputs: Vec<Result<wit::Conflict, PolicyError>> =
            batch.iter().map(convert::conflict_to_wit).collect();
        let answers = self.run(inputs, &mut |store, instance, items| {
            instance.essync_policy_resolver().call_resolve(store, items)
        });
        batch
            .into_iter()
            .zip(answers)
            .map(|(conflict, answer)| {
                convert::resolution_from_wit(&self.inner.name, &conflict, answer?)
            })
            .collect()
    }

    /// Calls the policy on the valid inputs, chunk by chunk, isolating failures; invalid
    /// inputs keep their error. One result per input, in order.
    fn run<I, A>(
        &self,
        inputs: Vec<Result<I, PolicyError>>,
        call: &mut WasmCall<'_, I, A>,
    ) -> Vec<Result<Result<A, String>, PolicyError>> {
        let mut invalid = Vec::with_capacity(inputs.len());
        let mut valid = Vec::with_capacity(inputs.len());
        for input in inputs {
            match input {
                Ok(item) => {
                    valid.push(item);
                    invalid.push(None);
                }
                Err(e) => invalid.push(Some(e)),
            }
        }
        let mut answers = Vec::with_capacity(valid.len());
        for chunk in valid.chunks(self.limits.batch_size) {
            answers.extend(batch::isolate(chunk, &mut |items: &[I]| {
                self.call_once(items, call)
            }));
        }
        let mut answers = answers.into_iter();
        invalid
            .into_iter()
            .map(|error| match error {
                Some(e) => Err(e),
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
        match call(&mut store, &instance, items) {
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
        tracing::debug!(target: "essync::policy", policy = %name, "call failed: {error:?}");
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
        let mut reason = match error.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => format!("wasm trap: {trap}"),
            None => error.root_cause().to_string(),
        };
        if let Some(stderr) = stderr {
            reason.push_str(&format!(" (stderr: {stderr})"));
        }
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
fn one_line(error: &wasmtime::Error) -> String {
    let text = format!("{error:#}");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks that the component exports the policy interfaces at a compatible version, and
/// returns that version.
fn check_exports(name: &str, exports: &[String]) -> Result<String, PolicyError> {
    let mut version = None;
    for wanted in EXPORTS {
        let found = exports.iter().find(|export| {
            export.as_str() == wanted
                || export
                    .strip_prefix(wanted)
                    .is_some_and(|rest| rest.starts_with('@'))
        });
        let Some(found) = found else {
            return Err(PolicyError::MissingExport {
                name: name.to_string(),
                missing: format!("{wanted}@{WORLD_VERSION}"),
                expected: WORLD_VERSION.to_string(),
                found: if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                },
            });
        };
        let found_version = found.split_once('@').map(|(_, v)| v).unwrap_or("");
        if !compatible(found_version, WORLD_VERSION) {
            return Err(PolicyError::IncompatibleVersion {
                name: name.to_string(),
                export: found.clone(),
                expected: WORLD_VERSION.to_string(),
            });
        }
        version.get_or_insert_with(|| found_version.to_string());
    }
    Ok(version.unwrap_or_default())
}

/// Semantic-versioning compatibility as the component model applies it: the same major
/// version, and for 0.x the same minor version.
fn compatible(found: &str, expected: &str) -> bool {
    fn parts(v: &str) -> Option<(u64, u64)> {
        let core = v.split(['-', '+']).next()?;
        let mut numbers = core.split('.');
        let major = numbers.next()?.parse().ok()?;
        let minor = numbers.next()?.parse().ok()?;
        numbers.next()?.parse::<u64>().ok()?;
        Some((major, minor))
    }
    match (parts(found), parts(expected)) {
        (Some((0, found_minor)), Some((0, expected_minor))) => found_minor == expected_minor,
        (Some((found_major, _)), Some((expected_major, _))) => found_major == expected_major,
        _ => false,
    }
}
