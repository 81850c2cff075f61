//! Fenced writes and deletes sent together: small rows share unlogged batches, each row with
//! its own write time (`USING TIMESTAMP`), so that a backfill, or a mass delete, costs
//! Cassandra a request per few rows instead of one per row. What a row's outcome means is the
//! module above's.

use chrono::Utc;
use futures::StreamExt;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use uuid::Uuid;

use super::{
    CassandraDelete, CassandraExpected, CassandraWrite, WriteStatements, classify, fence, ttl_left,
    version_written, written,
};
use crate::cassandra::CassandraError;
use crate::cassandra::convert::{CassandraVersion, Columns, to_columns};
use crate::cassandra::cql::Cql;
use crate::store::{Applied, WriteOutcome};

/// Rows whose columns add up to at most this many bytes share an unlogged batch (Cassandra warns
/// of a batch over 5 KiB and refuses one over 50 KiB); a larger row goes alone.
const BATCH_BYTES: usize = 4 * 1024;

/// At most this many rows share a batch (Cassandra warns of an unlogged batch over 10
/// partitions).
const ROWS_PER_BATCH: usize = 10;

/// A fenced write ready to send: its columns, the time to live it keeps, its write time.
struct FencedRow<'a> {
    write: &'a CassandraWrite,
    columns: Columns,
    ttl: i32,
    at: i64,
}

impl<'a> FencedRow<'a> {
    fn of(write: &'a CassandraWrite) -> Result<Self, String> {
        let expected = match &write.expected {
            CassandraExpected::Absent => None,
            CassandraExpected::Row(seen) => Some(seen),
        };
        Ok(Self {
            columns: to_columns(&write.document)?,
            ttl: ttl_left(&write.expected),
            at: fence(expected, write.read_at),
            write,
        })
    }

    /// The values of [`WriteStatements::insert_at`].
    fn values(&self) -> (Uuid, &str, &str, CqlTimestamp, &str, i32, i64) {
        let c = &self.columns;
        let id = self.write.document.id;
        (
            id,
            &c.index,
            &c.doc_type,
            c.timestamp,
            c.content.text(),
            self.ttl,
            self.at,
        )
    }

    /// About what the row weighs in a batch.
    fn size(&self) -> usize {
        let c = &self.columns;
        c.content.text().len() + c.index.len() + c.doc_type.len() + 48
    }

    /// The outcome of the write once applied, with the version it left.
    fn applied(self) -> Applied<CassandraVersion> {
        Applied {
            outcome: written(&self.write.expected),
            version: Some(version_written(self.columns, self.ttl, Some(self.at))),
        }
    }
}

/// Plain writes fenced just after the rows read (see [`fence`]), in unlogged batches of small
/// rows, each row with its own write time; one outcome per write, in order.
pub(super) async fn write(
    cql: &Cql,
    statements: &WriteStatements,
    concurrency: usize,
    writes: &[CassandraWrite],
) -> Result<Vec<Applied<CassandraVersion>>, CassandraError> {
    let mut outcomes = unsent(writes.len());
    let mut rows = Vec::with_capacity(writes.len());
    for (i, write) in writes.iter().enumerate() {
        match FencedRow::of(write) {
            Ok(row) => rows.push((i, row)),
            Err(reason) => outcomes[i] = Applied::outcome(WriteOutcome::Rejected(reason)),
        }
    }
    let groups = groups(rows);
    let values: Vec<Vec<_>> = groups
        .iter()
        .map(|group| {
            let rows = group.iter().map(|(_, row)| row);
            rows.map(|row| (row.write.document.id, row.values()))
                .collect()
        })
        .collect();
    let sent = send_all(cql, &statements.insert_at, "write", &values, concurrency).await;
    for (group, sent) in groups.into_iter().zip(sent) {
        let applied = group.into_iter().map(|(i, row)| (i, row.applied()));
        settle(applied.collect(), sent, &mut outcomes)?;
    }
    Ok(outcomes)
}

/// Deletes fenced just after the rows read (see [`fence`]), [`ROWS_PER_BATCH`] to an unlogged
/// batch, each with its own write time; one outcome per delete, in order.
pub(super) async fn delete(
    cql: &Cql,
    statements: &WriteStatements,
    concurrency: usize,
    deletes: &[CassandraDelete],
) -> Result<Vec<Applied<CassandraVersion>>, CassandraError> {
    let mut outcomes = unsent(deletes.len());
    let now = Utc::now();
    let groups: Vec<Vec<(Uuid, (i64, Uuid))>> = deletes
        .chunks(ROWS_PER_BATCH)
        .map(|chunk| {
            chunk
                .iter()
                .map(|d| (d.id, (fence(Some(&d.expected), now), d.id)))
                .collect()
        })
        .collect();
    let sent = send_all(cql, &statements.delete_at, "delete", &groups, concurrency).await;
    for (first, sent) in (0..deletes.len()).step_by(ROWS_PER_BATCH).zip(sent) {
        let last = (first + ROWS_PER_BATCH).min(deletes.len());
        let applied = (first..last).map(|i| (i, Applied::outcome(WriteOutcome::Deleted)));
        settle(applied.collect(), sent, &mut outcomes)?;
    }
    Ok(outcomes)
}

