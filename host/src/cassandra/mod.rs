//! The Cassandra store: one table, `KEYSPACE.TABLE (id uuid PRIMARY KEY, index_ text, type
//! text, timestamp timestamp, content text)`, one row per document.
//!
//! - [`CassandraStore::connect`] opens a session and creates what is missing: the keyspace, the
//!   table, a storage-attached index on `timestamp`; an existing table with an incompatible
//!   column is refused with a message that names it;
//! - [`CassandraStore::insert_or_replace_document`] and [`CassandraStore::get_documents`] are
//!   the seed's API;
//! - [`CassandraStore::get_by_ids`], [`CassandraStore::write_batch`] and the change feed
//!   ([`CassandraStore::changes`], built on [`CassandraStore::read_recent`] and
//!   [`CassandraStore::scan_page`]) are what the sync engine
//!   uses. See [`feed`] for how changes are found and [`mod@write`] for why writes are
//!   compare-and-set.

pub mod convert;
pub(crate) mod cql;
mod error;
pub mod feed;
mod schema;
mod tls;
pub mod token;
pub mod write;

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;

use futures::{Stream, StreamExt};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use uuid::Uuid;

pub use convert::CassandraVersion;
pub use error::CassandraError;
pub use feed::{
    CassandraCheckpoint, ScanPage, ScanRow, Sweep, SweepLimits, SweepPage, TokenPosition,
};
pub use schema::check_name;
pub(crate) use schema::create_table;
pub use scylla::statement::{Consistency, SerialConsistency};
pub use tls::CassandraTls;
pub use token::{TokenRange, token_of};
pub use write::{CassandraDelete, CassandraExpected, CassandraWrite, WriteMode};

use crate::Document;
use crate::document::now_millis;
use crate::store::{Applied, Read, ReadError, WriteOutcome};
use convert::{COLUMNS, RawRow, TokenRow, WRITE_TIMES, from_row};

/// Ids read by one request (`WHERE id IN ...`), wherever rows are read by id (the table, its
/// write times, the ledger): few enough to keep each request small, many enough to save round
/// trips.
pub(crate) const IDS_PER_READ: usize = 50;

/// How to reach Cassandra and which table to sync.
#[derive(Debug, Clone)]
pub struct CassandraConfig {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    /// The keyspace (created when missing).
    pub keyspace: String,
    /// The table (created when missing).
    pub table: String,
    /// The replication of a keyspace created by essync, as a CQL map.
    pub replication: String,
    /// Credentials, if the cluster needs them (PasswordAuthenticator).
    pub credentials: Option<CassandraCredentials>,
    /// TLS (client encryption), if the cluster uses it.
    pub tls: Option<CassandraTls>,
    /// Consistency level of reads (default LOCAL_QUORUM: it overlaps every LOCAL_QUORUM write
    /// of the datacenter, so a round sees what the previous one wrote).
    pub read_consistency: Consistency,
    /// Consistency level of writes, and of the statements on essync's state tables (default
    /// LOCAL_QUORUM: a write survives the loss of a replica, without waiting for other
    /// datacenters).
    pub write_consistency: Consistency,
    /// Consistency level of the Paxos phase of compare-and-set writes (default SERIAL: writes
    /// stay linearizable whichever datacenter another writer of the table is in).
    pub serial_consistency: SerialConsistency,
    /// The datacenter essync runs in: requests go to its nodes only, and LOCAL_* levels refer
    /// to it. Needed on a cluster of several datacenters.
    pub local_datacenter: Option<String>,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// How long one request may take before it fails (the driver's client-side timeout; it
    /// bounds a request to a node that hangs without closing its connections).
    pub request_timeout: Duration,
    /// Rows per page of reads.
    pub page_size: i32,
    /// Requests in flight at once for batched reads and writes.
    pub concurrency: usize,
    /// How writes stay race-safe: fenced plain writes (the default) or lightweight
    /// transactions.
    pub write_mode: WriteMode,
}

/// A Cassandra user and password; the password never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct CassandraCredentials {
    /// The user (role) name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for CassandraCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CassandraCredentials({}, ***)", self.user)
    }
}

impl CassandraConfig {
    /// The default configuration for a table, on `127.0.0.1:9042`.
    pub fn new(keyspace: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            nodes: vec!["127.0.0.1:9042".to_string()],
            keyspace: keyspace.into(),
            table: table.into(),
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".to_string(),
            credentials: None,
            tls: None,
            read_consistency: Consistency::LocalQuorum,
            write_consistency: Consistency::LocalQuorum,
            serial_consistency: SerialConsistency::Serial,
            local_datacenter: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            page_size: 1000,
            concurrency: 64,
            write_mode: WriteMode::default(),
        }
    }
}

