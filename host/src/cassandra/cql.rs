//! The one way essync talks CQL: a session shared by the store and essync's state tables
//! beside it, through which every statement is prepared and every request is counted by kind
//! (what a sync costs Cassandra, measured where the requests leave).

use std::net::SocketAddr;
use std::sync::Arc;

use scylla::client::pager::QueryPager;
use scylla::client::session::Session;
use scylla::errors::{RequestAttemptError, RequestError};
use scylla::observability::history::{AttemptId, HistoryListener, RequestId, SpeculativeId};
use scylla::policies::retry::RetryDecision;
use scylla::response::query_result::QueryResult;
use scylla::serialize::batch::BatchValues;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::Batch;
use scylla::statement::prepared::PreparedStatement;

use super::CassandraError;
use crate::store::RequestCounts;

/// A CQL session whose requests are counted, by the kind of each statement.
#[derive(Clone)]
pub(crate) struct Cql {
    session: Arc<Session>,
    requests: Arc<RequestCounts>,
}

impl Cql {
    pub fn new(session: Session) -> Self {
        Self {
            session: Arc::new(session),
            requests: Arc::default(),
        }
    }

    /// The session, for what the store itself does (schema, cluster state).
    pub(super) fn session(&self) -> &Session {
        &self.session
    }

    /// The requests sent so far, by kind.
    pub fn requests(&self) -> &RequestCounts {
        &self.requests
    }

    /// Prepares `cql`, whose requests count as `kind`; `action` says what for, in errors.
    pub async fn prepare(
        &self,
        kind: &'static str,
        cql: impl Into<String>,
        action: &str,
    ) -> Result<PreparedStatement, CassandraError> {
        let mut statement = self
            .session
            .prepare(cql.into())
            .await
            .map_err(|e| CassandraError::prepare(action, &e))?;
        statement.set_history_listener(self.counter(kind));
        Ok(statement)
    }

    /// Runs a prepared statement, unpaged.
    pub async fn execute(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
        action: &str,
    ) -> Result<QueryResult, CassandraError> {
        self.session
            .execute_unpaged(statement, values)
            .await
            .map_err(|e| CassandraError::execution(action, &e))
    }

    /// Runs a prepared statement, a page at a time.
    pub async fn iter(
        &self,
        statement: PreparedStatement,
        values: impl SerializeRow,
        action: &str,
    ) -> Result<QueryPager, CassandraError> {
        self.session
            .execute_iter(statement, values)
            .await
            .map_err(|e| CassandraError::pager(action, &e))
    }

    /// Runs a batch, counted as one request of `kind`.
    pub async fn batch(
        &self,
        kind: &'static str,
        mut batch: Batch,
        values: impl BatchValues,
        action: &str,
    ) -> Result<QueryResult, CassandraError> {
        batch.set_history_listener(self.counter(kind));
        self.session
            .batch(&batch, values)
            .await
            .map_err(|e| CassandraError::execution(action, &e))
    }

    /// Counts `batch`'s requests as `kind`, for a batch sent through [`Cql::session`].
    pub fn count_as(&self, batch: &mut Batch, kind: &'static str) {
        batch.set_history_listener(self.counter(kind));
    }

    /// Runs a statement that is not prepared (schema changes, one-off reads), counted as
    /// `kind`.
    pub async fn query(
        &self,
        kind: &'static str,
        cql: impl Into<String>,
        values: impl SerializeRow,
        action: &str,
    ) -> Result<QueryResult, CassandraError> {
        self.requests.add(kind, 1);
        self.session
            .query_unpaged(cql.into(), values)
            .await
            .map_err(|e| CassandraError::execution(action, &e))
    }

    /// Runs a schema change (`CREATE TABLE IF NOT EXISTS`, `ALTER TABLE`), then waits until the
    /// nodes agree on the schema (see [`super::schema::agree`]).
    pub async fn change_schema(
        &self,
        cql: impl Into<String>,
        action: &str,
    ) -> Result<(), CassandraError> {
        self.query("schema", cql, (), action).await?;
        super::schema::agree(&self.session).await;
        Ok(())
    }

    fn counter(&self, kind: &'static str) -> Arc<dyn HistoryListener> {
        Arc::new(Counter {
            kind,
            requests: self.requests.clone(),
        })
    }
}

/// Counts each request of one statement (each page of a paged read is a request).
#[derive(Debug)]
struct Counter {
    kind: &'static str,
    requests: Arc<RequestCounts>,
}

impl HistoryListener for Counter {
    fn log_request_start(&self) -> RequestId {
        self.requests.add(self.kind, 1);
        RequestId(0)
    }

    fn log_request_success(&self, _: RequestId) {}

    fn log_request_error(&self, _: RequestId, _: &RequestError) {}

    fn log_new_speculative_fiber(&self, _: RequestId) -> SpeculativeId {
        SpeculativeId(0)
    }

    fn log_attempt_start(
        &self,
        _: RequestId,
        _: Option<SpeculativeId>,
        _: SocketAddr,
    ) -> AttemptId {
        AttemptId(0)
    }

    fn log_attempt_success(&self, _: AttemptId) {}

    fn log_attempt_error(&self, _: AttemptId, _: &RequestAttemptError, _: &RetryDecision) {}
}
