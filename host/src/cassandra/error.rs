//! What can go wrong talking to Cassandra, phrased for the person who has to fix it.

use scylla::errors::{DbError, ExecutionError, PagerExecutionError, RequestAttemptError};
use thiserror::Error;

/// A Cassandra failure that stops the operation as a whole (per-document problems are reported
/// as [`crate::store::BadDocument`] or [`crate::store::WriteOutcome`] instead).
#[derive(Debug, Error)]
pub enum CassandraError {
    /// A keyspace or table name that is not a plain CQL identifier.
    #[error(
        "'{name}' is not a valid {what} name: use letters, digits and '_', starting with a letter, at most 48"
    )]
    InvalidName {
        /// "keyspace" or "table".
        what: &'static str,
        /// The name as given.
        name: String,
    },
    /// No session could be opened.
    #[error("Cassandra is not reachable at {nodes}: {reason} (is it running? check --cassandra)")]
    Unreachable {
        /// The contact points tried.
        nodes: String,
        /// What the driver said.
        reason: String,
    },
    /// The table exists but cannot hold essync's documents.
    #[error("table {table} cannot be synced: {reason}")]
    IncompatibleTable {
        /// keyspace.table
        table: String,
        /// Which column is wrong, and what essync needs.
        reason: String,
    },
    /// A statement failed.
    #[error("Cassandra failed {action}: {reason}")]
    Request {
        /// What essync was doing.
        action: String,
        /// What the driver or server said.
        reason: String,
        /// Whether waiting and trying again may help.
        transient: bool,
    },
    /// The server answered something this client does not understand.
    #[error("unexpected answer from Cassandra to {action}: {reason}")]
    Protocol {
        /// What essync was doing.
        action: String,
        /// What was wrong with the answer.
        reason: String,
    },
}

impl CassandraError {
    /// Whether waiting and trying again may help (node down, overloaded, timing out).
    pub fn is_transient(&self) -> bool {
        match self {
            CassandraError::Unreachable { .. } => true,
            CassandraError::Request { transient, .. } => *transient,
            _ => false,
        }
    }

    /// Whether a read failed because a storage-attached index is still being built (right
    /// after it was created on a table that has rows).
    pub fn is_index_building(&self) -> bool {
        matches!(self, CassandraError::Request { reason, .. } if reason.contains("INDEX_NOT_AVAILABLE"))
    }

    /// A failed statement, classified.
    pub(crate) fn execution(action: impl Into<String>, error: &ExecutionError) -> Self {
        CassandraError::Request {
            action: action.into(),
            reason: error.to_string(),
            transient: execution_is_transient(error),
        }
    }

    /// A failed paged read, classified.
    pub(crate) fn pager(action: impl Into<String>, error: &PagerExecutionError) -> Self {
        let transient = match error {
            PagerExecutionError::NextPageError(_) => true,
            other => {
                // Preparation and first-page errors carry no finer classification here.
                let text = other.to_string();
                text.contains("timeout") || text.contains("connection") || text.contains("Timeout")
            }
        };
        CassandraError::Request {
            action: action.into(),
            reason: error.to_string(),
            transient,
        }
    }

    /// Anything else a statement's answer can fail with (decoding rows, ...).
    pub(crate) fn protocol(action: impl Into<String>, error: impl std::fmt::Display) -> Self {
        CassandraError::Protocol {
            action: action.into(),
            reason: error.to_string(),
        }
    }
}

fn execution_is_transient(error: &ExecutionError) -> bool {
    match error {
        ExecutionError::EmptyPlan
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::RequestTimeout(_) => true,
        ExecutionError::LastAttemptError(attempt) => attempt_is_transient(attempt),
        _ => false,
    }
}

fn attempt_is_transient(error: &RequestAttemptError) -> bool {
    match error {
        RequestAttemptError::UnableToAllocStreamId
        | RequestAttemptError::BrokenConnectionError(_) => true,
        RequestAttemptError::DbError(db, _) => matches!(
            db,
            DbError::Unavailable { .. }
                | DbError::Overloaded
                | DbError::IsBootstrapping
                | DbError::ReadTimeout { .. }
                | DbError::WriteTimeout { .. }
                | DbError::ReadFailure { .. }
                | DbError::WriteFailure { .. }
                | DbError::RateLimitReached { .. }
                | DbError::TruncateError
        ),
        _ => false,
    }
}
