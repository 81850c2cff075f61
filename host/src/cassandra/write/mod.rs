//! Race-safe writes: a write replaces exactly the row its writer read, or loses to whatever was
//! written since. Two ways to get there, chosen by [`WriteMode`]:
//!
//! - **Fenced** (the default): the write carries `USING TIMESTAMP` one microsecond after the
//!   newest write time of the row read (`W + 1`), or, for a row that was absent, the time it
//!   was read. Cassandra keeps, cell by cell, the value with the greatest write time: any write
//!   made after the read (by an application, a person, anyone whose clock is not behind the
//!   row's last writer) carries a later time and wins, in whatever order the two arrive. A
//!   delete is fenced the same way. Then the rows written over a row read, and the rows
//!   deleted, are read back (their write times only, many per request): a row some other
//!   writer wrote between essync's read and its write (a write time after the fence but before
//!   essync sent its own) is reported as [`WriteOutcome::ChangedUnderneath`], as a transaction
//!   would have; a write made after essync's is a later change, for the next round. A row
//!   created where none was read is not read back: its fence is the time it was read absent,
//!   so a row another writer wrote since carries a later time and wins, and the creation is
//!   ordered before that write, as if it had landed first; the other writer's row is then a
//!   later change like any other (a backfill is made of creations, and their read-backs were a
//!   tenth of the rows it read and wrote in Cassandra). Plain writes go at the pace of the cluster, and mix
//!   safely with the plain writes applications make.
//! - **Lightweight transactions** (`lwt`): `INSERT ... IF NOT EXISTS`, `UPDATE ... IF index_ = ?
//!   AND type = ? AND timestamp = ? AND content = ?`, `DELETE ... IF ...`: a Paxos round per row
//!   (about six times slower), which says at once whether it applied
//!   ([`WriteOutcome::ChangedUnderneath`] otherwise). Cassandra documents that mixing
//!   lightweight transactions with plain writes on the same data is unsafe.
//!
//! A row written with a time to live keeps it: essync's rewrite carries the seconds it had left
//! (`USING TTL`), so the row still expires when its writer meant it to.
//!
//! Why not `USING TIMESTAMP` derived from the document's own timestamp: writers that know
//! nothing of essync write at their current time whatever their `timestamp` column says, so a
//! row a user backdated would silently shadow essync's later decision. The fence derives from
//! what Cassandra recorded, not from what the document claims.

mod fenced;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlTimestamp, CqlValue, Row};
use uuid::Uuid;

use super::CassandraError;
use super::convert::{CassandraVersion, Columns, to_columns};
use super::cql::Cql;
use crate::Document;
use crate::store::{Applied, WriteOutcome};

/// How essync's writes stay race-safe (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Plain writes fenced by write time (`USING TIMESTAMP`).
    #[default]
    Fenced,
    /// Lightweight transactions (compare-and-set with Paxos).
    Lwt,
}

impl std::fmt::Display for WriteMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteMode::Fenced => "fenced",
            WriteMode::Lwt => "lwt",
        })
    }
}

/// What the writer expects the table to hold for the document's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CassandraExpected {
    /// No row with this id.
    Absent,
    /// Exactly this row.
    Row(CassandraVersion),
}

/// One write: a document and the row it replaces.
#[derive(Debug, Clone)]
pub struct CassandraWrite {
    /// What to write; its timestamp must be set.
    pub document: Document,
    /// What it replaces.
    pub expected: CassandraExpected,
    /// When the expected state was read (a new row is fenced at this time).
    pub read_at: DateTime<Utc>,
}

/// One delete: the id and the row it removes.
#[derive(Debug, Clone)]
pub struct CassandraDelete {
    /// The row's id.
    pub id: Uuid,
    /// The row as read.
    pub expected: CassandraVersion,
}

/// The prepared statements of the write path.
pub(crate) struct WriteStatements {
    mode: WriteMode,
    insert_if_absent: PreparedStatement,
    update_if_unchanged: PreparedStatement,
    delete_if_unchanged: PreparedStatement,
    insert_at: PreparedStatement,
    delete_at: PreparedStatement,
    write_times: PreparedStatement,
}

