//! Checkpoints: how far each change feed has been applied, kept in Cassandra beside the synced
//! table (`KEYSPACE.essync_checkpoints`, one row per synced table), so a restart, or another
//! machine taking over, resumes where the last applied page ended.
//!
//! A checkpoint moves only after every write of the page it covers has been applied or recorded
//! for retry (see [`super::errors`]); it is saved after each page, so a crash re-reads at most
//! one page, which is harmless: writes are compare-and-set and equal versions are skipped.
//!
//! **What a save writes.** The row keeps the whole checkpoint as JSON (`checkpoint`), and the
//! Cassandra feed's position again in a column of its own (`feeds`), which wins over the copy
//! inside `checkpoint` when both are there. The feed's position moves every round (its recent
//! rows and its sweep); the rest (a position per Elasticsearch index and shard, their delete
//! counters) moves only when Elasticsearch changed, and grows with the number of indices. A save
//! writes only the columns whose text changed since this process last saved, in one statement,
//! so an idle round on a cluster of hundreds of indices writes a few hundred bytes, not the
//! whole checkpoint. A version without `feeds` reads `checkpoint` alone: its Cassandra position
//! may then be older than the last saved, and re-reading from there is harmless.
//!
//! **Fencing.** The row also holds the sync's *epoch*: a number that each process holding the
//! table's lease raises once, with a lightweight transaction, when it takes the lease
//! ([`CheckpointStore::take_epoch`]). Every save is conditional on the epoch being the saver's
//! (`UPDATE ... IF epoch = ?`), so a process that lost its lease while frozen or cut off (its
//! epoch is no longer the row's) has its saves refused, whatever its clock says.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use serde::{Deserialize, Serialize};

use crate::cassandra::cql::Cql;
use crate::cassandra::write::was_applied;
use crate::cassandra::{CassandraCheckpoint, CassandraError, create_table};
use crate::elasticsearch::EsCheckpoint;

/// The table, in the synced keyspace, that holds the checkpoints.
pub const CHECKPOINT_TABLE: &str = "essync_checkpoints";

/// How far a sync has read and applied, on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The Elasticsearch change feed.
    pub elasticsearch: EsCheckpoint,
    /// The Cassandra change feed.
    pub cassandra: CassandraCheckpoint,
    /// A full reconciliation under way (`-s`), if any.
    pub reconciliation: Option<Reconciliation>,
    /// Where deletes may have happened in Elasticsearch, and essync's own deletes there.
    #[serde(default)]
    pub deletes: DeleteWatch,
}

/// Deletes in Elasticsearch are found through its delete counters: an index whose counters
/// moved by more than essync's own deletes (or started again: a reopened shard) is *suspect*,
/// and the ledger's ids in it are looked up in Elasticsearch as the write-time sweep passes
/// over them. A suspicion ends when a whole sweep pass that started after it is done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteWatch {
    /// Deletes essync made since the counters were last read, by index name.
    pub own: BTreeMap<String, i64>,
    /// Every operation essync applied to Elasticsearch since its change feed last planned
    /// (writes and deletes whose answers said they applied), by index name: an index holding
    /// no others is not read back.
    #[serde(default)]
    pub written: BTreeMap<String, i64>,
    /// Suspect indices, by name, each with the number of completed sweep passes after which
    /// it has been checked in full.
    pub suspects: BTreeMap<String, u64>,
}

/// A full reconciliation of both stores: every document is read once, whatever its age.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Whether Elasticsearch has been read to the end.
    pub elasticsearch_done: bool,
}

impl Checkpoint {
    /// Whether a full reconciliation is under way.
    pub fn reconciling(&self) -> bool {
        self.reconciliation.is_some()
    }

    /// Ends the reconciliation once both sides are read to the end.
    pub fn finish_reconciliation_if_done(&mut self) -> bool {
        let done = self
            .reconciliation
            .as_ref()
            .is_some_and(|r| r.elasticsearch_done && !self.cassandra.reconciling());
        if done {
            self.reconciliation = None;
        }
        done
    }
}

/// A checkpoint as saved.
#[derive(Debug, Clone)]
pub struct Saved {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// When it was saved.
    pub at: Option<DateTime<Utc>>,
    /// Who saved it (`host:pid`).
    pub by: String,
    /// The epoch of the lease it was saved under (none when saved without a lease, or by a
    /// version without fencing).
    pub epoch: Option<i64>,
}

