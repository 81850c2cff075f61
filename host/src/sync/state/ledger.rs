//! The ledger: for every synced id, what identifies the version both stores held after essync
//! last brought them together (the common ancestor of three-way sync), kept in Cassandra beside
//! the synced table (`KEYSPACE.essync_synced_TABLE`, one row per id).
//!
//! A round compares each store's version of an id with the ledger's: equal is unchanged, a
//! different version changed, an absent one was deleted. So a change is credited to the side
//! that made it, whatever the timestamps say, and deletes can be told from creations. A row
//! holds what identifies the synced version, not the version itself:
//!
//! - its digest ([`Digest`]), which recognises it on each side, and its index, type and
//!   timestamp (what a policy sees of the base, and where a lookup expects the id);
//! - what essync's own writes left: Elasticsearch's `_seq_no` and `_primary_term`, Cassandra's
//!   write time. A version read back with these is essync's own write, recognised without
//!   reading the other side;
//! - the synced content itself (`base`, compressed) only when the policy merges from it (it
//!   says so; see [`crate::policy::Policy::wants_base_content`]). The content is stored with the
//!   digest it belongs to, so a content written under another policy is never taken for the
//!   current version's.
//!
//! The partition key is the document's id, so the ledger sorts in the same token order as the
//! synced table, and the write-time sweep reads both side by side: an id in the ledger but no
//! longer in the table was deleted there.
//!
//! Writes are recorded ahead and confirmed after, so that a crash at any point leaves a ledger
//! that errs towards "examined again", never towards a change credited to the wrong side:
//!
//! - before a page's writes, an *intent* per id written over a version the ledger or a side
//!   holds: the digest of the version being written and the digests each side held when the
//!   decision was taken (small cells, in unlogged batches);
//! - after them, for the ids whose writes all applied, the synced version (the intent cleared);
//!   for the others the intent stays: it still tells essync's write on one side from an
//!   application's change made meanwhile (the reason the other side's write did not apply), so
//!   the id is decided again with each change credited to its maker.
//!
//! An intent found later (essync stopped between the two) says which versions are the
//! decision's own: a side that still holds what it held then, or holds what was being written,
//! has not changed since; anything else on a side is a change made after the decision (a delete
//! included). See [`crate::sync`]'s attribution.
//!
//! Without a ledger entry (first contact, a dropped ledger) an id absent on one side is new,
//! never deleted: losing the ledger costs work, never data.
//!
//! Earlier versions kept the whole synced document of every id, in `essync_ledger_TABLE` (and
//! before that in one `essync_ledger` for every sync of the keyspace); their entries are copied
//! once into this ledger at the first start (see [`legacy`]).

mod legacy;

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlTimestamp, MaybeUnset};
use uuid::Uuid;

use super::lease::WriteFence;
use crate::cassandra::cql::Cql;
use crate::cassandra::{CassandraError, create_table};
use crate::document::{DEFAULT_TYPE, Digest};
use crate::elasticsearch::EsVersion;

pub use legacy::LEGACY_LEDGER_TABLE;

/// The prefix of a sync's ledger table: `essync_synced_TABLE`.
pub const LEDGER_PREFIX: &str = "essync_synced_";

/// Cassandra's longest table name.
const MAX_TABLE_NAME: usize = 48;

/// The id of the row that marks a ledger as copied from an earlier version's (no document has
/// the nil uuid as its id: it is not a v4 uuid, and essync refuses to sync it).
const COPIED_MARK: Uuid = Uuid::nil();

/// Ids per `IN` read of the ledger: the same as every read of rows by id.
pub(crate) const IDS_PER_READ: usize = crate::cassandra::IDS_PER_READ;
/// Rows of the ledger per unlogged batch (intents, entries without content, refreshes, forgotten
/// ids): within Cassandra's default warning thresholds (a batch over more
/// than 10 partitions, or over 5 KiB, is logged as a warning on the server every time).
const ROWS_PER_BATCH: usize = 10;

/// The ledger table of a sync: `PREFIX` and the table's name, or, when that is longer than
/// Cassandra allows, the table's name cut short with a hash of the whole name. One table per
/// sync keeps the sweep's token-order reads to this sync's entries, however many syncs share
/// the keyspace.
pub fn table_name(sync: &str) -> String {
    named(LEDGER_PREFIX, sync)
}

