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
use scylla::client::session::Session;
use scylla::value::CqlTimestamp;
use uuid::Uuid;

use crate::cassandra::CassandraError;
use crate::store::{BadDocument, Side};

/// The table, in the synced keyspace, that holds the entries.
pub const ERROR_TABLE: &str = "essync_errors";

/// The prefix of the locations of the parts of Elasticsearch's change feed that could not be
/// read (`elasticsearch:index INDEX` or `elasticsearch:index INDEX, shard N`).
pub const FEED_PREFIX: &str = "elasticsearch:index ";

/// The longest wait between two attempts at one document.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

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
    keyspace: String,
    sync: String,
    entries: HashMap<String, ErrorEntry>,
    /// The first wait after a failure (the period); doubles with each attempt.
    base_backoff: Duration,
    dry_run: bool,
}

impl ErrorLog {
    /// Creates the table when missing and loads the entries of this sync.
    pub async fn open(
        session: &Session,
        keyspace: &str,
        sync: &str,
        base_backoff: Duration,
        dry_run: bool,
    ) -> Result<Self, CassandraError> {
        ensure_table(session, keyspace).await?;
        let entries = list(session, keyspace, sync)
            .await?
            .into_iter()
            .map(|e| (e.location.clone(), e))
            .collect();
        Ok(Self {
            keyspace: keyspace.to_string(),
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

    /// Records a failure of the document `id` (or at `location` when it has no uuid id).
    pub async fn record(
        &mut self,
        session: &Session,
        id: Option<Uuid>,
        location: &str,
        side: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CassandraError> {
        let key = id
            .map(|id| id.to_string())
            .unwrap_or_else(|| location.to_string());
        let entry = self
            .entries
            .entry(key.clone())
            .or_insert_with(|| ErrorEntry {
                id,
                location: key.clone(),
                side: side.to_string(),
                reason: reason.to_string(),
                attempts: 0,
                first_seen: now,
                last_seen: now,
                next_attempt: now,
            });
        entry.attempts = entry.attempts.saturating_add(1);
        entry.side = side.to_string();
        entry.reason = reason.to_string();
        entry.last_seen = now;
        let wait = self
            .base_backoff
            .saturating_mul(1u32 << entry.attempts.clamp(1, 12).saturating_sub(1))
            .min(MAX_BACKOFF);
        entry.next_attempt =
            now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero());
        if self.dry_run {
            return Ok(());
        }
        let entry = entry.clone();
        let action = format!("to record the failure of {key}");
        session
            .query_unpaged(
                format!(
                    "INSERT INTO {}.{ERROR_TABLE} (sync, location, id, side, reason, attempts, \
                     first_seen, last_seen, next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    self.keyspace
                ),
                (
                    &self.sync,
                    &entry.location,
                    entry.id,
                    &entry.side,
                    &entry.reason,
                    entry.attempts,
                    CqlTimestamp(entry.first_seen.timestamp_millis()),
                    CqlTimestamp(entry.last_seen.timestamp_millis()),
                    CqlTimestamp(entry.next_attempt.timestamp_millis()),
                ),
            )
            .await
            .map_err(|e| CassandraError::execution(&action, &e))?;
        Ok(())
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

    /// Forgets a failure recorded without an id, by its location.
    pub async fn resolve_location(
        &mut self,
        session: &Session,
        location: &str,
    ) -> Result<(), CassandraError> {
        if self.entries.remove(location).is_none() || self.dry_run {
            return Ok(());
        }
        session
            .query_unpaged(
                format!(
                    "DELETE FROM {}.{ERROR_TABLE} WHERE sync = ? AND location = ?",
                    self.keyspace
                ),
                (&self.sync, location),
            )
            .await
            .map_err(|e| {
                CassandraError::execution(format!("to clear the failure of {location}"), &e)
            })?;
        Ok(())
    }

    /// How many times a failure recorded without an id was seen.
    pub fn attempts(&self, location: &str) -> i32 {
        self.entries.get(location).map_or(0, |e| e.attempts)
    }

    /// Records a document a store cannot sync.
    pub async fn record_bad(
        &mut self,
        session: &Session,
        bad: &BadDocument,
        now: DateTime<Utc>,
    ) -> Result<(), CassandraError> {
        let location = match (bad.side, bad.id) {
            (_, Some(id)) => id.to_string(),
            (Side::Elasticsearch, None) => format!("elasticsearch:{}", bad.location),
            (Side::Cassandra, None) => format!("cassandra:{}", bad.location),
        };
        self.record(
            session,
            bad.id,
            &location,
            bad.side.name(),
            &bad.reason,
            now,
        )
        .await
    }

    /// Forgets an id: it is in sync (or deliberately left alone) now.
    pub async fn resolve(&mut self, session: &Session, id: &Uuid) -> Result<(), CassandraError> {
        let key = id.to_string();
        if self.entries.remove(&key).is_none() || self.dry_run {
            return Ok(());
        }
        session
            .query_unpaged(
                format!(
                    "DELETE FROM {}.{ERROR_TABLE} WHERE sync = ? AND location = ?",
                    self.keyspace
                ),
                (&self.sync, key),
            )
            .await
            .map_err(|e| CassandraError::execution(format!("to clear the failure of {id}"), &e))?;
        Ok(())
    }
}

/// Creates the table of failures in `keyspace` when missing.
pub async fn ensure_table(session: &Session, keyspace: &str) -> Result<(), CassandraError> {
    session
        .query_unpaged(
            format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.{ERROR_TABLE} (sync text, location text, \
                 id uuid, side text, reason text, attempts int, first_seen timestamp, \
                 last_seen timestamp, next_attempt timestamp, PRIMARY KEY ((sync), location))"
            ),
            (),
        )
        .await
        .map_err(|e| {
            CassandraError::execution(format!("to create {keyspace}.{ERROR_TABLE}"), &e)
        })?;
    Ok(())
}

/// The recorded failures of a sync.
pub async fn list(
    session: &Session,
    keyspace: &str,
    sync: &str,
) -> Result<Vec<ErrorEntry>, CassandraError> {
    let action = format!("to read {keyspace}.{ERROR_TABLE}");
    let mut statement = scylla::statement::Statement::new(format!(
        "SELECT location, id, side, reason, attempts, first_seen, last_seen, next_attempt \
         FROM {keyspace}.{ERROR_TABLE} WHERE sync = ?"
    ));
    statement.set_page_size(1000);
    let pager = session
        .query_iter(statement, (sync,))
        .await
        .map_err(|e| CassandraError::pager(&action, &e))?;
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
pub async fn clear(session: &Session, keyspace: &str, sync: &str) -> Result<(), CassandraError> {
    session
        .query_unpaged(
            format!("DELETE FROM {keyspace}.{ERROR_TABLE} WHERE sync = ?"),
            (sync,),
        )
        .await
        .map_err(|e| CassandraError::execution(format!("to clear {keyspace}.{ERROR_TABLE}"), &e))?;
    Ok(())
}