/// A save refused: another process raised the epoch since this one took it.
#[derive(Debug)]
pub(crate) struct Fenced {
    /// The row's epoch now.
    pub now: Option<i64>,
}

/// Reads and writes checkpoints.
pub(crate) struct CheckpointStore {
    cql: Cql,
    sync: String,
    table: String,
    load: PreparedStatement,
    save: PreparedStatement,
    /// Fenced saves of both columns, of `checkpoint` alone, and of `feeds` alone.
    save_fenced: [PreparedStatement; 3],
    /// The texts of `checkpoint` (less the Cassandra feed) and `feeds` this process last saved
    /// (none before its first save, or after a save that failed: then both are written).
    saved: Option<(String, String)>,
    epoch: PreparedStatement,
    raise_epoch: PreparedStatement,
    raise_first_epoch: PreparedStatement,
    /// Who saves (`host:pid`), for whoever reads the table.
    by: String,
}

impl CheckpointStore {
    /// Creates the checkpoint table when missing and prepares its statements.
    pub async fn open(cql: &Cql, keyspace: &str, sync: &str) -> Result<Self, CassandraError> {
        let table = format!("{keyspace}.{CHECKPOINT_TABLE}");
        cql.change_schema(
            create_table(
                keyspace,
                CHECKPOINT_TABLE,
                "sync text PRIMARY KEY, checkpoint text, updated_at timestamp, updated_by text, \
                 epoch bigint, feeds text",
            ),
            &format!("to create {table}"),
        )
        .await?;
        add_column(cql, keyspace, "epoch", "bigint").await?;
        add_column(cql, keyspace, "feeds", "text").await?;
        let action = format!("to prepare the statements of {table}");
        let prepare = |cql_text: String| cql.prepare("checkpoint", cql_text, &action);
        Ok(Self {
            load: prepare(format!(
                "SELECT checkpoint, feeds, updated_at, updated_by, epoch FROM {table} \
                 WHERE sync = ?"
            ))
            .await?,
            save: prepare(format!(
                "INSERT INTO {table} (sync, checkpoint, feeds, updated_at, updated_by) \
                 VALUES (?, ?, ?, ?, ?)"
            ))
            .await?,
            save_fenced: [
                prepare(format!(
                    "UPDATE {table} SET checkpoint = ?, feeds = ?, updated_at = ?, \
                     updated_by = ? WHERE sync = ? IF epoch = ?"
                ))
                .await?,
                prepare(format!(
                    "UPDATE {table} SET checkpoint = ?, updated_at = ?, updated_by = ? \
                     WHERE sync = ? IF epoch = ?"
                ))
                .await?,
                prepare(format!(
                    "UPDATE {table} SET feeds = ?, updated_at = ?, updated_by = ? \
                     WHERE sync = ? IF epoch = ?"
                ))
                .await?,
            ],
            saved: None,
            epoch: prepare(format!("SELECT epoch FROM {table} WHERE sync = ?")).await?,
            raise_epoch: prepare(format!(
                "UPDATE {table} SET epoch = ? WHERE sync = ? IF epoch = ?"
            ))
            .await?,
            raise_first_epoch: prepare(format!(
                "UPDATE {table} SET epoch = ? WHERE sync = ? IF epoch = null"
            ))
            .await?,
            cql: cql.clone(),
            sync: sync.to_string(),
            table,
            by: format!("{}:{}", super::lease::host_name(), std::process::id()),
        })
    }

    /// The saved checkpoint, if any.
    pub async fn load(&self) -> Result<Option<Checkpoint>, CassandraError> {
        Ok(self.load_saved().await?.map(|saved| saved.checkpoint))
    }

