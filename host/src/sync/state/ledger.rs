//! The ledger: for every synced id, the version both stores held after essync last brought
//! them together (the common ancestor of three-way sync), kept in Cassandra beside the synced
//! table (`KEYSPACE.essync_ledger`, one row per id and sync).
//!
//! A round compares each store's version of an id with the ledger's: equal is unchanged, a
//! different version changed, an absent one was deleted. So a change is credited to the side
//! that made it, whatever the timestamps say, and deletes can be told from creations. A row
//! holds:
//!
//! - the digest of the synced version ([`Digest`]), which recognises it on each side;
//! - the synced version itself (index, type, timestamp, content): the base a policy sees beside
//!   the two sides of a conflict, and the document a delete removed;
//! - what essync's own writes left: Elasticsearch's `_seq_no` and `_primary_term`, Cassandra's
//!   write time. A version read back with these is essync's own write, recognised without
//!   reading the other side.
//!
//! The partition key is the document's id, so the ledger sorts in the same token order as the
//! synced table, and the write-time sweep reads both side by side: an id in the ledger but no
//! longer in the table was deleted there.
//!
//! Writes are recorded ahead and confirmed after, so that a crash at any point leaves a ledger
//! that errs towards "examined again", never towards a change credited to the wrong side:
//!
//! - before a page's writes, an *intent* per id written: the digest of the version being written
//!   and the digests each side held when the decision was taken (small cells, in unlogged
//!   batches);
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

use std::collections::HashMap;

use chrono::DateTime;
use futures::StreamExt;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use serde_json::Value;
use uuid::Uuid;

use crate::Document;
use crate::cassandra::CassandraError;
use crate::document::Digest;
use crate::elasticsearch::EsVersion;

/// The table, in the synced keyspace, that held the ledgers of every sync of the keyspace
/// before each sync got its own ([`table_name`]); its entries are copied once from there.
pub const LEDGER_TABLE: &str = "essync_ledger";

/// Cassandra's longest table name.
const MAX_TABLE_NAME: usize = 48;

/// The `sync` of the row that marks a ledger as copied from the shared table (a table name
/// never holds a colon, so it is no sync's).
const COPIED_MARK: &str = "essync:copied";

/// Rows per page when copying from the shared table.
const COPY_PAGE: i32 = 1000;

