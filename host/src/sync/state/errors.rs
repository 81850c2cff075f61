//! Documents that could not be synced: kept in Cassandra (`KEYSPACE.essync_errors`), retried
//! with backoff, listed by `essync errors KEYSPACE:TABLE`, never dropped silently.
//!
//! An entry is keyed by the document's id when it has one (then it is retried: each round looks
//! both versions up again and decides afresh) or by its location otherwise (an Elasticsearch
//! `_id` that is not a uuid cannot be synced until someone fixes it). An entry disappears when
//! its id is in sync again.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use uuid::Uuid;

use crate::cassandra::cql::Cql;
use crate::cassandra::{CassandraError, create_table};
use crate::store::{BadDocument, Side};

/// The table, in the synced keyspace, that holds the entries.
pub const ERROR_TABLE: &str = "essync_errors";

/// The prefix of the locations of the parts of Elasticsearch's change feed that could not be
/// read (`elasticsearch:index INDEX` or `elasticsearch:index INDEX, shard N`).
pub const FEED_PREFIX: &str = "elasticsearch:index ";

/// The longest wait between two attempts at one document.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// A failure to record: the document's id when it has one, else where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The id, when the document has a uuid id.
    pub id: Option<Uuid>,
    /// The id's text, or where the document is (`elasticsearch:INDEX/_ID`, a feed part).
    pub location: String,
    /// The side the problem is on.
    pub side: String,
    /// Why.
    pub reason: String,
}

impl Failure {
    /// A failure of the document `id` on `side`.
    pub fn of(id: Uuid, side: &str, reason: impl Into<String>) -> Self {
        Self {
            id: Some(id),
            location: id.to_string(),
            side: side.to_string(),
            reason: reason.into(),
        }
    }

    /// A document a store cannot sync.
    pub fn bad(bad: &BadDocument) -> Self {
        let location = match (bad.side, bad.id) {
            (_, Some(id)) => id.to_string(),
            (Side::Elasticsearch, None) => format!("elasticsearch:{}", bad.location),
            (Side::Cassandra, None) => format!("cassandra:{}", bad.location),
        };
        Self {
            id: bad.id,
            location,
            side: bad.side.name().to_string(),
            reason: bad.reason.clone(),
        }
    }
}

/// One document that could not be synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorEntry {
    /// The id, when the document has a uuid id.
    pub id: Option<Uuid>,
    /// Where it is: the id, or `elasticsearch:INDEX/_ID` when the id is not a uuid.
    pub location: String,
    /// The side the problem is on.
    pub side: String,
    /// The last reason.
    pub reason: String,
    /// How many rounds it failed in.
    pub attempts: i32,
    /// When it first failed.
    pub first_seen: DateTime<Utc>,
    /// When it last failed.
    pub last_seen: DateTime<Utc>,
    /// When it is tried again.
    pub next_attempt: DateTime<Utc>,
}

/// The entries of one sync, loaded at start and written through.
pub(crate) struct ErrorLog {
    cql: Cql,
    sync: String,
    insert: PreparedStatement,
    delete: PreparedStatement,
    entries: HashMap<String, ErrorEntry>,
    /// The first wait after a failure (the period); doubles with each attempt.
    base_backoff: Duration,
    dry_run: bool,
}

impl ErrorLog {
    /// Creates the table when missing and loads the entries of this sync.
    pub async fn open(
        cql: &Cql,
        keyspace: &str,
        sync: &str,
        base_backoff: Duration,
        dry_run: bool,
    ) -> Result<Self, CassandraError> {
        ensure_table(cql, keyspace).await?;
        let entries = list(cql, keyspace, sync)
            .await?
            .into_iter()
            .map(|e| (e.location.clone(), e))
            .collect();
        let table = format!("{keyspace}.{ERROR_TABLE}");
        let action = format!("to prepare the statements of {table}");
        Ok(Self {
            insert: cql
                .prepare(
                    "errors",
                    format!(
                        "INSERT INTO {table} (sync, location, id, side, reason, attempts, \
                         first_seen, last_seen, next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    ),
                    &action,
                )
                .await?,
            delete: cql
                .prepare(
                    "errors",
                    format!("DELETE FROM {table} WHERE sync = ? AND location = ?"),
                    &action,
                )
                .await?,
            cql: cql.clone(),
            sync: sync.to_string(),
            entries,
            base_backoff: base_backoff.max(Duration::from_secs(1)),
            dry_run,
        })
    }

    /// How many documents are recorded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The ids due for another attempt at `now` (at most `limit`).
    pub fn due(&self, now: DateTime<Utc>, limit: usize) -> Vec<Uuid> {
        let mut due: Vec<&ErrorEntry> = self
            .entries
            .values()
            .filter(|e| e.id.is_some() && e.next_attempt <= now)
            .collect();
        due.sort_by_key(|e| e.next_attempt);
        due.into_iter().filter_map(|e| e.id).take(limit).collect()
    }

    /// Records failures, each an attempt more than the last of its document (or location), and
    /// the next attempt after a backoff that doubles with each.
    pub async fn record(
        &mut self,
        failures: &[Failure],
        now: DateTime<Utc>,
    ) -> Result<(), CassandraError> {
        let mut written = Vec::with_capacity(failures.len());
        for failure in failures {
            let entry = self
                .entries
                .entry(failure.location.clone())
                .or_insert_with(|| ErrorEntry {
                    id: failure.id,
                    location: failure.location.clone(),
                    side: failure.side.clone(),
                    reason: failure.reason.clone(),
                    attempts: 0,
                    first_seen: now,
                    last_seen: now,
                    next_attempt: now,
                });
            entry.attempts = entry.attempts.saturating_add(1);
            entry.side = failure.side.clone();
            entry.reason = failure.reason.clone();
            entry.last_seen = now;
            let wait = crate::sync::backoff(
                self.base_backoff,
                entry.attempts.max(1) as u32 - 1,
                MAX_BACKOFF,
            );
            entry.next_attempt =
                now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero());
            written.push(entry.clone());
        }
        if self.dry_run {
            return Ok(());
        }
        let time = |t: DateTime<Utc>| CqlTimestamp(t.timestamp_millis());
        let this = &*self;
        crate::store::all_of(written.iter().map(|entry| {
            let action = format!("to record the failure of {}", entry.location);
            let values = (
                &self.sync,
                &entry.location,
                entry.id,
                &entry.side,
                &entry.reason,
                entry.attempts,
                time(entry.first_seen),
                time(entry.last_seen),
                time(entry.next_attempt),
            );
            async move { this.cql.execute(&this.insert, values, &action).await }
        }))
        .await
        .map(drop)
    }