/// `n` outcomes to fill: each place gets a rejection, or the outcome of its row's group.
fn unsent(n: usize) -> Vec<Applied<CassandraVersion>> {
    vec![Applied::outcome(WriteOutcome::Failed("not sent".to_string())); n]
}

/// What sending each group gave (see [`send_together`]), `concurrency` groups at a time.
async fn send_all<V: SerializeRow>(
    cql: &Cql,
    statement: &PreparedStatement,
    kind: &'static str,
    groups: &[Vec<(Uuid, V)>],
    concurrency: usize,
) -> Vec<Result<Vec<Result<(), CassandraError>>, CassandraError>> {
    let pending: Vec<_> = groups
        .iter()
        .map(|rows| send_together(cql, statement, kind, rows))
        .collect();
    futures::stream::iter(pending)
        .buffered(concurrency.max(1))
        .collect()
        .await
}

/// Fills the outcomes of a group (each `(place, outcome if applied)`) from what its sending
/// gave: a row that applied gets its outcome, the others a failure (to try again) or a
/// rejection (the row at fault). An unreachable cluster fails the whole page.
fn settle(
    group: Vec<(usize, Applied<CassandraVersion>)>,
    sent: Result<Vec<Result<(), CassandraError>>, CassandraError>,
    outcomes: &mut [Applied<CassandraVersion>],
) -> Result<(), CassandraError> {
    let each = match sent {
        Ok(each) => each,
        Err(e @ CassandraError::Unreachable { .. }) => return Err(e),
        Err(e) => {
            let failed = WriteOutcome::Failed(e.to_string());
            for (i, _) in group {
                outcomes[i] = Applied::outcome(failed.clone());
            }
            return Ok(());
        }
    };
    for ((i, applied), result) in group.into_iter().zip(each) {
        outcomes[i] = match result {
            Ok(()) => applied,
            Err(e @ CassandraError::Unreachable { .. }) => return Err(e),
            Err(e) if e.is_transient() => Applied::outcome(WriteOutcome::Failed(e.to_string())),
            Err(e) => Applied::outcome(WriteOutcome::Rejected(e.to_string())),
        };
    }
    Ok(())
}

/// Splits rows, in order, into the groups sent together: at most [`ROWS_PER_BATCH`] rows and
/// [`BATCH_BYTES`] each, a larger row alone.
fn groups(rows: Vec<(usize, FencedRow<'_>)>) -> Vec<Vec<(usize, FencedRow<'_>)>> {
    let mut groups = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for row in rows {
        let size = row.1.size();
        if !current.is_empty() && (current.len() == ROWS_PER_BATCH || bytes + size > BATCH_BYTES) {
            groups.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(row);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// Sends `statement` once per row (each `(id, values)`): one request for a single row, an
/// unlogged batch for several, counted as `kind` (`write`, `delete`). `Err` when the whole
/// group failed for a reason that would fail each row too (the cluster's state); a batch
/// refused for another reason is sent again row by row, so that a bad row fails alone.
async fn send_together<V: SerializeRow>(
    cql: &Cql,
    statement: &PreparedStatement,
    kind: &'static str,
    rows: &[(Uuid, V)],
) -> Result<Vec<Result<(), CassandraError>>, CassandraError> {
    if let [_, _, ..] = rows {
        let mut batch = Batch::new(BatchType::Unlogged);
        cql.count_as(&mut batch, kind);
        for _ in rows {
            batch.append_statement(statement.clone());
        }
        let values: Vec<&V> = rows.iter().map(|(_, values)| values).collect();
        let action = format!("to {kind} {} rows", rows.len());
        match cql.session().batch(&batch, values).await {
            Ok(_) => return Ok(rows.iter().map(|_| Ok(())).collect()),
            Err(e) => {
                let e = classify(&action, &e);
                if e.is_transient() {
                    return Err(e);
                }
                tracing::debug!("{e}; sending them one by one");
            }
        }
    }
    let mut each = Vec::with_capacity(rows.len());
    for (id, values) in rows {
        let action = format!("to {kind} row {id}");
        let result = cql.session().execute_unpaged(statement, values).await;
        each.push(result.map(drop).map_err(|e| classify(&action, &e)));
    }
    Ok(each)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::Document;

    #[test]
    fn small_rows_share_batches_of_at_most_ten_and_a_large_row_goes_alone() {
        let write = |bytes: usize| CassandraWrite {
            document: Document::new("i", "t", serde_json::json!({ "a": "x".repeat(bytes) }))
                .at(Utc::now()),
            expected: CassandraExpected::Absent,
            read_at: Utc::now(),
        };
        let sizes = [
            100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 9000, 2000, 2000,
        ];
        let writes: Vec<_> = sizes.iter().map(|&bytes| write(bytes)).collect();
        let rows = writes
            .iter()
            .enumerate()
            .map(|(i, w)| (i, FencedRow::of(w).unwrap()))
            .collect();
        let groups: Vec<Vec<usize>> = groups(rows)
            .into_iter()
            .map(|g| g.into_iter().map(|(i, _)| i).collect())
            .collect();
        let expected: Vec<Vec<usize>> =
            vec![(0..10).collect(), vec![10], vec![11], vec![12], vec![13]];
        assert_eq!(groups, expected);
    }
}
