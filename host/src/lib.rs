//! essync keeps the documents of an Elasticsearch cluster and the rows of one Cassandra table in
//! sync, both ways, every period, with the rules for filtering and conflict resolution written
//! as WebAssembly components.
//!
//! How the pieces fit:
//!
//! - [`document`]: the [`Document`] both stores exchange (id, index, type, timestamp, content).
//! - [`store`]: what the two stores share: stored versions, per-document problems
//!   ([`store::BadDocument`]), write outcomes, change-feed pages.
//! - [`elasticsearch`] and [`cassandra`]: one store each, with the seed's API
//!   (`insert_or_replace_document`, `get_documents`), compare-and-set batched writes and a
//!   change feed that does not depend on the documents' own timestamps.
//! - [`policy`]: the WebAssembly runtime that runs a policy component (filtering and conflict
//!   resolution), sandboxed and bounded.
//! - [`sync`]: three-way sync: rounds that read both change feeds, compare each side with the
//!   ledger of what was last synced (so every change, delete included, is credited to the side
//!   that made it), let the policy resolve what both sides changed, apply the decisions and
//!   advance checkpoints kept in Cassandra.
//!
//! What holds throughout: no application write is reverted (a change on one side only is taken
//! whatever its timestamp); a write never replaces a version its writer did not read (a stale
//! version never overwrites a newer one, whoever wrote it); a checkpoint moves only past applied
//! work, and the ledger never runs ahead of the stores; a document that cannot be synced is
//! reported with its reason and kept for retry, never dropped; nothing panics on what a server,
//! a policy or a user sends.

#![deny(missing_docs)]

pub mod cassandra;
pub mod document;
pub mod elasticsearch;
pub mod policy;
pub mod store;
pub mod sync;
#[cfg(test)]
mod testing;

pub use document::Document;