/// How the change feed reads.
#[derive(Debug, Clone, Copy)]
pub struct FeedOptions {
    /// How far back each round re-reads, to cover clock skew between writers and late writes.
    pub safety_window: Duration,
    /// The most rows the write-time sweep examines per round.
    pub sweep_rows: usize,
}

impl Default for FeedOptions {
    fn default() -> Self {
        Self {
            safety_window: Duration::from_secs(5),
            sweep_rows: 20_000,
        }
    }
}

/// Prepared statements of the read path.
struct ReadStatements {
    by_ids: PreparedStatement,
    recent: PreparedStatement,
    scan_full: PreparedStatement,
    scan_write_times: PreparedStatement,
}

/// Documents in one Cassandra table.
pub struct CassandraStore {
    cql: cql::Cql,
    config: CassandraConfig,
    /// `keyspace.table`
    table: String,
    has_time_index: bool,
    reads: ReadStatements,
    writes: write::WriteStatements,
}

impl CassandraStore {
    /// Connects, creates the keyspace, table and time index when missing, and checks an
    /// existing table's columns.
    pub async fn connect(mut config: CassandraConfig) -> Result<Self, CassandraError> {
        config.keyspace = check_name("keyspace", &config.keyspace)?;
        config.table = check_name("table", &config.table)?;
        let session = open_session(&config).await?;
        schema::ensure_keyspace(&session, &config.keyspace, &config.replication).await?;
        schema::ensure_table(&session, &config.keyspace, &config.table).await?;
        let has_time_index =
            schema::ensure_time_index(&session, &config.keyspace, &config.table).await?;
        schema::agree(&session).await;
        let table = format!("{}.{}", config.keyspace, config.table);
        let cql = cql::Cql::new(session);
        let reads = prepare_reads(&cql, &table, config.page_size, config.read_consistency).await?;
        let writes = write::WriteStatements::prepare(&cql, &table, config.write_mode).await?;
        tracing::debug!(%table, has_time_index, "connected to Cassandra");
        Ok(Self {
            cql,
            config,
            table,
            has_time_index,
            reads,
            writes,
        })
    }

    /// The CQL session, for essync's state tables beside the synced one (their requests are
    /// counted with the store's).
    pub(crate) fn cql(&self) -> &cql::Cql {
        &self.cql
    }

    /// The requests sent to Cassandra so far, by kind (`write`, `read`, `ledger_read`, ...).
    pub fn requests(&self) -> &crate::store::RequestCounts {
        self.cql.requests()
    }

    /// The configuration in use (names folded to lowercase).
    pub fn config(&self) -> &CassandraConfig {
        &self.config
    }

    /// `keyspace.table`.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Whether recent rows are read through a storage-attached index on `timestamp`.
    pub fn has_time_index(&self) -> bool {
        self.has_time_index
    }

    /// Writes a document unless the table holds a newer version of it (a later timestamp; a
    /// row without one counts from its write time), which is then left as it is
    /// ([`WriteOutcome::NewerAlreadyThere`]). A document without a timestamp is stamped with
    /// the current time; equal timestamps replace.
    ///
    /// Safe against concurrent writers: the write is a compare-and-set against the row read,
    /// retried when someone wrote in between.
    pub async fn insert_or_replace_document(
        &self,
        document: &Document,
    ) -> Result<WriteOutcome, CassandraError> {
        let mut document = document.clone();
        let timestamp = *document.timestamp.get_or_insert_with(now_millis);
        for _ in 0..32 {
            let read_at = Utc::now();
            let current = self.get_by_ids(&[document.id]).await?.remove(&document.id);
            let expected = match current {
                None => CassandraExpected::Absent,
                Some(Read::Bad(bad)) => {
                    return Ok(WriteOutcome::Rejected(format!(
                        "the stored row cannot be read: {}",
                        bad.reason
                    )));
                }
                Some(Read::Document(stored)) => {
                    if stored.document.timestamp > Some(timestamp) {
                        return Ok(WriteOutcome::NewerAlreadyThere);
                    }
                    CassandraExpected::Row(stored.version)
                }
            };
            let write = CassandraWrite {
                document: document.clone(),
                expected,
                read_at,
            };
            match self
                .write_batch(std::slice::from_ref(&write))
                .await?
                .pop()
                .map(|a| a.outcome)
            {
                Some(WriteOutcome::ChangedUnderneath) => continue,
                Some(outcome) => return Ok(outcome),
                None => break,
            }
        }
        Ok(WriteOutcome::Failed(
            "the row kept changing while it was written".to_string(),
        ))
    }