fn named(prefix: &str, sync: &str) -> String {
    let name = format!("{prefix}{}", sync.to_lowercase());
    if name.len() <= MAX_TABLE_NAME {
        return name;
    }
    // FNV-1a: stable across versions and machines, which the table's name must be.
    let hash = sync.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let suffix = format!("_{:08x}", hash as u32);
    let mut cut = MAX_TABLE_NAME - suffix.len();
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &name[..cut])
}

/// What the ledger holds for one id (without the synced content, read only when needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The id.
    pub id: Uuid,
    /// The version both sides held after essync last synced them, if it ever did.
    pub base: Option<Synced>,
    /// A write essync decided and had not confirmed when it stopped.
    pub intent: Option<Intent>,
}

impl LedgerEntry {
    /// The synced version, when no write of the id is under way.
    pub fn confirmed(&self) -> Option<&Synced> {
        self.base.as_ref().filter(|_| self.intent.is_none())
    }

    /// Whether a Cassandra row with this write time is still the one essync last wrote or saw
    /// synced.
    pub fn holds_cassandra_write(&self, written_at: Option<i64>) -> bool {
        self.confirmed().is_some_and(|base| {
            base.cassandra_written_at.is_some() && base.cassandra_written_at == written_at
        })
    }
}

/// What identifies the version both sides held after a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// Its digest.
    pub digest: Digest,
    /// Its timestamp (ms since the epoch).
    pub timestamp: i64,
    /// Its index.
    pub index: String,
    /// Its type.
    pub doc_type: String,
    /// The Elasticsearch version that holds it, as essync last saw or wrote it.
    pub elasticsearch: Option<EsVersion>,
    /// The write time of the Cassandra row that holds it (µs), when known.
    pub cassandra_written_at: Option<i64>,
}

/// A write under way: what was being written, and what each side held when it was decided
/// (`None`: the side had no version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intent {
    /// The digest of the version being written.
    pub target: Digest,
    /// The digest of the Elasticsearch version the decision saw.
    pub elasticsearch: Option<Digest>,
    /// The digest of the Cassandra version the decision saw.
    pub cassandra: Option<Digest>,
}

/// What the ledger records of a synced version: what identifies it, and its content when the
/// ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedVersion {
    /// Its digest.
    pub digest: Digest,
    /// Its index.
    pub index: String,
    /// Its type.
    pub doc_type: String,
    /// Its timestamp (ms since the epoch).
    pub timestamp: Option<i64>,
    /// Its content's JSON text, when the ledger keeps it (the policy merges from it).
    pub content: Option<String>,
}

impl SyncedVersion {
    /// The version `document` is (its digest `digest`), with its content when `keep_content`.
    pub fn of(document: &crate::Document, digest: Digest, keep_content: bool) -> Self {
        Self {
            digest,
            index: document.index.clone(),
            doc_type: document.doc_type.clone(),
            timestamp: document.timestamp_millis(),
            content: keep_content.then(|| document.content_text().to_string()),
        }
    }
}

/// One entry to record: the synced version and where the stores hold it.
#[derive(Debug, Clone)]
pub struct Record {
    /// The id.
    pub id: Uuid,
    /// The synced version.
    pub version: SyncedVersion,
    /// The Elasticsearch version holding it.
    pub elasticsearch: Option<EsVersion>,
    /// The write time of the Cassandra row holding it.
    pub cassandra_written_at: Option<i64>,
    /// Whether an intent was recorded for this write (it is cleared with the record).
    pub clears_intent: bool,
}

/// The ledger of one sync.
pub(crate) struct Ledger {
    cql: Cql,
    table: String,
    /// Whether the synced content is kept (the policy merges from it).
    pub(super) keep_content: bool,
    lookup: PreparedStatement,
    base: PreparedStatement,
    range: PreparedStatement,
    record: PreparedStatement,
    refresh: PreparedStatement,
    forget: PreparedStatement,
    intend: PreparedStatement,
    /// The write times of the ledger's writes, under a lease (see [`super::lease`]); without
    /// one, Cassandra's.
    fence: Option<Arc<WriteFence>>,
}

