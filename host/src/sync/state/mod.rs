//! essync's state beside the synced table, and the one owner of its reads and writes:
//! checkpoints (how far each change feed is applied), recorded failures, and the ledger (what
//! was last synced). Each table's statements are prepared here, once. A dry run reads them all
//! and writes none: that rule lives here and nowhere else.

pub mod checkpoint;
pub mod errors;
pub mod lease;
pub mod ledger;
mod recent;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use checkpoint::{CHECKPOINT_TABLE, Checkpoint, DeleteWatch, Reconciliation};
pub use errors::{ERROR_TABLE, ErrorEntry, FEED_PREFIX, Failure};
pub use lease::{Holder, LEASE_TABLE, LEASE_TTL, Lease};
pub use ledger::{
    Intent, LEDGER_PREFIX, LEGACY_LEDGER_TABLE, LedgerEntry, Record, Synced, SyncedVersion,
};

use crate::cassandra::CassandraError;
use crate::cassandra::cql::Cql;
use crate::document::Digest;
use crate::store::FeedFailure;
use crate::sync::SyncError;
use checkpoint::CheckpointStore;
use errors::ErrorLog;
use lease::Confirmation;
use ledger::Ledger;
use recent::RecentWrites;

/// How the state of a sync is kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StateOptions {
    /// The first wait before a failed document is tried again (doubles each time).
    pub retry_backoff: Duration,
    /// Read, never write.
    pub dry_run: bool,
    /// Keep the synced content in the ledger (the policy merges from it).
    pub keep_content: bool,
    /// How long what this process recorded lately serves to recognise unchanged recent rows
    /// (see [`recent`]).
    pub recent_for: Duration,
}

/// The state tables of one sync.
pub(crate) struct State {
    checkpoints: CheckpointStore,
    errors: ErrorLog,
    ledger: Ledger,
    /// The table's lease, when this process holds one (the command does; a library user may).
    lease: Option<Lease>,
    /// The epoch this process raised under its lease (see [`checkpoint`]), once it has.
    epoch: Option<i64>,
    /// What this process recorded lately (see [`recent`]).
    recent: RecentWrites,
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

/// What a batch leaves to record, all at once when it ends: failures, ids back in sync, and the
/// ledger's changes.
#[derive(Debug, Default)]
pub(crate) struct Settlement {
    /// Documents that failed, to try again later.
    pub failures: Vec<Failure>,
    /// Ids in sync again (or deliberately left alone): their recorded failures go.
    pub resolved: Vec<Uuid>,
    /// Synced versions to record.
    pub records: Vec<Record>,
    /// Synced versions held at other store versions.
    pub refreshes: Vec<(Uuid, Synced)>,
    /// Ids neither side holds any more.
    pub forgotten: Vec<Uuid>,
}

impl State {
    /// Creates the state tables when missing and loads the checkpoint and the failures. The
    /// tables are created (and an earlier version's ledger copied) even in a dry run: that
    /// changes no document and no checkpoint.
    pub async fn open(
        cql: &Cql,
        keyspace: &str,
        sync: &str,
        unit: &str,
        options: StateOptions,
    ) -> Result<Opened, CassandraError> {
        let checkpoints = CheckpointStore::open(cql, keyspace, unit).await?;
        let errors =
            ErrorLog::open(cql, keyspace, unit, options.retry_backoff, options.dry_run).await?;
        let (ledger, new_ledger) = Ledger::open(cql, keyspace, sync, options.keep_content).await?;
        let checkpoint = checkpoints.load().await?;
        Ok(Opened {
            state: Self {
                checkpoints,
                errors,
                ledger,
                lease: None,
                epoch: None,
                recent: RecentWrites::new(options.recent_for),
                dry_run: options.dry_run,
            },
            checkpoint,
            new_ledger,
        })
    }

    /// Whether nothing is written.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Whether the ledger keeps the synced contents (the policy merges from them).
    pub fn keeps_content(&self) -> bool {
        self.ledger.keep_content
    }