impl WriteStatements {
    pub(crate) async fn prepare(
        cql: &super::cql::Cql,
        table: &str,
        mode: WriteMode,
    ) -> Result<Self, CassandraError> {
        let action = format!("to prepare the writes to {table}");
        let prepare = |kind: &'static str, statement: String| {
            let action = &action;
            async move { cql.prepare(kind, statement, action).await }
        };
        Ok(Self {
            mode,
            insert_if_absent: prepare("write", format!(
                "INSERT INTO {table} (id, index_, type, timestamp, content) \
                 VALUES (?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?"
            ))
            .await?,
            update_if_unchanged: prepare("write", format!(
                "UPDATE {table} USING TTL ? SET index_ = ?, type = ?, timestamp = ?, content = ? \
                 WHERE id = ? IF index_ = ? AND type = ? AND timestamp = ? AND content = ?"
            ))
            .await?,
            delete_if_unchanged: prepare("delete", format!(
                "DELETE FROM {table} WHERE id = ? \
                 IF index_ = ? AND type = ? AND timestamp = ? AND content = ?"
            ))
            .await?,
            insert_at: prepare("write", format!(
                "INSERT INTO {table} (id, index_, type, timestamp, content) \
                 VALUES (?, ?, ?, ?, ?) USING TTL ? AND TIMESTAMP ?"
            ))
            .await?,
            delete_at: prepare("delete", format!(
                "DELETE FROM {table} USING TIMESTAMP ? WHERE id = ?"
            ))
            .await?,
            write_times: prepare("read_back", format!(
                "SELECT id, writetime(index_), writetime(type), writetime(timestamp), \
                 writetime(content) FROM {table} WHERE id IN ?"
            ))
            .await?,
        })
    }

    pub fn mode(&self) -> WriteMode {
        self.mode
    }
}

/// The write time that fences a write of a row read as `expected` at `read_at`: one
/// microsecond after its newest cell, or the read time for a row that was absent (an old
/// delete's tombstone cannot hide it, a write after the read beats it).
pub(crate) fn fence(expected: Option<&CassandraVersion>, read_at: DateTime<Utc>) -> i64 {
    match expected.and_then(|v| v.written_at) {
        Some(written_at) => written_at.saturating_add(1),
        None => read_at.timestamp_micros(),
    }
}

/// Runs one future per item, `concurrency` at a time, and collects the outcomes in order; an
/// unreachable cluster fails the batch.
async fn run_all<'a, F>(
    pending: Vec<F>,
    concurrency: usize,
) -> Result<Vec<Applied<CassandraVersion>>, CassandraError>
where
    F: std::future::Future<Output = Result<Applied<CassandraVersion>, CassandraError>> + 'a,
{
    let results: Vec<Result<Applied<CassandraVersion>, CassandraError>> =
        futures::stream::iter(pending)
            .buffered(concurrency.max(1))
            .collect()
            .await;
    let mut outcomes = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(outcome) => outcomes.push(outcome),
            // The cluster is unusable: fail the batch rather than report every row.
            Err(e @ CassandraError::Unreachable { .. }) => return Err(e),
            Err(e) if e.is_transient() => {
                outcomes.push(Applied::outcome(WriteOutcome::Failed(e.to_string())))
            }
            Err(e) => outcomes.push(Applied::outcome(WriteOutcome::Rejected(e.to_string()))),
        }
    }
    Ok(outcomes)
}

pub(crate) async fn write_batch(
    cql: &Cql,
    statements: &WriteStatements,
    concurrency: usize,
    writes: &[CassandraWrite],
) -> Result<Vec<Applied<CassandraVersion>>, CassandraError> {
    let session = cql.session();
    if statements.mode == WriteMode::Lwt {
        // Futures built first, then polled: keeps the stream free of closures over borrowed
        // items, which would make the whole future not `Send` for every lifetime.
        let pending: Vec<_> = writes
            .iter()
            .map(|write| write_if_unchanged(session, statements, write))
            .collect();
        return run_all(pending, concurrency).await;
    }
    // A creation is not read back (see the module documentation).
    let checked: Vec<(usize, Uuid)> = writes
        .iter()
        .enumerate()
        .filter(|(_, w)| matches!(w.expected, CassandraExpected::Row(_)))
        .map(|(at, w)| (at, w.document.id))
        .collect();
    let sent = fenced::write(cql, statements, concurrency, writes);
    verified(session, statements, concurrency, &checked, sent).await
}

