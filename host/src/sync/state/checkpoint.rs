//! Checkpoints: how far each change feed has been applied, kept in Cassandra beside the synced
//! table (`KEYSPACE.essync_checkpoints`, one row per synced table), so a restart, or another
//! machine taking over, resumes where the last applied page ended.
//!
//! A checkpoint moves only after every write of the page it covers has been applied or recorded
//! for retry (see [`super::errors`]); it is saved after each page, so a crash re-reads at most
//! one page, which is harmless: writes are compare-and-set and equal versions are skipped.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use serde::{Deserialize, Serialize};

use crate::cassandra::cql::Cql;
use crate::cassandra::{CassandraCheckpoint, CassandraError};
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
}

/// Reads and writes checkpoints.
pub(crate) struct CheckpointStore {
    cql: Cql,
    sync: String,
    table: String,
    load: PreparedStatement,
    save: PreparedStatement,
    /// Who saves (`host:pid`), for whoever reads the table.
    by: String,
}

impl CheckpointStore {
    /// Creates the checkpoint table when missing and prepares its statements.
    pub async fn open(cql: &Cql, keyspace: &str, sync: &str) -> Result<Self, CassandraError> {
        let table = format!("{keyspace}.{CHECKPOINT_TABLE}");
        cql.query(
            "schema",
            format!(
                "CREATE TABLE IF NOT EXISTS {table} \
                 (sync text PRIMARY KEY, checkpoint text, updated_at timestamp, updated_by text)"
            ),
            (),
            &format!("to create {table}"),
        )
        .await?;
        let action = format!("to prepare the statements of {table}");
        Ok(Self {
            load: cql
                .prepare(
                    "checkpoint",
                    format!(
                        "SELECT checkpoint, updated_at, updated_by FROM {table} WHERE sync = ?"
                    ),
                    &action,
                )
                .await?,
            save: cql
                .prepare(
                    "checkpoint",
                    format!(
                        "INSERT INTO {table} (sync, checkpoint, updated_at, updated_by) \
                         VALUES (?, ?, ?, ?)"
                    ),
                    &action,
                )
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
        type CheckpointRow = (Option<String>, Option<CqlTimestamp>, Option<String>);
        let Some((Some(text), at, by)) = rows
            .maybe_first_row::<CheckpointRow>()
            .map_err(|e| CassandraError::protocol(&action, e))?
        else {
            return Ok(None);
        };
        let checkpoint = serde_json::from_str(&text).map_err(|e| CassandraError::Protocol {
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
        }))
    }

    /// Saves a checkpoint.
    pub async fn save(&self, checkpoint: &Checkpoint) -> Result<(), CassandraError> {
        let action = format!("to save the checkpoint of {}", self.sync);
        let text =
            serde_json::to_string(checkpoint).map_err(|e| CassandraError::protocol(&action, e))?;
        let now = CqlTimestamp(Utc::now().timestamp_millis());
        self.cql
            .execute(&self.save, (&self.sync, text, now, &self.by), &action)
            .await?;
        Ok(())
    }
}