    /// Every row of the table, paged, with memory that does not grow with the table. Each row
    /// is returned exactly once. A row that cannot be synced comes as [`ReadError::Bad`] and the
    /// stream goes on; a store failure ends it.
    pub fn get_documents(
        &self,
    ) -> impl Stream<Item = Result<Document, ReadError<CassandraError>>> + '_ {
        // A full scan in token order, the same paging as a reconciliation pass. The state is
        // the position to read after, or `None` once the scan is over.
        let page_size = self.config.page_size.max(1) as usize;
        let pages =
            futures::stream::unfold(Some(None::<TokenPosition>), move |position| async move {
                let position = position?;
                match self
                    .scan_page(position.as_ref(), page_size, true, TokenRange::WHOLE)
                    .await
                {
                    Ok(page) => {
                        let next = (!page.done).then_some(page.position);
                        let reads = page.rows.into_iter().filter_map(|row| row.read).collect();
                        Some((Ok(reads), next))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            });
        crate::store::documents_of(pages)
    }

    /// The current row of each id that exists.
    pub async fn get_by_ids(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Read<CassandraVersion>>, CassandraError> {
        let results = crate::store::all_of(ids.chunks(IDS_PER_READ).map(|chunk| async move {
            let action = format!("to read {} row(s) of {}", chunk.len(), self.table);
            let result = self
                .cql
                .execute(&self.reads.by_ids, (chunk,), &action)
                .await?
                .into_rows_result()
                .map_err(|e| CassandraError::protocol(&action, e))?;
            result
                .rows::<RawRow>()
                .map_err(|e| CassandraError::protocol(&action, e))?
                .map(|row| row.map(from_row))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CassandraError::protocol(&action, e))
        }))
        .await?;
        let mut found = HashMap::with_capacity(ids.len());
        for result in results {
            for read in result {
                let id = match &read {
                    Read::Document(stored) => stored.document.id,
                    Read::Bad(bad) => match bad.id {
                        Some(id) => id,
                        None => continue,
                    },
                };
                found.insert(id, read);
            }
        }
        Ok(found)
    }

    /// Writes a batch, each row race-safe against the row expected (see [`mod@write`]); one
    /// outcome per write, in order, with the version it left (its write time when fenced).
    /// Fails as a whole only when the cluster cannot be used at all.
    pub async fn write_batch(
        &self,
        writes: &[CassandraWrite],
    ) -> Result<Vec<Applied<CassandraVersion>>, CassandraError> {
        write::write_batch(&self.cql, &self.writes, self.config.concurrency, writes).await
    }

    /// Deletes a batch of rows, each race-safe against the row expected; one outcome per
    /// delete, in order.
    pub async fn delete_batch(
        &self,
        deletes: &[CassandraDelete],
    ) -> Result<Vec<Applied<CassandraVersion>>, CassandraError> {
        write::delete_batch(&self.cql, &self.writes, self.config.concurrency, deletes).await
    }

    /// How writes stay race-safe.
    pub fn write_mode(&self) -> WriteMode {
        self.writes.mode()
    }

    /// The id and newest write time of each row of `range` whose `timestamp` is in
    /// `[since, until]` (milliseconds), through the time index; nothing when the table has none
    /// (the sweep then finds every change). The feed reads in full, by id, only the rows it
    /// does not know unchanged.
    pub fn read_recent(
        &self,
        since: i64,
        until: i64,
        range: TokenRange,
    ) -> impl Stream<Item = Result<(Uuid, Option<i64>), CassandraError>> + '_ {
        type Stamps = (Uuid, Option<i64>, Option<i64>, Option<i64>, Option<i64>);
        let action = format!("to read recent rows of {}", self.table);
        futures::stream::once(async move {
            if !self.has_time_index {
                return Ok(futures::stream::empty().left_stream());
            }
            let pager = self
                .cql
                .session()
                .execute_iter(
                    self.reads.recent.clone(),
                    (
                        CqlTimestamp(since),
                        CqlTimestamp(until),
                        range.first,
                        range.last,
                    ),
                )
                .await
                .map_err(|e| CassandraError::pager(&action, &e))?;
            let rows = pager
                .rows_stream::<Stamps>()
                .map_err(|e| CassandraError::protocol(&action, e))?;
            Ok(rows
                .map(|row| {
                    let (id, a, b, c, d) =
                        row.map_err(|e| CassandraError::protocol("to read a recent row", e))?;
                    Ok((id, [a, b, c, d].into_iter().flatten().max()))
                })
                .right_stream())
        })
        .map(|result| match result {
            Ok(rows) => rows.left_stream(),
            Err(e) => futures::stream::once(async move { Err(e) }).right_stream(),
        })
        .flatten()
    }

