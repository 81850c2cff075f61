//! What can go wrong with a policy: at load time (the component is refused) and per item (the
//! documents concerned are left as they are on both sides and asked about again later).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// An error of the policy runtime.
///
/// Load errors ([`Read`](Self::Read) to [`Engine`](Self::Engine)) refuse a component. The others
/// are per item: each document or conflict that a failure concerns gets its own copy, so the
/// type is `Clone`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    /// The component file cannot be read.
    #[error("cannot read the policy {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },

    /// The bytes are a core WebAssembly module; a policy must be a component.
    #[error(
        "{name} is a core WebAssembly module, not a component: build it for wasm32-wasip2 (or \
         turn the module into a component with `wasm-tools component new`)"
    )]
    NotAComponent {
        /// The policy's name.
        name: String,
    },

    /// The bytes are not a valid WebAssembly component.
    #[error("{name} is not a valid WebAssembly component: {reason}")]
    Invalid {
        /// The policy's name.
        name: String,
        /// What the validator or compiler said.
        reason: String,
    },

    /// The component does not export the policy world's interfaces.
    #[error(
        "{name} is not an essync policy: it does not export {missing} (a policy exports \
         essync:policy/filter@{expected} and essync:policy/resolver@{expected}; the component \
         exports {found})"
    )]
    MissingExport {
        /// The policy's name.
        name: String,
        /// The missing export, with the version essync expects.
        missing: String,
        /// The version of the world essync implements.
        expected: String,
        /// What the component exports instead.
        found: String,
    },

    /// The component exports the policy interfaces at a version this essync does not speak.
    #[error(
        "{name} exports {export}, but this essync runs policies of essync:policy@{expected} \
         and 0.1.0 (compatible versions: same major version, and same minor version for 0.x): \
         rebuild the policy against essync:policy@{expected}"
    )]
    IncompatibleVersion {
        /// The policy's name.
        name: String,
        /// The export found, with its version.
        export: String,
        /// The version of the world essync implements.
        expected: String,
    },

    /// The component's exports have the right names but not the policy world's types.
    #[error("{name} does not match the essync:policy@{expected} world: {reason}")]
    WrongWorld {
        /// The policy's name.
        name: String,
        /// The version of the world essync implements.
        expected: String,
        /// What does not match.
        reason: String,
    },

    /// The component imports something a policy is not given (a policy gets `log` and the
    /// WASI interfaces, with no file system, network or environment behind them).
    #[error("{name} imports what a policy cannot have: {reason}")]
    UnsupportedImport {
        /// The policy's name.
        name: String,
        /// What the linker said.
        reason: String,
    },

    /// The WebAssembly engine cannot be set up.
    #[error("cannot set up the WebAssembly engine: {reason}")]
    Engine {
        /// Why.
        reason: String,
    },

    /// The input cannot be given to the policy (e.g. a document without a timestamp, or whose
    /// id is not the conflict's id): a bug of the caller, reported per item.
    #[error("invalid policy input: {reason}")]
    InvalidInput {
        /// What is wrong.
        reason: String,
    },

    /// The policy ran past its time limit and was stopped.
    #[error("the policy {name} ran past its time limit of {limit:?} and was stopped")]
    Timeout {
        /// The policy's name.
        name: String,
        /// The limit per call.
        limit: Duration,
    },

    /// The policy tried to use more memory than allowed and was stopped.
    #[error("the policy {name} tried to use more than {limit} bytes of memory and was stopped")]
    OutOfMemory {
        /// The policy's name.
        name: String,
        /// The limit per call, in bytes.
        limit: usize,
    },

    /// The policy trapped (a panic, an invalid operation) or could not be instantiated.
    #[error("the policy {name} failed: {reason}")]
    Trap {
        /// The policy's name.
        name: String,
        /// The trap, and the last lines the policy wrote to stderr, if any.
        reason: String,
    },

    /// The policy answered a batch with the wrong number of items.
    #[error("the policy {name} answered {got} items for a batch of {expected}")]
    WrongLength {
        /// The policy's name.
        name: String,
        /// Items in the batch.
        expected: usize,
        /// Items in the answer.
        got: usize,
    },

    /// The policy's answer for this item cannot be applied (a document whose content is not a
    /// JSON object, whose id is not the item's id, ...).
    #[error("the policy {name} gave a malformed answer: {reason}")]
    Malformed {
        /// The policy's name.
        name: String,
        /// What is wrong with the answer.
        reason: String,
    },

    /// The policy refused to decide on this item, with its reason.
    #[error("the policy {name} refused: {reason}")]
    Refused {
        /// The policy's name.
        name: String,
        /// The policy's reason.
        reason: String,
    },

    /// The runtime itself failed (a worker thread died): report it as a bug.
    #[error("the policy runtime failed: {reason}")]
    Internal {
        /// What happened.
        reason: String,
    },
}

impl PolicyError {
    /// Whether this error concerns a whole call (the batch it was part of failed), rather than
    /// the item's own answer. Such failures are what the runtime bisects.
    pub fn is_call_failure(&self) -> bool {
        matches!(
            self,
            PolicyError::Timeout { .. }
                | PolicyError::OutOfMemory { .. }
                | PolicyError::Trap { .. }
                | PolicyError::WrongLength { .. }
        )
    }
}
