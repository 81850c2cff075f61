//! essync's state beside the synced table, and the one owner of its writes: checkpoints (how
//! far each change feed is applied), recorded failures, and the ledger (what was last synced).
//! A dry run reads them all and writes none: that rule lives here and nowhere else.

pub mod checkpoint;
pub mod errors;
pub mod ledger;

use std::time::Duration;

use chrono::{DateTime, Utc};
use scylla::client::session::Session;
use uuid::Uuid;

pub use checkpoint::{CHECKPOINT_TABLE, Checkpoint, DeleteWatch, Reconciliation};
pub use errors::{ERROR_TABLE, ErrorEntry, FEED_PREFIX};
pub use ledger::{Intent, LEDGER_TABLE, LedgerEntry, Record, Synced};

use crate::Document;
use crate::cassandra::CassandraError;
use crate::store::{BadDocument, FeedFailure};
use checkpoint::CheckpointStore;
use errors::ErrorLog;
use ledger::Ledger;

/// The state tables of one sync.
pub(crate) struct State {
    checkpoints: CheckpointStore,
    errors: ErrorLog,
    ledger: Ledger,
    dry_run: bool,
}

/// What opening the state found.
pub(crate) struct Opened {
    pub state: State,
    /// The saved checkpoint, if any.
    pub checkpoint: Option<Checkpoint>,
    /// Whether the ledger table was created now.
    pub new_ledger: bool,
}

impl State {
    /// Creates the state tables when missing and loads the checkpoint and the failures.
    pub async fn open(
        session: &Session,
        keyspace: &str,
        sync: &str,
        retry_backoff: Duration,
        dry_run: bool,
    ) -> Result<Opened, CassandraError> {
        let checkpoints = CheckpointStore::open(session, keyspace, sync).await?;
        let errors = ErrorLog::open(session, keyspace, sync, retry_backoff, dry_run).await?;
        let (ledger, new_ledger) = Ledger::open(session, keyspace, sync, dry_run).await?;
        let checkpoint = checkpoints.load(session).await?;
        Ok(Opened {
            state: Self {
                checkpoints,
                errors,
                ledger,
                dry_run,
            },
            checkpoint,
            new_ledger,
        })
    }

    /// Whether nothing is written.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Saves a checkpoint.
    pub async fn save(
        &self,
        session: &Session,
        checkpoint: &Checkpoint,
    ) -> Result<(), CassandraError> {
        if self.dry_run {
            return Ok(());
        }
        self.checkpoints.save(session, checkpoint).await
    }

    /// How many documents are recorded as failed.
    pub fn failures(&self) -> usize {
        self.errors.len()
    }

    /// The failed ids due for another attempt at `now` (at most `limit`).
    pub fn due(&self, now: DateTime<Utc>, limit: usize) -> Vec<Uuid> {
        self.errors.due(now, limit)
    }

    /// Records that the document `id` failed on `side`, with the reason.
    pub async fn fail(
        &mut self,
        session: &Session,
        id: Uuid,
        side: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CassandraError> {
        self.errors
            .record(session, Some(id), &id.to_string(), side, reason, now)
            .await
    }

    /// Records a document a store cannot sync.
    pub async fn fail_bad(
        &mut self,
        session: &Session,
        bad: &BadDocument,
        now: DateTime<Utc>,
    ) -> Result<(), CassandraError> {
        self.errors.record_bad(session, bad, now).await
    }

    /// Records that a part of the Elasticsearch feed could not be read; returns whether it is a
    /// new failure (its first attempt).
    pub async fn fail_feed(
        &mut self,
        session: &Session,
        failure: &FeedFailure,
        now: DateTime<Utc>,
    ) -> Result<bool, CassandraError> {
        let location = format!("{FEED_PREFIX}{}", failure.location);
        self.errors
            .record(
                session,
                None,
                &location,
                "elasticsearch",
                &failure.reason,
                now,
            )
            .await?;
        Ok(self.errors.attempts(&location) == 1)
    }

    /// The parts of the Elasticsearch feed that failed and wait for their next attempt.
    pub fn feed_held(&self, now: DateTime<Utc>) -> std::collections::BTreeSet<String> {
        self.errors.feed_parts(now, true)
    }

    /// After a whole pass of the Elasticsearch feed: the parts recorded as failed that were
    /// tried again (not `held`) and did not fail (`failed`) are read again.
    pub async fn feed_recovered(
        &mut self,
        session: &Session,
        failed: &std::collections::BTreeSet<String>,
        held: &std::collections::BTreeSet<String>,
        now: DateTime<Utc>,
    ) -> Result<(), CassandraError> {
        for part in self.errors.feed_parts(now, false) {
            if !failed.contains(&part) && !held.contains(&part) {
                tracing::info!("Elasticsearch's {part} is read again");
                self.errors
                    .resolve_location(session, &format!("{FEED_PREFIX}{part}"))
                    .await?;
            }
        }
        Ok(())
    }

    /// Forgets an id's failure: it is in sync (or deliberately left alone) now.
    pub async fn resolved(&mut self, session: &Session, id: &Uuid) -> Result<(), CassandraError> {
        self.errors.resolve(session, id).await
    }

    /// The ledger entries of the ids that have one.
    pub async fn ledger(
        &self,
        session: &Session,
        ids: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, LedgerEntry>, CassandraError> {
        self.ledger.get(session, ids).await
    }

    /// The synced versions (bases) of the ids that have one.
    pub async fn bases(
        &self,
        session: &Session,
        ids: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, Document>, CassandraError> {
        self.ledger.base(session, ids).await
    }

    /// The ledger entries whose token is in `[from, to]`, with their tokens.
    pub async fn ledger_range(
        &self,
        session: &Session,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, LedgerEntry)>, CassandraError> {
        self.ledger.range(session, from, to).await
    }

    /// Records the writes about to be made, before they are (see [`ledger`]).
    pub async fn intend(
        &self,
        session: &Session,
        intents: &[(Uuid, Intent)],
    ) -> Result<(), CassandraError> {
        if self.dry_run || intents.is_empty() {
            return Ok(());
        }
        self.ledger.intend(session, intents).await
    }

    /// Brings the ledger up to date after the writes: records what was synced, refreshes where
    /// the stores hold it and forgets what is gone. The intents of writes that did not all
    /// apply stay (see [`ledger`]).
    pub async fn write_ledger(
        &self,
        session: &Session,
        records: &[Record],
        refreshes: &[(Uuid, Synced)],
        forgotten: &[Uuid],
    ) -> Result<(), CassandraError> {
        if self.dry_run {
            return Ok(());
        }
        let (a, b, c) = tokio::join!(
            self.ledger.record(session, records),
            self.ledger.refresh(session, refreshes),
            self.ledger.forget(session, forgotten),
        );
        a.and(b).and(c)
    }
}