/// The ledger table of a sync: `essync_ledger_TABLE`, or, when that is longer than Cassandra
/// allows, the table's name cut short with a hash of the whole name. One table per sync keeps
/// the sweep's token-order reads to this sync's entries, however many syncs share the
/// keyspace.
pub fn table_name(sync: &str) -> String {
    let name = format!("{LEDGER_TABLE}_{}", sync.to_lowercase());
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

/// Ids per `IN` read: few enough to keep each request small, many enough to save round trips.
const IDS_PER_READ: usize = 50;
/// Intents per unlogged batch: each is three small cells, well under Cassandra's batch warning
/// size.
const INTENTS_PER_BATCH: usize = 50;
/// Ledger requests in flight at once.
const CONCURRENCY: usize = 64;

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

/// The version both sides held after a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// Its digest.
    pub digest: Digest,
    /// Its timestamp (ms since the epoch).
    pub timestamp: i64,
    /// Its index.
    pub index: String,
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

/// One entry to record: the synced document and where the stores hold it.
#[derive(Debug, Clone)]
pub struct Record {
    /// The digest both sides' versions have.
    pub digest: Digest,
    /// The synced document (its timestamp set).
    pub document: Document,
    /// The Elasticsearch version holding it.
    pub elasticsearch: Option<EsVersion>,
    /// The write time of the Cassandra row holding it.
    pub cassandra_written_at: Option<i64>,
}

/// The ledger of one sync.
pub(crate) struct Ledger {
    sync: String,
    table: String,
    lookup: PreparedStatement,
    base: PreparedStatement,
    range: PreparedStatement,
    upsert: PreparedStatement,
    refresh: PreparedStatement,
    forget: PreparedStatement,
    intend: PreparedStatement,
}

type EntryRow = (
    Uuid,
    Option<Vec<u8>>,
    Option<CqlTimestamp>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

const ENTRY_COLUMNS: &str = "id, digest, timestamp, index_, es_seq_no, es_primary_term, \
     cassandra_written_at, pending, seen_es, seen_cassandra";

/// The columns of the intent, added to ledgers created before it existed.
const INTENT_COLUMNS: [&str; 3] = ["pending", "seen_es", "seen_cassandra"];

impl Ledger {
    /// Creates the sync's ledger table when missing (copying its entries once from the shared
    /// table of earlier versions) and prepares its statements. Returns whether the ledger is new
    /// (it knows nothing yet). A dry run creates and copies nothing: it reads the shared table
    /// while the copy has not been made.
    pub async fn open(
        session: &Session,
        keyspace: &str,
        sync: &str,
        dry_run: bool,
    ) -> Result<(Self, bool), CassandraError> {
        let name = table_name(sync);
        let existed = table_exists(session, keyspace, &name).await?;
        let shared = table_exists(session, keyspace, LEDGER_TABLE).await?;
        let copied = existed && copy_marked(session, keyspace, &name).await?;
        if dry_run && shared && !copied {
            let ledger = Self::prepare(session, keyspace, LEDGER_TABLE, sync).await?;
            return Ok((ledger, false));
        }
        let table = format!("{keyspace}.{name}");
        session
            .query_unpaged(
                format!(
                    "CREATE TABLE IF NOT EXISTS {table} (id uuid, sync text, digest blob, \
                     index_ text, type text, timestamp timestamp, content text, \
                     es_seq_no bigint, es_primary_term bigint, cassandra_written_at bigint, \
                     pending blob, seen_es blob, seen_cassandra blob, \
                     PRIMARY KEY (id, sync))"
                ),
                (),
            )
            .await
            .map_err(|e| CassandraError::execution(format!("to create {table}"), &e))?;
        let ledger = Self::prepare(session, keyspace, &name, sync).await?;
        let mut new = !existed;
        if shared && !copied {
            let count = ledger.copy_shared(session, keyspace).await?;
            new = new && count == 0;
        }
        Ok((ledger, new))
    }

    /// Copies this sync's entries from the shared table of earlier versions, then marks the
    /// copy made (an interrupted copy is made again at the next start, before any sync work).
    async fn copy_shared(&self, session: &Session, keyspace: &str) -> Result<u64, CassandraError> {
        let shared = format!("{keyspace}.{LEDGER_TABLE}");
        tracing::info!(
            "copying the entries of {} from the shared {shared} to {} (once)",
            self.sync,
            self.table
        );
        let action = format!("to copy {shared}");
        let mut select = session
            .prepare(format!(
                "SELECT sync, id, digest, index_, type, timestamp, content, es_seq_no, \
                 es_primary_term, cassandra_written_at, pending, seen_es, seen_cassandra \
                 FROM {shared}"
            ))
            .await
            .map_err(|e| CassandraError::prepare(&action, &e))?;
        select.set_page_size(COPY_PAGE);
        let insert = session
            .prepare(format!(
                "INSERT INTO {} (sync, id, digest, index_, type, timestamp, content, es_seq_no, \
                 es_primary_term, cassandra_written_at, pending, seen_es, seen_cassandra) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self.table
            ))
            .await
            .map_err(|e| CassandraError::prepare(&action, &e))?;
        type CopyRow = (
            String,
            Uuid,
            Option<Vec<u8>>,
            Option<String>,
            Option<String>,
            Option<CqlTimestamp>,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
        );
        let mut rows = session
            .execute_iter(select, ())
            .await
            .map_err(|e| CassandraError::pager(&action, &e))?
            .rows_stream::<CopyRow>()
            .map_err(|e| CassandraError::protocol(&action, e))?;
        let mut copied = 0_u64;
        let mut pending = Vec::new();
        while let Some(row) = rows.next().await {
            let row = row.map_err(|e| CassandraError::protocol(&action, e))?;
            if row.0 != self.sync {
                continue;
            }
            pending.push(row);
            if pending.len() == COPY_PAGE as usize {
                copied += self.insert_copies(session, &insert, &mut pending).await?;
            }
        }
        copied += self.insert_copies(session, &insert, &mut pending).await?;
        session
            .query_unpaged(
                format!("INSERT INTO {} (id, sync) VALUES (?, ?)", self.table),
                (Uuid::nil(), COPIED_MARK),
            )
            .await
            .map_err(|e| CassandraError::execution(&action, &e))?;
        tracing::info!(
            "copied {copied} ledger entries of {} to {}; the shared {shared} can be dropped once \
             every sync of the keyspace runs this version",
            self.sync,
            self.table
        );
        Ok(copied)
    }

    /// Writes copied rows (taken out of `rows`); returns how many.
    async fn insert_copies<R>(
        &self,
        session: &Session,
        insert: &PreparedStatement,
        rows: &mut Vec<R>,
    ) -> Result<u64, CassandraError>
    where
        R: scylla::serialize::row::SerializeRow,
    {
        let action = format!("to write {}", self.table);
        let count = rows.len() as u64;
        let pending: Vec<_> = rows
            .drain(..)
            .map(|row| {
                let action = &action;
                async move {
                    session
                        .execute_unpaged(insert, row)
                        .await
                        .map(|_| ())
                        .map_err(|e| CassandraError::execution(action, &e))
                }
            })
            .collect();
        all(pending).await?;
        Ok(count)
    }

    /// Prepares the statements of the ledger in `keyspace.name`.
    async fn prepare(
        session: &Session,
        keyspace: &str,
        name: &str,
        sync: &str,
    ) -> Result<Self, CassandraError> {
        let table = format!("{keyspace}.{name}");
        add_missing_columns(session, keyspace, name).await?;
        let prepare = |cql: String| {
            let table = table.clone();
            async move {
                session.prepare(cql).await.map_err(|e| {
                    CassandraError::prepare(format!("to prepare the statements of {table}"), &e)
                })
            }
        };
        let mut range = prepare(format!(
            "SELECT token(id), sync, {ENTRY_COLUMNS} FROM {table} \
             WHERE token(id) >= ? AND token(id) <= ?"
        ))
        .await?;
        range.set_page_size(5000);
        let ledger = Self {
            sync: sync.to_string(),
            lookup: prepare(format!(
                "SELECT {ENTRY_COLUMNS} FROM {table} WHERE id IN ? AND sync = ?"
            ))
            .await?,
            base: prepare(format!(
                "SELECT id, index_, type, timestamp, content FROM {table} \
                 WHERE id IN ? AND sync = ?"
            ))
            .await?,
            range,
            upsert: prepare(format!(
                "INSERT INTO {table} (id, sync, digest, index_, type, timestamp, content, \
                 es_seq_no, es_primary_term, cassandra_written_at, pending, seen_es, \
                 seen_cassandra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0x, 0x, 0x)"
            ))
            .await?,
            intend: prepare(format!(
                "UPDATE {table} SET pending = ?, seen_es = ?, seen_cassandra = ? \
                 WHERE id = ? AND sync = ?"
            ))
            .await?,
            refresh: prepare(format!(
                "UPDATE {table} SET es_seq_no = ?, es_primary_term = ?, \
                 cassandra_written_at = ? WHERE id = ? AND sync = ?"
            ))
            .await?,
            forget: prepare(format!("DELETE FROM {table} WHERE id = ? AND sync = ?")).await?,
            table,
        };
        Ok(ledger)
    }

    /// The entries of the ids that have one.
    pub async fn get(
        &self,
        session: &Session,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, LedgerEntry>, CassandraError> {
        let action = format!("to read {}", self.table);
        let pending: Vec<_> = ids
            .chunks(IDS_PER_READ)
            .map(|chunk| {
                let action = &action;
                async move {
                    let rows = session
                        .execute_unpaged(&self.lookup, (chunk, &self.sync))
                        .await
                        .map_err(|e| CassandraError::execution(action, &e))?
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
            })
            .collect();
        let results: Vec<Result<Vec<Option<LedgerEntry>>, CassandraError>> =
            futures::stream::iter(pending)
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        let mut found = HashMap::with_capacity(ids.len());
        for result in results {
            for entry in result?.into_iter().flatten() {
                found.insert(entry.id, entry);
            }
        }
        Ok(found)
    }

    /// The synced documents (the bases) of the ids that have an entry.
    pub async fn base(
        &self,
        session: &Session,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Document>, CassandraError> {
        let action = format!("to read the synced versions in {}", self.table);
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_READ) {
            let rows = session
                .execute_unpaged(&self.base, (chunk, &self.sync))
                .await
                .map_err(|e| CassandraError::execution(&action, &e))?
                .into_rows_result()
                .map_err(|e| CassandraError::protocol(&action, e))?;
            type BaseRow = (
                Uuid,
                Option<String>,
                Option<String>,
                Option<CqlTimestamp>,
                Option<String>,
            );
            for row in rows
                .rows::<BaseRow>()
                .map_err(|e| CassandraError::protocol(&action, e))?
            {
                let (id, index, doc_type, timestamp, content) =
                    row.map_err(|e| CassandraError::protocol(&action, e))?;
                let content = content
                    .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                    .filter(Value::is_object);
                let timestamp = timestamp.and_then(|t| DateTime::from_timestamp_millis(t.0));
                if let (Some(index), Some(content), Some(timestamp)) = (index, content, timestamp) {
                    let doc_type = doc_type.unwrap_or_else(|| crate::document::DEFAULT_TYPE.into());
                    found.insert(
                        id,
                        Document::with_id(id, index, doc_type, content).at(timestamp),
                    );
                }
            }
        }
        Ok(found)
    }

    /// The entries whose id's token is in `[from, to]`, in token order, with their tokens.
    pub async fn range(
        &self,
        session: &Session,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, LedgerEntry)>, CassandraError> {
        let action = format!("to read {}", self.table);
        if from > to {
            return Ok(Vec::new());
        }
        let pager = session
            .execute_iter(self.range.clone(), (from, to))
            .await
            .map_err(|e| CassandraError::pager(&action, &e))?;
        type RangeRow = (
            i64,
            String,
            Uuid,
            Option<Vec<u8>>,
            Option<CqlTimestamp>,
            Option<String>,
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
            let (token, sync, id, digest, timestamp, index, seq_no, term, written_at, a, b, c) =
                row.map_err(|e| CassandraError::protocol(&action, e))?;
            if sync != self.sync {
                continue;
            }
            if let Some(entry) = entry_of((
                id, digest, timestamp, index, seq_no, term, written_at, a, b, c,
            )) {
                entries.push((token, entry));
            }
        }
        Ok(entries)
    }

    /// Records synced versions.
    pub async fn record(
        &self,
        session: &Session,
        records: &[Record],
    ) -> Result<(), CassandraError> {
        let action = format!("to write {}", self.table);
        let pending: Vec<_> = records
            .iter()
            .map(|record| {
                let action = &action;
                async move {
                    let document = &record.document;
                    session
                        .execute_unpaged(
                            &self.upsert,
                            (
                                document.id,
                                &self.sync,
                                record.digest.0.to_vec(),
                                &document.index,
                                &document.doc_type,
                                document.timestamp_millis().map(CqlTimestamp),
                                document.content_text(),
                                record.elasticsearch.as_ref().map(|v| v.seq_no),
                                record.elasticsearch.as_ref().map(|v| v.primary_term),
                                record.cassandra_written_at,
                            ),
                        )
                        .await
                        .map(|_| ())
                        .map_err(|e| CassandraError::execution(action, &e))
                }
            })
            .collect();
        all(pending).await
    }

    /// Records writes about to be made (`Some` intent), or forgets them (`None`): unlogged
    /// batches of small cells.
    pub async fn intend(
        &self,
        session: &Session,
        intents: &[(Uuid, Intent)],
    ) -> Result<(), CassandraError> {
        use scylla::statement::batch::{Batch, BatchType};
        let action = format!("to write {}", self.table);
        // No digest is an empty blob, not a null: a null is a tombstone, which every later
        // read of the entry would have to step over.
        let bytes = |d: Option<Digest>| d.map(|d| d.0.to_vec()).unwrap_or_default();
        let pending: Vec<_> = intents
            .chunks(INTENTS_PER_BATCH)
            .map(|chunk| {
                let action = &action;
                async move {
                    let mut batch = Batch::new(BatchType::Unlogged);
                    let mut values = Vec::with_capacity(chunk.len());
                    for (id, intent) in chunk {
                        batch.append_statement(self.intend.clone());
                        values.push((
                            intent.target.0.to_vec(),
                            bytes(intent.elasticsearch),
                            bytes(intent.cassandra),
                            *id,
                            &self.sync,
                        ));
                    }
                    session
                        .batch(&batch, values)
                        .await
                        .map(|_| ())
                        .map_err(|e| CassandraError::execution(action, &e))
                }
            })
            .collect();
        all(pending).await
    }

    /// Updates where the stores hold an entry's version (its content unchanged).
    pub async fn refresh(
        &self,
        session: &Session,
        entries: &[(Uuid, Synced)],
    ) -> Result<(), CassandraError> {
        let action = format!("to write {}", self.table);
        let pending: Vec<_> = entries
            .iter()
            .map(|(id, synced)| {
                let action = &action;
                async move {
                    session
                        .execute_unpaged(
                            &self.refresh,
                            (
                                synced.elasticsearch.as_ref().map(|v| v.seq_no),
                                synced.elasticsearch.as_ref().map(|v| v.primary_term),
                                synced.cassandra_written_at,
                                *id,
                                &self.sync,
                            ),
                        )
                        .await
                        .map(|_| ())
                        .map_err(|e| CassandraError::execution(action, &e))
                }
            })
            .collect();
        all(pending).await
    }

    /// Forgets ids: neither store holds them any more.
    pub async fn forget(&self, session: &Session, ids: &[Uuid]) -> Result<(), CassandraError> {
        let action = format!("to write {}", self.table);
        let pending: Vec<_> = ids
            .iter()
            .map(|id| {
                let action = &action;
                async move {
                    session
                        .execute_unpaged(&self.forget, (id, &self.sync))
                        .await
                        .map(|_| ())
                        .map_err(|e| CassandraError::execution(action, &e))
                }
            })
            .collect();
        all(pending).await
    }
}

/// Runs the requests, [`CONCURRENCY`] at a time; the first failure is the result.
async fn all<F>(pending: Vec<F>) -> Result<(), CassandraError>
where
    F: std::future::Future<Output = Result<(), CassandraError>>,
{
    let results: Vec<Result<(), CassandraError>> = futures::stream::iter(pending)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// An entry from its columns; `None` when it holds neither a synced version nor an intent. An
/// empty digest blob is no digest (how the intent is cleared without a tombstone). An
/// incomplete synced version (a row written by hand) counts as none: that costs a comparison,
/// never data.
fn entry_of(row: EntryRow) -> Option<LedgerEntry> {
    let (id, digest, timestamp, index, seq_no, primary_term, written_at, pending, seen_es, seen_c) =
        row;
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
            cassandra_written_at: written_at,
        }),
        _ => None,
    };
    let intent = digest_of(pending).map(|target| Intent {
        target,
        elasticsearch: digest_of(seen_es),
        cassandra: digest_of(seen_c),
    });
    (base.is_some() || intent.is_some()).then_some(LedgerEntry { id, base, intent })
}

/// Adds the columns a ledger created by an earlier essync lacks.
async fn add_missing_columns(
    session: &Session,
    keyspace: &str,
    name: &str,
) -> Result<(), CassandraError> {
    let table = format!("{keyspace}.{name}");
    let action = format!("to read the columns of {table}");
    let rows = session
        .query_unpaged(
            "SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?",
            (keyspace, name),
        )
        .await
        .map_err(|e| CassandraError::execution(&action, &e))?
        .into_rows_result()
        .map_err(|e| CassandraError::protocol(&action, e))?;
    let present: Vec<String> = rows
        .rows::<(String,)>()
        .map_err(|e| CassandraError::protocol(&action, e))?
        .filter_map(|row| row.ok().map(|(name,)| name))
        .collect();
    for column in INTENT_COLUMNS {
        if !present.iter().any(|name| name == column) {
            session
                .query_unpaged(format!("ALTER TABLE {table} ADD {column} blob"), ())
                .await
                .map_err(|e| {
                    CassandraError::execution(format!("to add {column} to {table}"), &e)
                })?;
        }
    }
    Ok(())
}

/// Whether the ledger `keyspace.name` holds the mark of a finished copy from the shared table.
async fn copy_marked(
    session: &Session,
    keyspace: &str,
    name: &str,
) -> Result<bool, CassandraError> {
    let action = format!("to read {keyspace}.{name}");
    let rows = session
        .query_unpaged(
            format!("SELECT sync FROM {keyspace}.{name} WHERE id = ? AND sync = ?"),
            (Uuid::nil(), COPIED_MARK),
        )
        .await
        .map_err(|e| CassandraError::execution(&action, &e))?
        .into_rows_result()
        .map_err(|e| CassandraError::protocol(&action, e))?;
    Ok(rows.rows_num() > 0)
}

/// Whether `keyspace.table` exists.
async fn table_exists(
    session: &Session,
    keyspace: &str,
    table: &str,
) -> Result<bool, CassandraError> {
    let action = format!("to look for {keyspace}.{table}");
    let rows = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?",
            (keyspace, table),
        )
        .await
        .map_err(|e| CassandraError::execution(&action, &e))?
        .into_rows_result()
        .map_err(|e| CassandraError::protocol(&action, e))?;
    Ok(rows.rows_num() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sync_has_a_ledger_table_of_its_own_within_cassandras_name_length() {
        assert_eq!(table_name("orders"), "essync_ledger_orders");
        assert_eq!(table_name("Orders"), "essync_ledger_orders");
        let long = "a_table_whose_name_is_long_enough_to_overflow";
        let other = "a_table_whose_name_is_long_enough_to_overflow2";
        let (a, b) = (table_name(long), table_name(other));
        assert!(
            a.len() <= MAX_TABLE_NAME && b.len() <= MAX_TABLE_NAME,
            "{a} {b}"
        );
        assert!(a.starts_with("essync_ledger_a_table"), "{a}");
        assert_ne!(a, b, "two long names that share a prefix get two tables");
        assert_eq!(a, table_name(long), "the name is stable");
    }
}