    /// The saved checkpoint, when and by whom it was saved, if any.
    pub async fn load_saved(&self) -> Result<Option<Saved>, CassandraError> {
        let action = format!("to read the checkpoint of {}", self.sync);
        let rows = self
            .cql
            .execute(&self.load, (&self.sync,), &action)
            .await?
            .into_rows_result()
            .map_err(|e| CassandraError::protocol(&action, e))?;
        type CheckpointRow = (
            Option<String>,
            Option<String>,
            Option<CqlTimestamp>,
            Option<String>,
            Option<i64>,
        );
        let Some((Some(text), feeds, at, by, epoch)) = rows
            .maybe_first_row::<CheckpointRow>()
            .map_err(|e| CassandraError::protocol(&action, e))?
        else {
            return Ok(None);
        };
        let checkpoint = joined(&text, feeds.as_deref()).map_err(|e| CassandraError::Protocol {
            action,
            reason: format!(
                "the saved checkpoint is not readable ({e}); delete its row from {} to start \
                 over",
                self.table
            ),
        })?;
        Ok(Some(Saved {
            checkpoint,
            at: at.and_then(|t| DateTime::from_timestamp_millis(t.0)),
            by: by.unwrap_or_default(),
            epoch,
        }))
    }

    /// Saves a checkpoint: under `epoch` (only while the row's epoch is still that one), or,
    /// with none (a library user without a lease), unconditionally. Under an epoch, only the
    /// columns whose text changed since this process's last save are written, and nothing at
    /// all when neither did.
    pub async fn save(
        &mut self,
        checkpoint: &Checkpoint,
        epoch: Option<i64>,
    ) -> Result<Result<(), Fenced>, CassandraError> {
        let action = format!("to save the checkpoint of {}", self.sync);
        let parts = split(checkpoint).map_err(|e| CassandraError::protocol(&action, e))?;
        let now = CqlTimestamp(Utc::now().timestamp_millis());
        let Some(epoch) = epoch else {
            let values = (&self.sync, &parts.whole, &parts.feeds, now, &self.by);
            self.cql.execute(&self.save, values, &action).await?;
            return Ok(Ok(()));
        };
        let changed = match &self.saved {
            None => (true, true),
            Some((rest, feeds)) => (*rest != parts.rest, *feeds != parts.feeds),
        };
        // Whatever happens next, the row is known again only once a save applied.
        self.saved = None;
        let by = &self.by;
        let result = match changed {
            (false, false) => {
                self.saved = Some((parts.rest, parts.feeds));
                return Ok(Ok(()));
            }
            (true, true) => {
                let values = (&parts.whole, &parts.feeds, now, by, &self.sync, epoch);
                self.cql
                    .execute(&self.save_fenced[0], values, &action)
                    .await?
            }
            (true, false) => {
                let values = (&parts.whole, now, by, &self.sync, epoch);
                self.cql
                    .execute(&self.save_fenced[1], values, &action)
                    .await?
            }
            (false, true) => {
                let values = (&parts.feeds, now, by, &self.sync, epoch);
                self.cql
                    .execute(&self.save_fenced[2], values, &action)
                    .await?
            }
        };
        if was_applied(&action, result)? {
            self.saved = Some((parts.rest, parts.feeds));
            Ok(Ok(()))
        } else {
            Ok(Err(Fenced {
                now: self.epoch().await?,
            }))
        }
    }

    /// Raises the epoch by one for a process that has just taken the lease, and returns it.
    /// `held` is the epoch this process held before (when it takes a lease back that lapsed):
    /// if another process raised the epoch since, it held the table meanwhile, and the answer
    /// is [`Fenced`].
    pub async fn take_epoch(
        &self,
        held: Option<i64>,
    ) -> Result<Result<i64, Fenced>, CassandraError> {
        let action = format!("to raise the epoch of {}", self.sync);
        // Another pass only follows another raise between the read and the write (a process
        // that took the lease and lost it again in between).
        loop {
            let now = self.epoch().await?;
            if held.is_some() && now != held {
                return Ok(Err(Fenced { now }));
            }
            let next = now.unwrap_or(0) + 1;
            let result = match now {
                Some(now) => {
                    let values = (next, &self.sync, now);
                    self.cql.execute(&self.raise_epoch, values, &action).await?
                }
                None => {
                    let values = (next, &self.sync);
                    self.cql
                        .execute(&self.raise_first_epoch, values, &action)
                        .await?
                }
            };
            if was_applied(&action, result)? {
                return Ok(Ok(next));
            }
        }
    }

    /// The row's epoch now.
    async fn epoch(&self) -> Result<Option<i64>, CassandraError> {
        let action = format!("to read the epoch of {}", self.sync);
        let rows = self
            .cql
            .execute(&self.epoch, (&self.sync,), &action)
            .await?
            .into_rows_result()
            .map_err(|e| CassandraError::protocol(&action, e))?;
        Ok(rows
            .maybe_first_row::<(Option<i64>,)>()
            .map_err(|e| CassandraError::protocol(&action, e))?
            .and_then(|(epoch,)| epoch))
    }
}