    /// Reads the next page of a token-ordered scan after `position`, examining at most `limit`
    /// rows: every row's id and newest write time, and with `full` the whole row (a
    /// reconciliation pass); without, only ids and write times are read, which is what the
    /// write-time sweep needs to pick the rows to read in full.
    pub async fn scan_page(
        &self,
        position: Option<&TokenPosition>,
        limit: usize,
        full: bool,
        range: TokenRange,
    ) -> Result<ScanPage, CassandraError> {
        let limit = limit.max(1);
        let start = position.map(|p| p.token).unwrap_or(range.first);
        let action = format!("to scan {}", self.table);
        // Distinct partitions can share a token: ask a little more than `limit` so that rows
        // already read at the start token do not stall the scan.
        let skipped = position.map(|p| p.ids.len()).unwrap_or(0);
        let ask = (limit + skipped) as i32;
        let statement = if full {
            &self.reads.scan_full
        } else {
            &self.reads.scan_write_times
        };
        let result = self
            .cql
            .execute(statement, (start, range.last, ask), &action)
            .await?
            .into_rows_result()
            .map_err(|e| CassandraError::protocol(&action, e))?;
        // The rows (whole ones: parsed, with their digests) are made on a blocking thread,
        // beside the page being synced.
        let rows = tokio::task::spawn_blocking(move || {
            if full {
                scan_rows(&result)
            } else {
                write_time_rows(&result)
            }
        })
        .await
        .map_err(|e| CassandraError::protocol(&action, e))?
        .map_err(|e| CassandraError::protocol(&action, e))?;
        let returned = rows.len();
        let (fresh, next) = feed::continue_position(position, rows);
        Ok(ScanPage {
            rows: fresh.into_iter().map(|(_, _, row)| row).collect(),
            position: next,
            done: returned < ask as usize,
        })
    }

    /// Cassandra's own estimate of the number of rows (`system.size_estimates`), when it has
    /// one: cheap, refreshed by the server every few minutes.
    pub async fn estimate_rows(&self) -> Result<Option<u64>, CassandraError> {
        let action = format!("to estimate the size of {}", self.table);
        let rows = self
            .cql
            .query(
                "estimate",
                "SELECT partitions_count FROM system.size_estimates \
                 WHERE keyspace_name = ? AND table_name = ?",
                (&self.config.keyspace, &self.config.table),
                &action,
            )
            .await?
            .into_rows_result()
            .map_err(|e| CassandraError::protocol(&action, e))?;
        let total: i64 = rows
            .rows::<(Option<i64>,)>()
            .map_err(|e| CassandraError::protocol(&action, e))?
            .filter_map(Result::ok)
            .filter_map(|(count,)| count)
            .sum();
        Ok((total > 0).then_some(total as u64))
    }
}

/// The rows of a full scan page: each whole row, with its token and newest write time.
fn scan_rows(
    result: &scylla::response::query_result::QueryRowsResult,
) -> Result<Vec<(i64, Uuid, ScanRow)>, String> {
    result
        .rows::<TokenRow>()
        .map_err(|e| e.to_string())?
        .map(|row| {
            let (token, id, raw) = convert::split_token(row.map_err(|e| e.to_string())?);
            let read = from_row(raw);
            let written_at = match &read {
                Read::Document(stored) => stored.version.written_at,
                Read::Bad(_) => None,
            };
            let row = ScanRow {
                token,
                id,
                written_at,
                read: Some(read),
            };
            Ok((token, id, row))
        })
        .collect()
}

