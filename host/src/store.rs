//! What both stores share: sides, stored versions, per-document problems and write outcomes.
//!
//! A store hands out [`Stored`] documents: the [`Document`] plus what the store needs to replace
//! exactly that version later (its *version*: sequence number and primary term in
//! Elasticsearch, the raw column values in Cassandra). Writes are compare-and-set against that
//! version, so a write never replaces a version its writer did not see.

use std::fmt;

use uuid::Uuid;

use crate::Document;
use crate::document::Digest;

/// One of the two stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// The Elasticsearch cluster.
    Elasticsearch,
    /// The Cassandra table.
    Cassandra,
}

impl Side {
    /// The other store.
    pub fn other(self) -> Side {
        match self {
            Side::Elasticsearch => Side::Cassandra,
            Side::Cassandra => Side::Elasticsearch,
        }
    }

    /// A short lowercase name, as used in logs and state tables.
    pub fn name(self) -> &'static str {
        match self {
            Side::Elasticsearch => "elasticsearch",
            Side::Cassandra => "cassandra",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A document as one store holds it, with the version that a later write must match.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<V> {
    /// The document, normalised (timestamp in milliseconds, type defaulted).
    pub document: Document,
    /// Whether the store holds essync's metadata for this document (type and timestamp). A
    /// document written by another program without it gets its timestamp from the time its
    /// write was seen (Cassandra's write time, or when essync read it from Elasticsearch).
    pub stamped: bool,
    /// The fingerprint of exactly what the store holds (its stored type and timestamp, absent
    /// when missing, not the defaults `document` got).
    pub digest: Digest,
    /// Whether `document` is exactly what the store holds, its type and timestamp included (none
    /// was defaulted or replaced), so that `digest` is also `document.digest()`.
    pub exact: bool,
    /// When this version is exactly what essync wrote, unchanged since, what that write
    /// replaced: Elasticsearch's metadata carries the digest of the version essync wrote (it is
    /// this one's) and the version it was written over. Always `None` for Cassandra, whose rows
    /// carry no such mark.
    pub essync_wrote: Option<WrittenOver>,
    /// What the store needs to replace exactly this version.
    pub version: V,
}

/// What a write of essync's replaced, as its mark in Elasticsearch says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrittenOver {
    /// Nothing: the document was created.
    Nothing,
    /// The version at this sequence number and primary term.
    Version {
        /// Its `_seq_no`.
        seq_no: i64,
        /// Its `_primary_term`.
        primary_term: i64,
    },
}

/// A document a store holds but that cannot be synced as it is: its id is not a uuid, its
/// content is not a JSON object, its index is missing, ... Never dropped silently: reported with
/// its reason, and kept where it is for the user to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadDocument {
    /// Where the document is.
    pub side: Side,
    /// Its id, when it is a uuid.
    pub id: Option<Uuid>,
    /// How to find it: `index/_id` in Elasticsearch, the row id in Cassandra.
    pub location: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for BadDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} document {}: {}",
            self.side, self.location, self.reason
        )
    }
}

impl std::error::Error for BadDocument {}

/// Why an item of a store's document stream is not a document.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E: std::error::Error + 'static> {
    /// This document cannot be synced; the stream goes on.
    #[error("{0}")]
    Bad(BadDocument),
    /// The store failed; the stream ends.
    #[error(transparent)]
    Store(E),
}

/// One item read from a store: a document, or a document that cannot be synced.
#[derive(Debug, Clone, PartialEq)]
pub enum Read<V> {
    /// A well-formed document.
    Document(Stored<V>),
    /// A document that cannot be synced, with the reason.
    Bad(BadDocument),
}

impl<V> Read<V> {
    /// The document, or why it cannot be synced: an item of a store's document stream.
    pub fn into_document<E: std::error::Error + 'static>(self) -> Result<Document, ReadError<E>> {
        match self {
            Read::Document(stored) => Ok(stored.document),
            Read::Bad(bad) => Err(ReadError::Bad(bad)),
        }
    }
}

/// What a lookup by id found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<T> {
    /// The id is there (a document, a version, or a document that cannot be synced).
    Found(T),
    /// The id is not there.
    Absent,
    /// The store cannot say (part of it is unavailable); the reason. Never taken for absent.
    Unknown(String),
}

