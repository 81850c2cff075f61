//! Several processes sharing one table: the table's token ring is split into `--ranges` equal
//! ranges, and each range is synced as a sync of its own, under its own lease, checkpoint and
//! recorded failures. The ledger stays one per table (it is keyed by id, and an id belongs to
//! one range).
//!
//! **Names.** A range's lease, checkpoint and failures are kept under a *unit* name: the table's
//! name when it is synced whole (`--ranges 1`, the default, as before ranges existed), else
//! `TABLE#IofN` (range I of N, from 1). A process also keeps a *member* row in the lease table
//! while it runs (`TABLE#member OWNER`), so that the others know how many share the table and
//! each takes a fair share.
//!
//! **One range count at a time.** Two processes started with different `--ranges` would split
//! the ring differently, and sync the same ids at once. A lease is therefore taken only while
//! no lease of the table under another range count is held (checked after the claim, so that
//! of two processes claiming at once one sees the other; see [`super::state::Lease`]): a
//! process of another count waits until the others are gone.
//!
//! **Starting points.** Every range of a count gets its checkpoint when the count is first
//! used ([`prepare`]): all from the same moment (or all reconciling, with `-s`), so a range
//! taken up later misses nothing. When the table was synced under another count before, the
//! ranges of the new count start with a reconciliation: the old checkpoints cannot be split.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use uuid::Uuid;

use super::state::checkpoint::CheckpointStore;
use super::state::{CHECKPOINT_TABLE, Holder, LEASE_TABLE, Lease};
use super::{Checkpoint, SyncError};
use crate::cassandra::cql::Cql;
use crate::cassandra::{CassandraError, CassandraStore, TokenRange};
use crate::elasticsearch::ElasticsearchStore;

/// The default number of ranges: one process syncs the whole table.
pub const DEFAULT_RANGES: u32 = 1;

/// The most ranges a table can be split into.
pub const MAX_RANGES: u32 = 4096;

/// The name a range's lease, checkpoint and failures are kept under.
pub fn unit_name(table: &str, range: TokenRange) -> String {
    if range.is_whole() {
        table.to_string()
    } else {
        format!("{table}#{}of{}", range.index + 1, range.count)
    }
}

/// The name of a process's member row.
pub(crate) fn member_name(table: &str, owner: Uuid) -> String {
    format!("{table}#member {owner}")
}

/// What a row of a state table keyed by name is, for `table`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A range's lease, checkpoint or failures.
    Range(TokenRange),
    /// A process's member row.
    Member(Uuid),
}

/// Reads a name written by [`unit_name`] or [`member_name`] for `table`; `None` for another
/// table's.
pub fn parse_unit(table: &str, name: &str) -> Option<Unit> {
    if name == table {
        return Some(Unit::Range(TokenRange::WHOLE));
    }
    let rest = name.strip_prefix(table)?.strip_prefix('#')?;
    if let Some(owner) = rest.strip_prefix("member ") {
        return Uuid::parse_str(owner).ok().map(Unit::Member);
    }
    let (index, count) = rest.split_once("of")?;
    let (index, count): (u32, u32) = (index.parse().ok()?, count.parse().ok()?);
    (index >= 1 && index <= count && count > 1)
        .then(|| Unit::Range(TokenRange::part(index - 1, count)))
}

/// Who holds what of a table: the leases of its ranges, and the processes that share it.
#[derive(Debug, Clone, Default)]
pub struct TableLeases {
    /// The held leases, by range (of any count).
    pub ranges: Vec<(TokenRange, Holder)>,
    /// The processes sharing the table (each one's member row).
    pub members: Vec<Holder>,
}

impl TableLeases {
    /// A lease held under another range count than `count`, if any.
    pub fn other_count(&self, count: u32) -> Option<&(TokenRange, Holder)> {
        self.ranges.iter().find(|(range, _)| range.count != count)
    }
}

/// Reads the lease table's rows of `table` (the table holds a few rows per synced table: it is
/// read whole).
pub async fn table_leases(cassandra: &CassandraStore) -> Result<TableLeases, CassandraError> {
    let config = cassandra.config();
    leases_of(cassandra.cql(), &config.keyspace, &config.table).await
}

/// [`table_leases`], from the parts of a store.
pub(crate) async fn leases_of(
    cql: &Cql,
    keyspace: &str,
    table: &str,
) -> Result<TableLeases, CassandraError> {
    let statement = lease_scan(cql, keyspace).await?;
    read_leases(cql, statement, keyspace, table).await
}