    /// Saves a checkpoint, if the lease (when there is one) is still this process's and its
    /// epoch still the sync's.
    pub async fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), SyncError> {
        if self.dry_run {
            return Ok(());
        }
        self.confirm_lease().await?;
        match self.checkpoints.save(checkpoint, self.epoch).await? {
            Ok(()) => Ok(()),
            Err(fenced) => Err(self.fenced_out(fenced).await),
        }
    }

    /// Syncs under `lease` from now on: the ledger and the checkpoint are written only while it
    /// holds (see [`lease`]).
    pub fn hold(&mut self, lease: Lease) {
        self.ledger.fence_with(lease.fence());
        self.lease = Some(lease);
        self.epoch = None;
    }

    /// Confirms the lease (renewed when due), and raises the epoch once it is taken; an error
    /// when another process took it, or held it meanwhile.
    pub async fn confirm_lease(&mut self) -> Result<(), SyncError> {
        let Some(lease) = &mut self.lease else {
            return Ok(());
        };
        let retaken = match lease.confirm().await? {
            Confirmation::Held => false,
            Confirmation::Retaken => true,
            Confirmation::Lost(holder) => {
                return Err(SyncError::LeaseLost {
                    table: lease.table().to_string(),
                    holder: holder.to_string(),
                });
            }
        };
        if self.epoch.is_some() && !retaken {
            return Ok(());
        }
        match self.checkpoints.take_epoch(self.epoch).await? {
            Ok(epoch) => {
                tracing::debug!("this process syncs {} in epoch {epoch}", lease.table());
                self.epoch = Some(epoch);
                Ok(())
            }
            Err(fenced) => Err(self.fenced_out(fenced).await),
        }
    }

    /// The error of a process whose epoch another one raised: it gives the lease up (it holds
    /// it again, perhaps, but its reads are older than the other's writes) and stops.
    async fn fenced_out(&mut self, fenced: checkpoint::Fenced) -> SyncError {
        let table = self
            .lease
            .as_ref()
            .map(|lease| lease.table().to_string())
            .unwrap_or_default();
        self.release_lease().await;
        let epoch = fenced.now.map_or("none".to_string(), |e| e.to_string());
        SyncError::LeaseLost {
            table,
            holder: format!("another process raised the epoch to {epoch}"),
        }
    }

    /// How often the lease, if any, is renewed.
    pub fn lease_renewal(&self) -> Option<std::time::Duration> {
        self.lease.as_ref().map(Lease::renewal)
    }

    /// Gives the lease up, if held.
    pub async fn release_lease(&mut self) {
        if let Some(lease) = &mut self.lease {
            lease.release().await;
        }
    }

    /// How many documents are recorded as failed.
    pub fn failures(&self) -> usize {
        self.errors.len()
    }

    /// The failed ids due for another attempt at `now` (at most `limit`).
    pub fn due(&self, now: DateTime<Utc>, limit: usize) -> Vec<Uuid> {
        self.errors.due(now, limit)
    }

    /// Records that a part of the Elasticsearch feed could not be read; returns whether it is a
    /// new failure (its first attempt).
    pub async fn fail_feed(
        &mut self,
        failure: &FeedFailure,
        now: DateTime<Utc>,
    ) -> Result<bool, CassandraError> {
        let location = format!("{FEED_PREFIX}{}", failure.location);
        let failure = Failure {
            id: None,
            location: location.clone(),
            side: "elasticsearch".to_string(),
            reason: failure.reason.clone(),
        };
        self.errors.record(&[failure], now).await?;
        Ok(self.errors.attempts(&location) == 1)
    }

    /// The parts of the Elasticsearch feed that failed and wait for their next attempt.
    pub fn feed_held(&self, now: DateTime<Utc>) -> BTreeSet<String> {
        self.errors.feed_parts(now, true)
    }

    /// After a whole pass of the Elasticsearch feed: the parts recorded as failed that were
    /// tried again (not `held`) and did not fail (`failed`) are read again.
    pub async fn feed_recovered(
        &mut self,
        failed: &BTreeSet<String>,
        held: &BTreeSet<String>,
        now: DateTime<Utc>,
    ) -> Result<(), CassandraError> {
        let mut recovered = Vec::new();
        for part in self.errors.feed_parts(now, false) {
            if !failed.contains(&part) && !held.contains(&part) {
                tracing::info!("Elasticsearch's {part} is read again");
                recovered.push(format!("{FEED_PREFIX}{part}"));
            }
        }
        self.errors.resolve(&recovered).await
    }