/// Flattens pages of reads into a document stream: each read an item, a failed page the last.
pub(crate) fn documents_of<V, E: std::error::Error + 'static>(
    pages: impl futures::Stream<Item = Result<Vec<Read<V>>, E>>,
) -> impl futures::Stream<Item = Result<Document, ReadError<E>>> {
    use futures::StreamExt;
    pages
        .map(|page| match page {
            Ok(reads) => {
                futures::stream::iter(reads.into_iter().map(Read::into_document)).left_stream()
            }
            Err(e) => futures::stream::once(async move { Err(ReadError::Store(e)) }).right_stream(),
        })
        .flatten()
}

/// A message on one line: drivers, servers and runtimes may break theirs over several, and every
/// line essync logs or prints is one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and its sources on one line ("error sending request: connection refused").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    one_line(&text)
}

/// What happened to one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The document was created.
    Inserted,
    /// The document replaced the version it was meant to replace.
    Replaced,
    /// The document was deleted (it was the version the delete was meant for).
    Deleted,
    /// The store holds a newer version (a later timestamp); it was left as it is.
    NewerAlreadyThere,
    /// The stored version changed since it was read; nothing was written. The change will be
    /// seen and decided on in a later round.
    ChangedUnderneath,
    /// The store refused this document (e.g. a mapping conflict); retrying will not help until
    /// the document or the store changes.
    Rejected(String),
    /// A transient failure for this document (e.g. the store is overloaded); retry later.
    Failed(String),
}

impl WriteOutcome {
    /// Whether the write applied: the store now holds what was written (or nothing, for a
    /// delete).
    pub fn is_written(&self) -> bool {
        matches!(
            self,
            WriteOutcome::Inserted | WriteOutcome::Replaced | WriteOutcome::Deleted
        )
    }
}

/// What happened to one write of a batch, and the version it left in the store when it
/// applied (what a later write must match; `None` when the store does not say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<V> {
    /// What happened.
    pub outcome: WriteOutcome,
    /// The version written, when the write applied and the store reports it.
    pub version: Option<V>,
}

impl<V> Applied<V> {
    /// An outcome with no version.
    pub fn outcome(outcome: WriteOutcome) -> Self {
        Self {
            outcome,
            version: None,
        }
    }
}

/// One page of a change feed: what was read, and the checkpoint that holds once this page and
/// every page before it are applied (persist it then, and a restart resumes after this page).
#[derive(Debug)]
pub struct ChangePage<V, C> {
    /// The documents read.
    pub reads: Vec<Read<V>>,
    /// The checkpoint after this page.
    pub checkpoint: C,
    /// Parts of the feed that could not be read this time (a closed index, an unavailable
    /// shard, a page refused, an index essync does not sync): skipped, their positions kept in
    /// the checkpoint, to be read when they can be.
    pub failed: Vec<FeedFailure>,
}

/// A part of a change feed that could not be read, and why. It fails only itself: the rest of
/// the feed goes on, and its position stays where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedFailure {
    /// What could not be read: `INDEX`, or `INDEX, shard N`.
    pub location: String,
    /// Why.
    pub reason: String,
}

/// How many requests a store sent, by kind: what a sync costs each server, measured where the
/// requests leave (the benchmark divides them by the documents copied; the metrics serve them).
#[derive(Debug, Default)]
pub struct RequestCounts {
    counts: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl RequestCounts {
    /// Counts `n` requests of `kind`.
    pub fn add(&self, kind: &'static str, n: u64) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(kind).or_default() += n;
        }
    }

    /// The counts so far, by kind.
    pub fn snapshot(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// All requests so far.
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}

/// How many requests essync keeps in flight at once to one store, when it has many to send.
pub(crate) const IN_FLIGHT: usize = 64;

/// The one way essync sends many requests at once: at most [`IN_FLIGHT`] in flight; the first
/// failure is the result. The results come in no particular order.
pub(crate) async fn all_of<T, E, F>(requests: impl IntoIterator<Item = F>) -> Result<Vec<T>, E>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    use futures::{StreamExt as _, TryStreamExt as _};
    // Built first, then polled: a stream holding the closure that builds them (over borrowed
    // items) would make the whole future not `Send` for every lifetime.
    let requests: Vec<F> = requests.into_iter().collect();
    futures::stream::iter(requests)
        .buffer_unordered(IN_FLIGHT)
        .try_collect()
        .await
}