/// The outcomes of fenced writes or deletes (`sent`, not yet started), those of the rows
/// `checked` (each the position of its outcome, and its id) checked against the write times
/// read back just after (see [`verify`]).
async fn verified(
    session: &Session,
    statements: &WriteStatements,
    concurrency: usize,
    checked: &[(usize, Uuid)],
    sent: impl std::future::Future<Output = Result<Vec<Applied<CassandraVersion>>, CassandraError>>,
) -> Result<Vec<Applied<CassandraVersion>>, CassandraError> {
    let sent_at = Utc::now().timestamp_micros();
    let mut outcomes = sent.await?;
    verify(
        session,
        statements,
        concurrency,
        checked,
        sent_at,
        &mut outcomes,
    )
    .await?;
    Ok(outcomes)
}

/// Reads back the write times of rows just written (or deleted) with fenced writes, those of
/// `checked` (the position of each outcome, and its id): a row another writer wrote before
/// essync sent its write (between essync's read and its write) makes that write
/// [`WriteOutcome::ChangedUnderneath`].
async fn verify(
    session: &Session,
    statements: &WriteStatements,
    concurrency: usize,
    checked: &[(usize, Uuid)],
    sent_at: i64,
    outcomes: &mut [Applied<CassandraVersion>],
) -> Result<(), CassandraError> {
    let ids: Vec<Uuid> = checked.iter().map(|(_, id)| *id).collect();
    let pending: Vec<_> = ids
        .chunks(super::IDS_PER_READ)
        .map(|chunk| async move {
            let action = format!("to read back {} row(s) written", chunk.len());
            let rows = session
                .execute_unpaged(&statements.write_times, (chunk,))
                .await
                .map_err(|e| classify(&action, &e))?
                .into_rows_result()
                .map_err(|e| CassandraError::protocol(&action, e))?;
            type WriteTimes = (Uuid, Option<i64>, Option<i64>, Option<i64>, Option<i64>);
            rows.rows::<WriteTimes>()
                .map_err(|e| CassandraError::protocol(&action, e))?
                .map(|row| {
                    row.map(|(id, a, b, c, d)| (id, [a, b, c, d].into_iter().flatten().max()))
                        .map_err(|e| CassandraError::protocol(&action, e))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect();
    type Found = Result<Vec<(Uuid, Option<i64>)>, CassandraError>;
    let results: Vec<Found> = futures::stream::iter(pending)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut written_at = std::collections::HashMap::with_capacity(ids.len());
    for result in results {
        written_at.extend(result?);
    }
    for (at, id) in checked {
        let Some(applied) = outcomes.get_mut(*at) else {
            continue;
        };
        if !applied.outcome.is_written() {
            continue;
        }
        let fence = applied.version.as_ref().and_then(|v| v.written_at);
        let now = written_at.get(id).copied().flatten();
        let raced = match (applied.outcome.clone(), fence, now) {
            // A delete that left cells: someone wrote the row after essync read it.
            (WriteOutcome::Deleted, _, Some(_)) => true,
            (WriteOutcome::Deleted, _, None) => false,
            // Intact, or overwritten by a write made after essync's (a later change).
            (_, Some(fence), Some(now)) => now != fence && now < sent_at,
            // Gone since: a delete made after essync's write, a later change.
            _ => false,
        };
        if raced {
            *applied = Applied::outcome(WriteOutcome::ChangedUnderneath);
        }
    }
    Ok(())
}

pub(crate) async fn delete_batch(
    cql: &Cql,
    statements: &WriteStatements,
    concurrency: usize,
    deletes: &[CassandraDelete],
) -> Result<Vec<Applied<CassandraVersion>>, CassandraError> {
    let session = cql.session();
    if statements.mode == WriteMode::Lwt {
        let pending: Vec<_> = deletes
            .iter()
            .map(|delete| delete_if_unchanged(session, statements, delete))
            .collect();
        return run_all(pending, concurrency).await;
    }
    let checked: Vec<(usize, Uuid)> = deletes.iter().map(|d| d.id).enumerate().collect();
    let sent = fenced::delete(cql, statements, concurrency, deletes);
    verified(session, statements, concurrency, &checked, sent).await
}

/// The time to live a row had left (0: none), which essync's rewrite keeps.
fn ttl_left(expected: &CassandraExpected) -> i32 {
    match expected {
        CassandraExpected::Row(seen) => seen.ttl.unwrap_or(0).max(0),
        CassandraExpected::Absent => 0,
    }
}

/// The version a write of `columns` left, with the time to live it kept and its write time
/// when known (a transaction's is the server's: unknown here).
fn version_written(columns: Columns, ttl: i32, written_at: Option<i64>) -> CassandraVersion {
    CassandraVersion {
        index: Some(columns.index),
        doc_type: Some(columns.doc_type),
        timestamp: Some(columns.timestamp.0),
        content: Some(columns.content.text().to_string()),
        written_at,
        ttl: (ttl > 0).then_some(ttl),
    }
}

/// What a write that applied did.
fn written(expected: &CassandraExpected) -> WriteOutcome {
    match expected {
        CassandraExpected::Absent => WriteOutcome::Inserted,
        CassandraExpected::Row(_) => WriteOutcome::Replaced,
    }
}

/// A lightweight transaction that writes only over the row read.
async fn write_if_unchanged(
    session: &Session,
    statements: &WriteStatements,
    write: &CassandraWrite,
) -> Result<Applied<CassandraVersion>, CassandraError> {
    let columns = match to_columns(&write.document) {
        Ok(columns) => columns,
        Err(reason) => return Ok(Applied::outcome(WriteOutcome::Rejected(reason))),
    };
    let ttl = ttl_left(&write.expected);
    let action = format!("to write row {}", write.document.id);
    let id = write.document.id;
    let result = match &write.expected {
        CassandraExpected::Absent => {
            let values = (
                id,
                &columns.index,
                &columns.doc_type,
                columns.timestamp,
                columns.content.text(),
                ttl,
            );
            session
                .execute_unpaged(&statements.insert_if_absent, values)
                .await
        }
        CassandraExpected::Row(seen) => {
            let values = (
                ttl,
                &columns.index,
                &columns.doc_type,
                columns.timestamp,
                columns.content.text(),
                id,
                &seen.index,
                &seen.doc_type,
                seen.timestamp.map(CqlTimestamp),
                &seen.content,
            );
            session
                .execute_unpaged(&statements.update_if_unchanged, values)
                .await
        }
    }
    .map_err(|e| classify(&action, &e))?;
    if !was_applied(&action, result)? {
        return Ok(Applied::outcome(WriteOutcome::ChangedUnderneath));
    }
    Ok(Applied {
        outcome: written(&write.expected),
        version: Some(version_written(columns, ttl, None)),
    })
}

async fn delete_if_unchanged(
    session: &Session,
    statements: &WriteStatements,
    delete: &CassandraDelete,
) -> Result<Applied<CassandraVersion>, CassandraError> {
    let id = delete.id;
    let action = format!("to delete row {id}");
    let seen = &delete.expected;
    let result = session
        .execute_unpaged(
            &statements.delete_if_unchanged,
            (
                id,
                &seen.index,
                &seen.doc_type,
                seen.timestamp.map(CqlTimestamp),
                &seen.content,
            ),
        )
        .await
        .map_err(|e| classify(&action, &e))?;
    Ok(Applied::outcome(if was_applied(&action, result)? {
        WriteOutcome::Deleted
    } else {
        WriteOutcome::ChangedUnderneath
    }))
}

/// The `[applied]` column of a lightweight transaction's answer.
pub(crate) fn was_applied(
    action: &str,
    result: scylla::response::query_result::QueryResult,
) -> Result<bool, CassandraError> {
    let rows = result
        .into_rows_result()
        .map_err(|e| CassandraError::protocol(action, e))?;
    rows.rows::<Row>()
        .map_err(|e| CassandraError::protocol(action, e))?
        .next()
        .and_then(Result::ok)
        .and_then(|row| row.columns.into_iter().next().flatten())
        .map(|value| matches!(value, CqlValue::Boolean(true)))
        .ok_or_else(|| CassandraError::protocol(action, "no [applied] column in the answer"))
}

/// A failed write: the cluster unreachable fails the batch, anything else this row.
fn classify(action: &str, error: &scylla::errors::ExecutionError) -> CassandraError {
    use scylla::errors::ExecutionError;
    match error {
        ExecutionError::EmptyPlan | ExecutionError::ConnectionPoolError(_) => {
            CassandraError::Unreachable {
                nodes: "the cluster".to_string(),
                reason: error.to_string(),
            }
        }
        _ => CassandraError::execution(action, error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_is_just_after_the_row_read_or_at_the_read_of_an_absent_one() {
        let read_at = DateTime::from_timestamp_micros(5_000_000).unwrap();
        let row = CassandraVersion {
            index: None,
            doc_type: None,
            timestamp: None,
            content: None,
            written_at: Some(9_000_000),
            ttl: None,
        };
        // A row written in the future (a writer whose clock is ahead) is still beaten.
        assert_eq!(fence(Some(&row), read_at), 9_000_001);
        assert_eq!(fence(None, read_at), 5_000_000);
    }
}