/// A checkpoint as the row keeps it.
struct Parts {
    /// The whole checkpoint (`checkpoint`).
    whole: String,
    /// The whole less the Cassandra feed: what, when it changed, makes a save write `whole`.
    rest: String,
    /// The Cassandra feed's position (`feeds`).
    feeds: String,
}

/// The texts of a checkpoint's columns.
fn split(checkpoint: &Checkpoint) -> Result<Parts, serde_json::Error> {
    let mut value = serde_json::to_value(checkpoint)?;
    let whole = value.to_string();
    let feeds = value
        .as_object_mut()
        .and_then(|o| o.remove(FEEDS_KEY))
        .unwrap_or_default()
        .to_string();
    Ok(Parts {
        whole,
        rest: value.to_string(),
        feeds,
    })
}

/// A checkpoint from its columns: the whole, its Cassandra feed replaced by `feeds` when saved.
fn joined(whole: &str, feeds: Option<&str>) -> Result<Checkpoint, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_str(whole)?;
    if let (Some(feeds), Some(object)) = (feeds, value.as_object_mut()) {
        object.insert(FEEDS_KEY.to_string(), serde_json::from_str(feeds)?);
    }
    serde_json::from_value(value)
}

/// The field of [`Checkpoint`] kept in `feeds` too.
const FEEDS_KEY: &str = "cassandra";

/// Adds a column to a checkpoint table made by an earlier version (`epoch` came with fencing,
/// `feeds` with saves of the changed columns alone).
async fn add_column(
    cql: &Cql,
    keyspace: &str,
    column: &str,
    cql_type: &str,
) -> Result<(), CassandraError> {
    let action = format!("to read the columns of {keyspace}.{CHECKPOINT_TABLE}");
    let rows = cql
        .query(
            "schema",
            "SELECT column_name FROM system_schema.columns \
             WHERE keyspace_name = ? AND table_name = ? AND column_name = ?",
            (keyspace, CHECKPOINT_TABLE, column),
            &action,
        )
        .await?
        .into_rows_result()
        .map_err(|e| CassandraError::protocol(&action, e))?;
    if rows.rows_num() > 0 {
        return Ok(());
    }
    let table = format!("{keyspace}.{CHECKPOINT_TABLE}");
    let added = cql
        .change_schema(
            format!("ALTER TABLE {table} ADD {column} {cql_type}"),
            &format!("to add the column {column} to {table}"),
        )
        .await;
    match added {
        Ok(_) => Ok(()),
        // Another process added it meanwhile.
        Err(e) if e.to_string().contains("conflicts with an existing column") => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(recent_since_ms: i64) -> Checkpoint {
        let at = DateTime::from_timestamp_millis(recent_since_ms).expect("a time");
        let mut elasticsearch = EsCheckpoint::default();
        elasticsearch.indices.insert(
            "uuid-1".to_string(),
            crate::elasticsearch::IndexPosition {
                name: "orders".to_string(),
                shards: vec![41, -1],
            },
        );
        Checkpoint {
            elasticsearch,
            cassandra: CassandraCheckpoint::starting_at(at),
            reconciliation: None,
            deletes: DeleteWatch::default(),
        }
    }

    #[test]
    fn the_columns_give_back_the_checkpoint_and_the_feeds_column_wins() {
        let older = checkpoint(1_000);
        let newer = checkpoint(9_000);
        let (older_parts, newer_parts) = (split(&older).unwrap(), split(&newer).unwrap());
        assert_eq!(joined(&newer_parts.whole, None).unwrap(), newer);
        assert_eq!(
            joined(&newer_parts.whole, Some(&newer_parts.feeds)).unwrap(),
            newer
        );
        // Only the feed moved: the rest reads the same, and the row's `checkpoint` may keep the
        // older feed, which `feeds` overrides.
        assert_eq!(older_parts.rest, newer_parts.rest);
        assert_ne!(older_parts.feeds, newer_parts.feeds);
        assert_eq!(
            joined(&older_parts.whole, Some(&newer_parts.feeds)).unwrap(),
            newer
        );
        assert!(!newer_parts.rest.contains("recent_since"));
        assert!(newer_parts.whole.contains("recent_since"));
    }
}
