//! essync keeps the documents of an Elasticsearch cluster and the rows of one Cassandra table in
//! sync, both ways, every period, with the rules for filtering and conflict resolution written
//! as WebAssembly components.
//!
//! How the pieces fit:
//!
//! - [`document`]: the [`Document`] both stores exchange (id, index, type, timestamp, content).
//! - [`elasticsearch`] and [`cassandra`]: one store each, with the seed's API
//!   (`insert_or_replace_document`, `get_documents`), race-safe batched writes and a change feed.
//! - [`policy`]: the WebAssembly runtime that runs a policy component (filtering and conflict
//!   resolution), sandboxed and bounded.
//! - [`sync`]: rounds that read both change feeds, let the policy decide, apply the decisions and
//!   advance checkpoints kept in Cassandra.

pub mod cassandra;
pub mod document;
pub mod elasticsearch;
pub mod policy;
pub mod store;
pub mod sync;

pub use document::Document;