    /// The parts of the Elasticsearch feed (their locations, without [`FEED_PREFIX`]) recorded
    /// as failed: `waiting` only those whose next attempt is after `now`, otherwise all.
    pub fn feed_parts(&self, now: DateTime<Utc>, waiting: bool) -> BTreeSet<String> {
        self.entries
            .values()
            .filter(|e| e.id.is_none() && (!waiting || e.next_attempt > now))
            .filter_map(|e| e.location.strip_prefix(FEED_PREFIX).map(str::to_string))
            .collect()
    }

    /// How many times a failure recorded without an id was seen.
    pub fn attempts(&self, location: &str) -> i32 {
        self.entries.get(location).map_or(0, |e| e.attempts)
    }

    /// Forgets the failures recorded at `locations` (an id's text, or a location without id):
    /// in sync, or deliberately left alone, now.
    pub async fn resolve(&mut self, locations: &[String]) -> Result<(), CassandraError> {
        let known: Vec<&String> = locations
            .iter()
            .filter(|location| self.entries.remove(location.as_str()).is_some())
            .collect();
        if self.dry_run || known.is_empty() {
            return Ok(());
        }
        let this = &*self;
        crate::store::all_of(known.into_iter().map(|location| {
            let action = format!("to clear the failure of {location}");
            async move {
                this.cql
                    .execute(&this.delete, (&this.sync, location), &action)
                    .await
            }
        }))
        .await
        .map(drop)
    }

    /// Whether a failure is recorded at `location`.
    pub fn holds(&self, location: &str) -> bool {
        self.entries.contains_key(location)
    }
}

/// Creates the table of failures in `keyspace` when missing.
pub(crate) async fn ensure_table(cql: &Cql, keyspace: &str) -> Result<(), CassandraError> {
    let table = format!("{keyspace}.{ERROR_TABLE}");
    cql.change_schema(
        create_table(
            keyspace,
            ERROR_TABLE,
            "sync text, location text, id uuid, side text, reason text, attempts int, \
             first_seen timestamp, last_seen timestamp, next_attempt timestamp, \
             PRIMARY KEY ((sync), location)",
        ),
        &format!("to create {table}"),
    )
    .await?;
    Ok(())
}

/// The recorded failures of a sync.
pub(crate) async fn list(
    cql: &Cql,
    keyspace: &str,
    sync: &str,
) -> Result<Vec<ErrorEntry>, CassandraError> {
    let action = format!("to read {keyspace}.{ERROR_TABLE}");
    let mut statement = cql
        .prepare(
            "errors",
            format!(
                "SELECT location, id, side, reason, attempts, first_seen, last_seen, \
                 next_attempt FROM {keyspace}.{ERROR_TABLE} WHERE sync = ?"
            ),
            &action,
        )
        .await?;
    statement.set_page_size(1000);
    let pager = cql.iter(statement, (sync,), &action).await?;
    type Row = (
        String,
        Option<Uuid>,
        Option<String>,
        Option<String>,
        Option<i32>,
        Option<CqlTimestamp>,
        Option<CqlTimestamp>,
        Option<CqlTimestamp>,
    );
    let mut rows = pager
        .rows_stream::<Row>()
        .map_err(|e| CassandraError::protocol(&action, e))?;
    let time = |t: Option<CqlTimestamp>| {
        t.and_then(|t| DateTime::from_timestamp_millis(t.0))
            .unwrap_or_default()
    };
    let mut entries = Vec::new();
    use futures::StreamExt;
    while let Some(row) = rows.next().await {
        let (location, id, side, reason, attempts, first, last, next) =
            row.map_err(|e| CassandraError::protocol(&action, e))?;
        entries.push(ErrorEntry {
            id,
            location,
            side: side.unwrap_or_default(),
            reason: reason.unwrap_or_default(),
            attempts: attempts.unwrap_or(0),
            first_seen: time(first),
            last_seen: time(last),
            next_attempt: time(next),
        });
    }
    Ok(entries)
}

/// Deletes every recorded failure of a sync.
pub(crate) async fn clear(cql: &Cql, keyspace: &str, sync: &str) -> Result<(), CassandraError> {
    let table = format!("{keyspace}.{ERROR_TABLE}");
    cql.query(
        "errors",
        format!("DELETE FROM {table} WHERE sync = ?"),
        (sync,),
        &format!("to clear {table}"),
    )
    .await?;
    Ok(())
}