/// The rows of a write-time sweep page: each id with its token and newest write time.
fn write_time_rows(
    result: &scylla::response::query_result::QueryRowsResult,
) -> Result<Vec<(i64, Uuid, ScanRow)>, String> {
    type WriteTimes = (
        i64,
        Uuid,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );
    result
        .rows::<WriteTimes>()
        .map_err(|e| e.to_string())?
        .map(|row| {
            let (token, id, a, b, c, d) = row.map_err(|e| e.to_string())?;
            let written_at = [a, b, c, d].into_iter().flatten().max();
            let row = ScanRow {
                token,
                id,
                written_at,
                read: None,
            };
            Ok((token, id, row))
        })
        .collect()
}

async fn open_session(config: &CassandraConfig) -> Result<Session, CassandraError> {
    let mut load_balancing = DefaultPolicy::builder();
    if let Some(datacenter) = &config.local_datacenter {
        // LOCAL_* levels are local to the coordinator: only the local datacenter's nodes may be
        // coordinators, or LOCAL_QUORUM could be met in another one.
        load_balancing = load_balancing
            .prefer_datacenter(datacenter.clone())
            .permit_dc_failover(false);
    }
    // Statements use the write levels unless they set their own (the reads do).
    let profile = ExecutionProfile::builder()
        .consistency(config.write_consistency)
        .serial_consistency(Some(config.serial_consistency))
        .load_balancing_policy(load_balancing.build())
        .request_timeout(Some(config.request_timeout))
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(config.connect_timeout)
        .default_execution_profile_handle(profile.into_handle());
    if let Some(credentials) = &config.credentials {
        builder = builder.user(&credentials.user, &credentials.password);
    }
    if let Some(tls) = &config.tls {
        builder = builder.tls_context(Some(tls::client_config(tls)?));
    }
    // The driver bounds the TCP connect, not the TLS handshake and the STARTUP exchange that
    // follow: a server may answer a TLS mismatch with silence, so the whole set-up is bounded.
    let within = config.connect_timeout + config.request_timeout;
    let session = tokio::time::timeout(within, builder.build())
        .await
        .map_err(|_| CassandraError::no_handshake(config, within))?
        .map_err(|e| CassandraError::session(config, &e))?;
    check_datacenter(&session, config)?;
    Ok(session)
}

/// The local datacenter must exist; a cluster of several datacenters needs one named.
fn check_datacenter(session: &Session, config: &CassandraConfig) -> Result<(), CassandraError> {
    let state = session.get_cluster_state();
    let mut datacenters: Vec<&str> = state
        .get_nodes_info()
        .iter()
        .filter_map(|node| node.datacenter.as_deref())
        .collect();
    datacenters.sort_unstable();
    datacenters.dedup();
    match &config.local_datacenter {
        Some(local) if !datacenters.contains(&local.as_str()) => {
            Err(CassandraError::UnknownDatacenter {
                name: local.clone(),
                known: datacenters.join(", "),
            })
        }
        None if datacenters.len() > 1 => {
            tracing::warn!(
                "the Cassandra cluster has datacenters {}: set --cassandra-local-dc to the one \
                 essync runs in, so that LOCAL_* consistency levels mean it",
                datacenters.join(", ")
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

async fn prepare_reads(
    cql: &cql::Cql,
    table: &str,
    page_size: i32,
    consistency: Consistency,
) -> Result<ReadStatements, CassandraError> {
    let action = format!("to prepare the reads of {table}");
    let prepare = |kind: &'static str, statement: String| {
        let action = &action;
        async move {
            let mut statement = cql.prepare(kind, statement, action).await?;
            statement.set_page_size(page_size);
            statement.set_consistency(consistency);
            Ok::<_, CassandraError>(statement)
        }
    };
    Ok(ReadStatements {
        by_ids: prepare(
            "read",
            format!("SELECT {COLUMNS} FROM {table} WHERE id IN ?"),
        )
        .await?,
        recent: prepare(
            "recent",
            format!(
                "SELECT id, {WRITE_TIMES} FROM {table} WHERE timestamp >= ? AND timestamp <= ? \
                 AND token(id) >= ? AND token(id) <= ?"
            ),
        )
        .await?,
        scan_full: prepare(
            "scan",
            format!(
                "SELECT token(id), {COLUMNS} FROM {table} WHERE token(id) >= ? \
                 AND token(id) <= ? LIMIT ?"
            ),
        )
        .await?,
        scan_write_times: prepare(
            "sweep",
            format!(
                "SELECT token(id), id, {WRITE_TIMES} FROM {table} WHERE token(id) >= ? \
                 AND token(id) <= ? LIMIT ?"
            ),
        )
        .await?,
    })
}