/// The statement that reads the whole lease table.
async fn lease_scan(cql: &Cql, keyspace: &str) -> Result<PreparedStatement, CassandraError> {
    let action = format!("to read {keyspace}.{LEASE_TABLE}");
    let mut statement = cql
        .prepare(
            "lease",
            format!("SELECT sync, owner, host, pid, since FROM {keyspace}.{LEASE_TABLE}"),
            &action,
        )
        .await?;
    statement.set_page_size(1000);
    Ok(statement)
}

/// The rows of `table` that `statement` ([`lease_scan`]) reads.
async fn read_leases(
    cql: &Cql,
    statement: PreparedStatement,
    keyspace: &str,
    table: &str,
) -> Result<TableLeases, CassandraError> {
    let action = format!("to read {keyspace}.{LEASE_TABLE}");
    type Row = (
        String,
        Option<Uuid>,
        Option<String>,
        Option<i32>,
        Option<CqlTimestamp>,
    );
    let mut rows = cql
        .iter(statement, (), &action)
        .await?
        .rows_stream::<Row>()
        .map_err(|e| CassandraError::protocol(&action, e))?;
    let mut leases = TableLeases::default();
    while let Some(row) = rows.next().await {
        let (name, owner, host, pid, since) =
            row.map_err(|e| CassandraError::protocol(&action, e))?;
        let (Some(unit), Some(owner)) = (parse_unit(table, &name), owner) else {
            continue;
        };
        let holder = Holder {
            owner,
            host: host.unwrap_or_default(),
            pid: pid.unwrap_or_default(),
            since: since.and_then(|t| DateTime::from_timestamp_millis(t.0)),
        };
        match unit {
            Unit::Range(range) => leases.ranges.push((range, holder)),
            Unit::Member(_) => leases.members.push(holder),
        }
    }
    leases
        .ranges
        .sort_by_key(|(range, _)| (range.count, range.index));
    Ok(leases)
}

/// This process's member row: it says the process shares the table, for as long as it runs
/// (the row lapses after the lease's TTL unless renewed).
pub struct Member {
    cql: Cql,
    keyspace: String,
    table: String,
    name: String,
    scan: PreparedStatement,
    me: Holder,
    insert: PreparedStatement,
    delete: PreparedStatement,
}

impl Member {
    /// Writes this process's member row (the lease table is created when missing).
    pub async fn join(
        cassandra: &CassandraStore,
        ttl: std::time::Duration,
    ) -> Result<Self, CassandraError> {
        let (cql, config) = (cassandra.cql(), cassandra.config());
        let (keyspace, table) = (&config.keyspace, &config.table);
        // Opening a lease creates the lease table.
        let lease = Lease::open(cql, keyspace, table, TokenRange::WHOLE, ttl).await?;
        let me = lease.me().clone();
        let leases = format!("{keyspace}.{LEASE_TABLE}");
        let action = format!("to prepare the statements of {leases}");
        let insert = cql
            .prepare(
                "lease",
                format!(
                    "INSERT INTO {leases} (sync, owner, host, pid, since) VALUES (?, ?, ?, ?, ?) \
                     USING TTL {}",
                    ttl.as_secs()
                ),
                &action,
            )
            .await?;
        let delete = cql
            .prepare(
                "lease",
                format!("DELETE FROM {leases} WHERE sync = ?"),
                &action,
            )
            .await?;
        let mut member = Self {
            cql: cql.clone(),
            keyspace: keyspace.clone(),
            table: table.clone(),
            name: member_name(table, me.owner),
            scan: lease_scan(cql, keyspace).await?,
            me,
            insert,
            delete,
        };
        member.renew().await?;
        Ok(member)
    }

    /// Writes the row again, for another TTL.
    pub async fn renew(&mut self) -> Result<(), CassandraError> {
        let since = CqlTimestamp(
            self.me
                .since
                .get_or_insert_with(Utc::now)
                .timestamp_millis(),
        );
        let values = (&self.name, self.me.owner, &self.me.host, self.me.pid, since);
        let action = format!("to write the member row {}", self.name);
        self.cql.execute(&self.insert, values, &action).await?;
        Ok(())
    }

    /// Deletes the row: the others take up this process's share at once. A failure is only
    /// logged (the row lapses anyway).
    pub async fn leave(&mut self) {
        let action = format!("to delete the member row {}", self.name);
        if let Err(e) = self.cql.execute(&self.delete, (&self.name,), &action).await {
            tracing::warn!("{e}");
        }
    }

    /// Who holds what of the table now (see [`table_leases`]).
    pub async fn table_leases(&self) -> Result<TableLeases, CassandraError> {
        read_leases(&self.cql, self.scan.clone(), &self.keyspace, &self.table).await
    }