    /// The ledger entries of the ids that have one.
    pub async fn ledger(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, LedgerEntry>, CassandraError> {
        self.ledger.get(ids).await
    }

    /// Whether `id`'s Cassandra row, written at `written_at`, is the one this process recorded
    /// lately as synced: unchanged since (see [`recent`]).
    pub fn synced_lately(&self, id: Uuid, written_at: Option<i64>) -> bool {
        self.recent.holds(id, written_at)
    }

    /// The synced content of the ids whose entry keeps it for the digest given (only for a
    /// policy that merges from it; empty otherwise).
    pub async fn bases(
        &self,
        ids: &[(Uuid, Digest)],
    ) -> Result<HashMap<Uuid, serde_json::Value>, CassandraError> {
        self.ledger.base(ids).await
    }

    /// The ledger entries whose token is in `[from, to]`, with their tokens.
    pub async fn ledger_range(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, LedgerEntry)>, CassandraError> {
        self.ledger.range(from, to).await
    }

    /// Records the writes about to be made, before they are (see [`ledger`]), while the lease
    /// (if any) holds.
    pub async fn intend(&mut self, intents: &[(Uuid, Intent)]) -> Result<(), SyncError> {
        if self.dry_run || intents.is_empty() {
            return Ok(());
        }
        self.confirm_lease().await?;
        Ok(self.ledger.intend(intents).await?)
    }

    /// Records what a batch leaves, all at once: the failures (each an attempt more), the ids in
    /// sync again, and the ledger's records, refreshes and forgotten ids, while the lease (if
    /// any) holds. The intents of writes that did not all apply stay (see [`ledger`]).
    pub async fn settle(
        &mut self,
        settlement: Settlement,
        now: DateTime<Utc>,
    ) -> Result<(), SyncError> {
        if !self.dry_run {
            self.confirm_lease().await?;
        }
        let Settlement {
            failures,
            resolved,
            records,
            refreshes,
            forgotten,
        } = settlement;
        self.errors.record(&failures, now).await?;
        let resolved: Vec<String> = resolved
            .iter()
            .map(Uuid::to_string)
            .filter(|location| self.errors.holds(location))
            .collect();
        let ledger = &self.ledger;
        let write_ledger = async {
            if self.dry_run {
                return Ok(());
            }
            let (a, b, c) = tokio::join!(
                ledger.record(&records),
                ledger.refresh(&refreshes),
                ledger.forget(&forgotten),
            );
            a.and(b).and(c)
        };
        let (a, b) = tokio::join!(self.errors.resolve(&resolved), write_ledger);
        a.and(b)?;
        if !self.dry_run {
            let now_ms = now.timestamp_millis();
            for record in &records {
                let written_at = record.cassandra_written_at;
                let timestamp = record.version.timestamp;
                self.recent.note(record.id, written_at, timestamp, now_ms);
            }
            for (id, synced) in &refreshes {
                let (written_at, timestamp) = (synced.cassandra_written_at, Some(synced.timestamp));
                self.recent.note(*id, written_at, timestamp, now_ms);
            }
            for id in forgotten
                .iter()
                .copied()
                .chain(failures.iter().filter_map(|f| f.id))
            {
                self.recent.forget(id);
            }
        }
        Ok(())
    }
}

/// What `essync status` shows of a sync: how many ranges the table is synced in, who syncs
/// each and how far its checkpoint is, and the failures.
#[derive(Debug, Clone)]
pub struct Status {
    /// The ranges, in ring order (one, the whole ring, unless processes share the table).
    pub ranges: Vec<RangeStatus>,
    /// The processes sharing the table by range (none when it is synced whole).
    pub members: Vec<Holder>,
    /// The documents (and parts of the feed) recorded as failed, in every range.
    pub failures: Vec<ErrorEntry>,
}

/// One range of a [`Status`].
#[derive(Debug, Clone)]
pub struct RangeStatus {
    /// The range.
    pub range: crate::cassandra::TokenRange,
    /// The process holding its lease, if any.
    pub holder: Option<Holder>,
    /// Its saved checkpoint, if any.
    pub checkpoint: Option<checkpoint::Saved>,
}

/// The status of the sync of `cassandra`'s table (its state tables are created when missing).
/// The range count shown is the one of the leases held now, else the one whose checkpoint was
/// saved last.
pub async fn status(
    cassandra: &crate::cassandra::CassandraStore,
) -> Result<Status, CassandraError> {
    use crate::cassandra::TokenRange;
    use crate::sync::ranges;
    let config = cassandra.config();
    let cql = cassandra.cql();
    // Opening a lease creates the lease table.
    Lease::open(
        cql,
        &config.keyspace,
        &config.table,
        TokenRange::WHOLE,
        LEASE_TTL,
    )
    .await?;
    CheckpointStore::open(cql, &config.keyspace, &config.table).await?;
    errors::ensure_table(cql, &config.keyspace).await?;
    let leases = ranges::table_leases(cassandra).await?;
    let saved = ranges::saved_checkpoints(cql, &config.keyspace, &config.table).await?;
    let last_saved = saved
        .iter()
        .max_by_key(|(_, at)| at.unwrap_or_default())
        .map(|(range, _)| range.count);
    let count = leases
        .ranges
        .first()
        .map(|(range, _)| range.count)
        .or(last_saved)
        .unwrap_or(1);
    let mut status = Status {
        ranges: Vec::new(),
        members: if count > 1 {
            leases.members
        } else {
            Vec::new()
        },
        failures: Vec::new(),
    };
    for range in TokenRange::parts(count) {
        let unit = ranges::unit_name(&config.table, range);
        let checkpoints = CheckpointStore::open(cql, &config.keyspace, &unit).await?;
        status.ranges.push(RangeStatus {
            range,
            holder: leases
                .ranges
                .iter()
                .find(|(held, _)| *held == range)
                .map(|(_, holder)| holder.clone()),
            checkpoint: checkpoints.load_saved().await?,
        });
        status
            .failures
            .extend(errors::list(cql, &config.keyspace, &unit).await?);
    }
    Ok(status)
}

/// The names the failures of `cassandra`'s table are kept under: the whole table's, and every
/// range's that ever saved a checkpoint (of any range count).
async fn failure_units(
    cassandra: &crate::cassandra::CassandraStore,
) -> Result<Vec<String>, CassandraError> {
    let config = cassandra.config();
    let cql = cassandra.cql();
    errors::ensure_table(cql, &config.keyspace).await?;
    CheckpointStore::open(cql, &config.keyspace, &config.table).await?;
    let saved =
        crate::sync::ranges::saved_checkpoints(cql, &config.keyspace, &config.table).await?;
    let mut units = vec![config.table.clone()];
    units.extend(
        saved
            .keys()
            .filter(|range| !range.is_whole())
            .map(|range| crate::sync::ranges::unit_name(&config.table, *range)),
    );
    Ok(units)
}

/// The documents recorded as failed by the sync of `cassandra`'s table, in every range, what
/// `essync errors` lists (the table of failures is created when missing).
pub async fn recorded_failures(
    cassandra: &crate::cassandra::CassandraStore,
) -> Result<Vec<ErrorEntry>, CassandraError> {
    let mut entries = Vec::new();
    for unit in failure_units(cassandra).await? {
        entries.extend(errors::list(cassandra.cql(), &cassandra.config().keyspace, &unit).await?);
    }
    Ok(entries)
}

/// Forgets every failure recorded by the sync of `cassandra`'s table, in every range.
pub async fn clear_failures(
    cassandra: &crate::cassandra::CassandraStore,
) -> Result<(), CassandraError> {
    for unit in failure_units(cassandra).await? {
        errors::clear(cassandra.cql(), &cassandra.config().keyspace, &unit).await?;
    }
    Ok(())
}
