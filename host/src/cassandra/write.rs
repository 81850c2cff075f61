//! Race-safe writes: every write is a lightweight transaction (compare-and-set) against the row
//! the writer read.
//!
//! A write replaces exactly the version it was decided on, or nothing: `INSERT ... IF NOT
//! EXISTS` when the row was absent, `UPDATE ... IF index_ = ? AND type = ? AND timestamp = ? AND
//! content = ?` with the values read when it was there. A row changed in between (by a user,
//! another essync, anyone) makes the write not apply, and it is reported as
//! [`WriteOutcome::ChangedUnderneath`].
//!
//! Why not plain writes `USING TIMESTAMP` derived from the document's timestamp: Cassandra
//! resolves cells by write time, and writers that know nothing of essync write at the current
//! time whatever their `timestamp` column says. A row a user backdated (or one deleted, whose
//! tombstone is recent) would silently shadow essync's later decision, and the two stores would
//! stay apart with no error anywhere. A compare-and-set says whether it applied.

use futures::StreamExt;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};

use super::CassandraError;
use super::convert::{CassandraVersion, to_columns};
use crate::Document;
use crate::store::WriteOutcome;

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
}

/// The prepared statements of the write path.
pub(crate) struct WriteStatements {
    pub insert_if_absent: PreparedStatement,
    pub update_if_unchanged: PreparedStatement,
}

impl WriteStatements {
    pub async fn prepare(session: &Session, table: &str) -> Result<Self, CassandraError> {
        let prepare = |cql: String| async move {
            session
                .prepare(cql)
                .await
                .map_err(|e| CassandraError::Request {
                    action: format!("to prepare the writes to {table}"),
                    reason: e.to_string(),
                    transient: false,
                })
        };
        Ok(Self {
            insert_if_absent: prepare(format!(
                "INSERT INTO {table} (id, index_, type, timestamp, content) \
                 VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"
            ))
            .await?,
            update_if_unchanged: prepare(format!(
                "UPDATE {table} SET index_ = ?, type = ?, timestamp = ?, content = ? WHERE id = ? \
                 IF index_ = ? AND type = ? AND timestamp = ? AND content = ?"
            ))
            .await?,
        })
    }
}

pub(crate) async fn write_batch(
    session: &Session,
    statements: &WriteStatements,
    concurrency: usize,
    writes: &[CassandraWrite],
) -> Result<Vec<WriteOutcome>, CassandraError> {
    // Futures built first, then polled: keeps the stream free of closures over borrowed items,
    // which would make the whole future not `Send` for every lifetime.
    let pending: Vec<_> = writes
        .iter()
        .map(|write| write_one(session, statements, write))
        .collect();
    let results: Vec<Result<WriteOutcome, CassandraError>> = futures::stream::iter(pending)
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut outcomes = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(outcome) => outcomes.push(outcome),
            // The cluster is unusable: fail the batch rather than report every row.
            Err(e @ CassandraError::Unreachable { .. }) => return Err(e),
            Err(e) if e.is_transient() => outcomes.push(WriteOutcome::Failed(e.to_string())),
            Err(e) => outcomes.push(WriteOutcome::Rejected(e.to_string())),
        }
    }
    Ok(outcomes)
}

async fn write_one(
    session: &Session,
    statements: &WriteStatements,
    write: &CassandraWrite,
) -> Result<WriteOutcome, CassandraError> {
    let columns = match to_columns(&write.document) {
        Ok(columns) => columns,
        Err(reason) => return Ok(WriteOutcome::Rejected(reason)),
    };
    let id = write.document.id;
    let action = format!("to write row {id}");
    let result = match &write.expected {
        CassandraExpected::Absent => {
            session
                .execute_unpaged(
                    &statements.insert_if_absent,
                    (
                        id,
                        &columns.index,
                        &columns.doc_type,
                        columns.timestamp,
                        &columns.content,
                    ),
                )
                .await
        }
        CassandraExpected::Row(seen) => {
            session
                .execute_unpaged(
                    &statements.update_if_unchanged,
                    (
                        &columns.index,
                        &columns.doc_type,
                        columns.timestamp,
                        &columns.content,
                        id,
                        &seen.index,
                        &seen.doc_type,
                        seen.timestamp.map(scylla::value::CqlTimestamp),
                        &seen.content,
                    ),
                )
                .await
        }
    }
    .map_err(|e| classify(&action, &e))?;
    let rows = result
        .into_rows_result()
        .map_err(|e| CassandraError::protocol(&action, e))?;
    let applied = rows
        .rows::<Row>()
        .map_err(|e| CassandraError::protocol(&action, e))?
        .next()
        .and_then(Result::ok)
        .and_then(|row| row.columns.into_iter().next().flatten())
        .map(|value| matches!(value, CqlValue::Boolean(true)))
        .ok_or_else(|| CassandraError::protocol(&action, "no [applied] column in the answer"))?;
    Ok(match (applied, &write.expected) {
        (true, CassandraExpected::Absent) => WriteOutcome::Inserted,
        (true, CassandraExpected::Row(_)) => WriteOutcome::Replaced,
        (false, _) => WriteOutcome::ChangedUnderneath,
    })
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