    /// This process, as the lease table names it.
    pub fn me(&self) -> &Holder {
        &self.me
    }
}

/// When each range of `table` (of any count) last saved its checkpoint.
pub(crate) async fn saved_checkpoints(
    cql: &Cql,
    keyspace: &str,
    table: &str,
) -> Result<BTreeMap<TokenRange, Option<DateTime<Utc>>>, CassandraError> {
    let action = format!("to read {keyspace}.{CHECKPOINT_TABLE}");
    let mut statement = cql
        .prepare(
            "checkpoint",
            format!("SELECT sync, updated_at FROM {keyspace}.{CHECKPOINT_TABLE}"),
            &action,
        )
        .await?;
    statement.set_page_size(1000);
    let mut rows = cql
        .iter(statement, (), &action)
        .await?
        .rows_stream::<(String, Option<CqlTimestamp>)>()
        .map_err(|e| CassandraError::protocol(&action, e))?;
    let mut saved = BTreeMap::new();
    while let Some(row) = rows.next().await {
        let (name, at) = row.map_err(|e| CassandraError::protocol(&action, e))?;
        if let Some(Unit::Range(range)) = parse_unit(table, &name) {
            saved.insert(range, at.and_then(|t| DateTime::from_timestamp_millis(t.0)));
        }
    }
    Ok(saved)
}

/// Gives every range of `count` its starting checkpoint, before any is synced:
///
/// - a table never synced: all from now (existing documents left alone), or all reconciling
///   with `reconcile`;
/// - a table synced last under another count: all reconciling;
/// - otherwise, a range without a checkpoint (a start cut short): reconciling.
///
/// Called only while no process holds a lease of the table under another count. With one
/// range, a table never synced is left to [`super::Syncer::start`], as before ranges existed.
pub async fn prepare(
    cassandra: &CassandraStore,
    elasticsearch: &ElasticsearchStore,
    count: u32,
    reconcile: bool,
) -> Result<(), SyncError> {
    let config = cassandra.config();
    let cql = cassandra.cql();
    // Creates the checkpoint table when missing.
    CheckpointStore::open(cql, &config.keyspace, &config.table).await?;
    let saved = saved_checkpoints(cql, &config.keyspace, &config.table).await?;
    let latest = |same: bool| {
        saved
            .iter()
            .filter(|(range, _)| (range.count == count) == same)
            .map(|(_, at)| at.unwrap_or_default())
            .max()
    };
    let (mine, others) = (latest(true), latest(false));
    let changed = others.is_some() && (mine.is_none() || others > mine);
    let now = crate::document::now_millis();
    let start = match (saved.is_empty(), changed) {
        (true, _) if count == 1 => return Ok(()),
        (true, _) if reconcile => Checkpoint::reconciling_from(now),
        (true, _) => Checkpoint::following_from(now, elasticsearch).await?,
        (false, true) => {
            tracing::info!(
                "{}.{} was synced in {} range(s) before; in {count} range(s) each starts with \
                 a reconciliation",
                config.keyspace,
                config.table,
                saved
                    .keys()
                    .find(|range| range.count != count)
                    .map_or(1, |range| range.count)
            );
            Checkpoint::reconciling_from(now)
        }
        (false, false) => Checkpoint::reconciling_from(now),
    };
    for range in TokenRange::parts(count) {
        if !changed && saved.contains_key(&range) {
            continue;
        }
        let unit = unit_name(&config.table, range);
        let mut store = CheckpointStore::open(cql, &config.keyspace, &unit).await?;
        // Unconditional, and under no epoch: a holder of the range keeps its own checkpoint,
        // and its next save replaces this starting point, which is never ahead of it.
        let _unfenced = store.save(&start, None).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_as_what_they_name() {
        for count in [1, 2, 16] {
            for range in TokenRange::parts(count) {
                let name = unit_name("docs", range);
                assert_eq!(parse_unit("docs", &name), Some(Unit::Range(range)));
                assert_eq!(parse_unit("docs_old", &name), None);
            }
        }
        let owner = Uuid::new_v4();
        let member = member_name("docs", owner);
        assert_eq!(parse_unit("docs", &member), Some(Unit::Member(owner)));
        // Another table whose name starts with this one's, and names out of range.
        assert_eq!(parse_unit("docs", "docs2"), None);
        assert_eq!(parse_unit("docs", "docs#0of4"), None);
        assert_eq!(parse_unit("docs", "docs#5of4"), None);
        assert_eq!(parse_unit("docs", "docs#1of1"), None);
    }
}