type EntryRow = (
    Uuid,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

const ENTRY_COLUMNS: &str = "id, digest, index_, type, timestamp, es_seq_no, es_primary_term, \
     cassandra_written_at, pending, seen_es, seen_cassandra";

impl Ledger {
    /// Creates the sync's ledger table when missing (copying the entries of an earlier
    /// version's ledger once) and prepares its statements. Returns whether the ledger is new
    /// (it knows nothing yet).
    pub async fn open(
        cql: &Cql,
        keyspace: &str,
        sync: &str,
        keep_content: bool,
    ) -> Result<(Self, bool), CassandraError> {
        let name = table_name(sync);
        let existed = legacy::table_exists(cql, keyspace, &name).await?;
        let table = format!("{keyspace}.{name}");
        cql.change_schema(
            create_table(
                keyspace,
                &name,
                "id uuid PRIMARY KEY, digest blob, index_ text, type text, timestamp timestamp, \
                 es_seq_no bigint, es_primary_term bigint, cassandra_written_at bigint, \
                 pending blob, seen_es blob, seen_cassandra blob, base blob",
            ),
            &format!("to create {table}"),
        )
        .await?;
        let ledger = Self::prepare(cql, table, keep_content).await?;
        let copied = existed && ledger.copy_marked().await?;
        let mut new = !existed;
        if !copied {
            let count = legacy::copy(&ledger, keyspace, sync).await?;
            new = new && count == 0;
        }
        Ok((ledger, new))
    }

    /// Prepares the statements of the ledger `table` (`keyspace.name`).
    async fn prepare(cql: &Cql, table: String, keep_content: bool) -> Result<Self, CassandraError> {
        let action = format!("to prepare the statements of {table}");
        let prepare = |kind: &'static str, statement: String| {
            let action = &action;
            async move { cql.prepare(kind, statement, action).await }
        };
        let mut range = prepare(
            "ledger_range",
            format!(
                "SELECT token(id), {ENTRY_COLUMNS} FROM {table} \
                 WHERE token(id) >= ? AND token(id) <= ?"
            ),
        )
        .await?;
        range.set_page_size(5000);
        Ok(Self {
            lookup: prepare(
                "ledger_read",
                format!("SELECT {ENTRY_COLUMNS} FROM {table} WHERE id IN ?"),
            )
            .await?,
            base: prepare(
                "ledger_base",
                format!("SELECT id, base FROM {table} WHERE id IN ?"),
            )
            .await?,
            range,
            record: prepare(
                "ledger_write",
                format!(
                    "INSERT INTO {table} (id, digest, index_, type, timestamp, es_seq_no, \
                     es_primary_term, cassandra_written_at, pending, seen_es, seen_cassandra, \
                     base) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
            )
            .await?,
            intend: prepare(
                "intent",
                format!(
                    "UPDATE {table} SET pending = ?, seen_es = ?, seen_cassandra = ? WHERE id = ?"
                ),
            )
            .await?,
            refresh: prepare(
                "ledger_write",
                format!(
                    "UPDATE {table} SET es_seq_no = ?, es_primary_term = ?, \
                     cassandra_written_at = ? WHERE id = ?"
                ),
            )
            .await?,
            forget: prepare("ledger_forget", format!("DELETE FROM {table} WHERE id = ?")).await?,
            cql: cql.clone(),
            table,
            keep_content,
            fence: None,
        })
    }

    /// Gives the ledger's writes the write times of `fence` from now on.
    pub fn fence_with(&mut self, fence: Arc<WriteFence>) {
        self.fence = Some(fence);
    }

    /// The write time of the next write, under a lease.
    fn stamp(&self) -> Option<i64> {
        self.fence.as_ref().map(|fence| fence.stamp())
    }

    /// The entries of the ids that have one.
    pub async fn get(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, LedgerEntry>, CassandraError> {
        let action = format!("to read {}", self.table);
        let pages = crate::store::all_of(ids.chunks(IDS_PER_READ).map(|chunk| {
            let action = &action;
            async move {
                let rows = self
                    .cql
                    .execute(&self.lookup, (chunk,), action)
                    .await?
                    .into_rows_result()
                    .map_err(|e| CassandraError::protocol(action, e))?;
                rows.rows::<EntryRow>()
                    .map_err(|e| CassandraError::protocol(action, e))?
                    .map(|row| {
                        row.map(entry_of)
                            .map_err(|e| CassandraError::protocol(action, e))
                    })
                    .collect::<Result<Vec<_>, _>>()
            }
        }))
        .await?;
        Ok(pages
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| (entry.id, entry))
            .collect())
    }

    /// The synced content (the base's) of the ids whose entry keeps it for `digest`: what a
    /// merging policy sees of the base. Empty when the policy does not merge.
    pub async fn base(
        &self,
        ids: &[(Uuid, Digest)],
    ) -> Result<HashMap<Uuid, serde_json::Value>, CassandraError> {
        if !self.keep_content || ids.is_empty() {
            return Ok(HashMap::new());
        }
        let action = format!("to read the synced versions in {}", self.table);
        let wanted: HashMap<Uuid, Digest> = ids.iter().copied().collect();
        let keys: Vec<Uuid> = wanted.keys().copied().collect();
        let pages = crate::store::all_of(keys.chunks(IDS_PER_READ).map(|chunk| {
            let action = &action;
            async move {
                let rows = self
                    .cql
                    .execute(&self.base, (chunk,), action)
                    .await?
                    .into_rows_result()
                    .map_err(|e| CassandraError::protocol(action, e))?;
                rows.rows::<(Uuid, Option<Vec<u8>>)>()
                    .map_err(|e| CassandraError::protocol(action, e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| CassandraError::protocol(action, e))
            }
        }))
        .await?;
        Ok(pages
            .into_iter()
            .flatten()
            .filter_map(|(id, blob)| {
                let content = unpack_content(&blob?, *wanted.get(&id)?)?;
                Some((id, content))
            })
            .collect())
    }

    /// The entries whose id's token is in `[from, to]`, in token order, with their tokens.
    pub async fn range(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, LedgerEntry)>, CassandraError> {
        let action = format!("to read {}", self.table);
        if from > to {
            return Ok(Vec::new());
        }
        let pager = self
            .cql
            .iter(self.range.clone(), (from, to), &action)
            .await?;
        type RangeRow = (
            i64,
            Uuid,
            Option<Vec<u8>>,
            Option<String>,
            Option<String>,
            Option<CqlTimestamp>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
        );
        let mut rows = pager
            .rows_stream::<RangeRow>()
            .map_err(|e| CassandraError::protocol(&action, e))?;
        let mut entries = Vec::new();
        while let Some(row) = rows.next().await {
            let (token, id, digest, index, doc_type, timestamp, seq_no, term, written_at, a, b, c) =
                row.map_err(|e| CassandraError::protocol(&action, e))?;
            let row = (
                id, digest, index, doc_type, timestamp, seq_no, term, written_at, a, b, c,
            );
            if let Some(entry) = entry_of(row) {
                entries.push((token, entry));
            }
        }
        Ok(entries)
    }

    /// Records synced versions (clearing their intents).
    pub async fn record(&self, records: &[Record]) -> Result<(), CassandraError> {
        let action = format!("to write {}", self.table);
        let cleared = |clears: bool| {
            if clears {
                MaybeUnset::Set(Vec::<u8>::new())
            } else {
                MaybeUnset::Unset
            }
        };
        let values = records.iter().map(|record| {
            let version = &record.version;
            let base = match &version.content {
                Some(content) if self.keep_content => {
                    MaybeUnset::Set(pack_content(version.digest, content))
                }
                _ => MaybeUnset::Unset,
            };
            (
                record.id,
                version.digest.0.to_vec(),
                &version.index,
                &version.doc_type,
                version.timestamp.map(CqlTimestamp),
                record.elasticsearch.as_ref().map(|v| v.seq_no),
                record.elasticsearch.as_ref().map(|v| v.primary_term),
                record.cassandra_written_at,
                // No digest is an empty blob, not a null: a null is a tombstone, which every
                // later read of the entry would have to step over.
                cleared(record.clears_intent),
                cleared(record.clears_intent),
                cleared(record.clears_intent),
                base,
            )
        });
        // Entries without content are small: they go in batches. A content may be large (a
        // batch over Cassandra's size threshold fails), so each entry holding one goes alone.
        let (alone, small): (Vec<_>, Vec<_>) =
            values.partition(|v| matches!(v.11, MaybeUnset::Set(_)));
        let singles = crate::store::all_of(alone.into_iter().map(|values| {
            let action = &action;
            let mut statement = self.record.clone();
            statement.set_timestamp(self.stamp());
            async move { self.cql.execute(&statement, values, action).await }
        }));
        let batched = self.in_batches("ledger_write", &self.record, small, &action);
        let (a, b) = tokio::join!(singles, batched);
        a.and(b).map(drop)
    }

    /// Runs `statement` once per values, in unlogged batches of [`ROWS_PER_BATCH`] (one request
    /// each, counted as `kind`), all at once.
    async fn in_batches<V: scylla::serialize::row::SerializeRow>(
        &self,
        kind: &'static str,
        statement: &PreparedStatement,
        values: Vec<V>,
        action: &str,
    ) -> Result<(), CassandraError> {
        let mut values = values.into_iter().peekable();
        let mut batches = Vec::new();
        while values.peek().is_some() {
            let chunk: Vec<V> = values.by_ref().take(ROWS_PER_BATCH).collect();
            let mut batch = Batch::new(BatchType::Unlogged);
            batch.set_timestamp(self.stamp());
            for _ in &chunk {
                batch.append_statement(statement.clone());
            }
            batches.push((batch, chunk));
        }
        crate::store::all_of(
            batches
                .into_iter()
                .map(|(batch, chunk)| self.cql.batch(kind, batch, chunk, action)),
        )
        .await
        .map(drop)
    }

    /// Records writes about to be made: unlogged batches of small cells.
    pub async fn intend(&self, intents: &[(Uuid, Intent)]) -> Result<(), CassandraError> {
        let action = format!("to write {}", self.table);
        let bytes = |d: Option<Digest>| d.map(|d| d.0.to_vec()).unwrap_or_default();
        let values = intents
            .iter()
            .map(|(id, intent)| {
                (
                    intent.target.0.to_vec(),
                    bytes(intent.elasticsearch),
                    bytes(intent.cassandra),
                    *id,
                )
            })
            .collect();
        self.in_batches("intent", &self.intend, values, &action)
            .await
    }

    /// Updates where the stores hold an entry's version (its content unchanged).
    pub async fn refresh(&self, entries: &[(Uuid, Synced)]) -> Result<(), CassandraError> {
        let action = format!("to write {}", self.table);
        let values = entries
            .iter()
            .map(|(id, synced)| {
                (
                    synced.elasticsearch.as_ref().map(|v| v.seq_no),
                    synced.elasticsearch.as_ref().map(|v| v.primary_term),
                    synced.cassandra_written_at,
                    *id,
                )
            })
            .collect();
        self.in_batches("ledger_write", &self.refresh, values, &action)
            .await
    }

    /// Forgets ids: neither store holds them any more.
    pub async fn forget(&self, ids: &[Uuid]) -> Result<(), CassandraError> {
        let action = format!("to write {}", self.table);
        let values = ids.iter().map(|id| (*id,)).collect();
        self.in_batches("ledger_forget", &self.forget, values, &action)
            .await
    }

    /// Whether this ledger holds the mark of a finished copy from an earlier version's (a row
    /// that holds no entry, so [`Ledger::get`] and [`Ledger::range`] never return it).
    async fn copy_marked(&self) -> Result<bool, CassandraError> {
        let action = format!("to read {}", self.table);
        let rows = self
            .cql
            .query(
                "ledger_read",
                format!("SELECT id FROM {} WHERE id = ?", self.table),
                (COPIED_MARK,),
                &action,
            )
            .await?
            .into_rows_result()
            .map_err(|e| CassandraError::protocol(&action, e))?;
        Ok(rows.rows_num() > 0)
    }

    /// Marks the copy from an earlier version's ledger as done.
    async fn mark_copied(&self) -> Result<(), CassandraError> {
        let action = format!("to write {}", self.table);
        self.cql
            .query(
                "ledger_write",
                format!("INSERT INTO {} (id) VALUES (?)", self.table),
                (COPIED_MARK,),
                &action,
            )
            .await
            .map(drop)
    }
}

/// An entry from its columns; `None` when it holds neither a synced version nor an intent (the
/// copy's mark, say). An empty digest blob is no digest (how the intent is cleared without a
/// tombstone). An incomplete synced version (a row written by hand) counts as none: that costs
/// a comparison, never data.
fn entry_of(row: EntryRow) -> Option<LedgerEntry> {
    let (id, digest, index, doc_type, timestamp, seq_no, primary_term, written_at, a, b, c) = row;
    let digest_of = |bytes: Option<Vec<u8>>| -> Option<Digest> {
        bytes.and_then(|b| <[u8; 16]>::try_from(b).ok()).map(Digest)
    };
    let base = match (digest_of(digest), timestamp, index) {
        (Some(digest), Some(timestamp), Some(index)) => Some(Synced {
            digest,
            timestamp: timestamp.0,
            elasticsearch: match (seq_no, primary_term) {
                (Some(seq_no), Some(primary_term)) => {
                    Some(EsVersion::new(index.clone(), seq_no, primary_term))
                }
                _ => None,
            },
            index,
            doc_type: doc_type.unwrap_or_else(|| DEFAULT_TYPE.to_string()),
            cassandra_written_at: written_at,
        }),
        _ => None,
    };
    let intent = digest_of(a).map(|target| Intent {
        target,
        elasticsearch: digest_of(b),
        cassandra: digest_of(c),
    });
    (base.is_some() || intent.is_some()).then_some(LedgerEntry { id, base, intent })
}

/// The `base` cell: the digest the content belongs to, then the content's JSON text,
/// compressed (zstd, fast level).
fn pack_content(digest: Digest, content: &str) -> Vec<u8> {
    thread_local! {
        // A compression context is costly to make: one per thread, reused.
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            std::cell::RefCell::new(zstd::bulk::Compressor::new(1).ok());
    }
    let mut packed = digest.0.to_vec();
    let compressed = COMPRESSOR.with_borrow_mut(|compressor| {
        compressor
            .as_mut()
            .and_then(|c| c.compress(content.as_bytes()).ok())
    });
    match compressed {
        Some(compressed) => packed.extend(compressed),
        // Compressing a buffer in memory does not fail; if it did, no content is kept.
        None => packed.clear(),
    }
    packed
}

/// The content of a `base` cell, when it belongs to `digest`.
fn unpack_content(packed: &[u8], digest: Digest) -> Option<serde_json::Value> {
    let (stored, compressed) = packed.split_at_checked(16)?;
    if stored != digest.0 {
        return None;
    }
    let text = zstd::stream::decode_all(compressed).ok()?;
    serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .filter(serde_json::Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sync_has_a_ledger_table_of_its_own_within_cassandras_name_length() {
        assert_eq!(table_name("orders"), "essync_synced_orders");
        assert_eq!(table_name("Orders"), "essync_synced_orders");
        let long = "a_table_whose_name_is_long_enough_to_overflow";
        let other = "a_table_whose_name_is_long_enough_to_overflow2";
        let (a, b) = (table_name(long), table_name(other));
        assert!(
            a.len() <= MAX_TABLE_NAME && b.len() <= MAX_TABLE_NAME,
            "{a} {b}"
        );
        assert!(a.starts_with("essync_synced_a_table"), "{a}");
        assert_ne!(a, b, "two long names that share a prefix get two tables");
        assert_eq!(a, table_name(long), "the name is stable");
    }

    #[test]
    fn a_kept_content_is_read_back_only_for_its_own_digest() {
        let content = r#"{"b":1.50,"a":[9007199254740993,{"x":"y"}]}"#;
        let (mine, other) = (Digest([7; 16]), Digest([8; 16]));
        let packed = pack_content(mine, content);
        let read = unpack_content(&packed, mine).expect("content");
        assert_eq!(serde_json::to_string(&read).expect("text"), content);
        assert_eq!(unpack_content(&packed, other), None);
        assert_eq!(unpack_content(&packed[..10], mine), None);
    }
}
