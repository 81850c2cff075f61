//! The lease of a table: one essync process syncs a table at a time. A second process started on
//! the same table (a rolling deploy, an overlapping restart, an operator's second copy) waits
//! until the first stops, then takes over from the saved checkpoint.
//!
//! The lease is a row of `KEYSPACE.essync_leases`, claimed with a lightweight transaction
//! (`INSERT ... IF NOT EXISTS USING TTL`), renewed while the holder works and sleeps
//! (`UPDATE ... USING TTL ... IF owner = ?`), and deleted when it stops. A holder that dies
//! stops renewing: its lease lapses after [`LEASE_TTL`], or at once when the holder was a process
//! of this host that no longer runs (a crash, `kill -9`, a container restarted in its pod).
//!
//! A holder that was frozen or cut off past the TTL may find its lease taken: it saves no
//! checkpoint after that, and stops with an error (its supervisor restarts it, and it waits its
//! turn). A checkpoint is saved only after the lease was confirmed within a third of the TTL,
//! on this process's monotonic clock, which keeps counting while a process is frozen.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use uuid::Uuid;

use crate::cassandra::CassandraError;
use crate::cassandra::cql::Cql;
use crate::cassandra::write::was_applied;
use crate::sync::{Stop, SyncError};

/// The table of leases, one row per synced table of the keyspace.
pub const LEASE_TABLE: &str = "essync_leases";

/// How long a lease lasts without renewal: how long a table waits for a holder that died
/// elsewhere (on this host, a dead holder is replaced at once).
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// How often the holder renews its lease (and how fresh a confirmation must be to save a
/// checkpoint).
pub const LEASE_RENEWAL: Duration = Duration::from_secs(10);

/// How often a waiting process checks the lease.
const LEASE_CHECK: Duration = Duration::from_secs(2);

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The holding process's own id (new at each start).
    pub owner: Uuid,
    /// Its host name.
    pub host: String,
    /// Its process id on that host.
    pub pid: i32,
    /// When it took the lease.
    pub since: Option<DateTime<Utc>>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host {}, pid {}", self.host, self.pid)?;
        if let Some(since) = self.since {
            write!(f, ", since {}", since.format("%Y-%m-%dT%H:%M:%SZ"))?;
        }
        Ok(())
    }
}

/// The answer to a claim.
#[derive(Debug)]
pub enum Claim {
    /// The lease is this process's.
    Held,
    /// Another live process holds it.
    Busy(Holder),
}

/// This process's lease on one table.
pub struct Lease {
    cql: Cql,
    sync: String,
    table: String,
    me: Holder,
    claim: PreparedStatement,
    renew: PreparedStatement,
    release: PreparedStatement,
    read: PreparedStatement,
    /// When the lease was last confirmed as this process's.
    confirmed: Option<Instant>,
}

impl Lease {
    /// Takes the lease of `cassandra`'s table, waiting while another live process holds it
    /// (said once per holder, at INFO). `None` when `stop` was set while waiting.
    pub async fn acquire(
        cassandra: &crate::cassandra::CassandraStore,
        stop: &Stop,
    ) -> Result<Option<Lease>, SyncError> {
        let config = cassandra.config();
        let mut lease = Lease::open(cassandra.cql(), &config.keyspace, &config.table).await?;
        let mut waiting_for = None;
        loop {
            match lease.claim().await? {
                Claim::Held => {
                    if waiting_for.is_some() {
                        tracing::info!("the other essync is gone; this one takes over");
                    }
                    return Ok(Some(lease));
                }
                Claim::Busy(holder) => {
                    if waiting_for.as_ref() != Some(&holder.owner) {
                        tracing::info!(
                            "{}.{} is synced by another essync ({holder}); waiting until it \
                             stops (its lease lapses {}s after it dies)",
                            config.keyspace,
                            config.table,
                            LEASE_TTL.as_secs()
                        );
                        waiting_for = Some(holder.owner);
                    }
                }
            }
            if stop.sleep(LEASE_CHECK).await {
                return Ok(None);
            }
        }
    }

    /// Creates the lease table when missing and prepares its statements; claims nothing yet.
    pub(crate) async fn open(
        cql: &Cql,
        keyspace: &str,
        sync: &str,
    ) -> Result<Self, CassandraError> {
        let table = format!("{keyspace}.{LEASE_TABLE}");
        cql.query(
            "schema",
            format!(
                "CREATE TABLE IF NOT EXISTS {table} \
                 (sync text PRIMARY KEY, owner uuid, host text, pid int, since timestamp)"
            ),
            (),
            &format!("to create {table}"),
        )
        .await?;
        let action = format!("to prepare the statements of {table}");
        let prepare = |cql_text: String| cql.prepare("lease", cql_text, &action);
        Ok(Self {
            claim: prepare(format!(
                "INSERT INTO {table} (sync, owner, host, pid, since) VALUES (?, ?, ?, ?, ?) \
                 IF NOT EXISTS USING TTL {}",
                LEASE_TTL.as_secs()
            ))
            .await?,
            renew: prepare(format!(
                "UPDATE {table} USING TTL {} SET owner = ?, host = ?, pid = ?, since = ? \
                 WHERE sync = ? IF owner = ?",
                LEASE_TTL.as_secs()
            ))
            .await?,
            release: prepare(format!("DELETE FROM {table} WHERE sync = ? IF owner = ?")).await?,
            read: prepare(format!(
                "SELECT owner, host, pid, since FROM {table} WHERE sync = ?"
            ))
            .await?,
            cql: cql.clone(),
            sync: sync.to_string(),
            table,
            me: Holder {
                owner: Uuid::new_v4(),
                host: host_name(),
                pid: std::process::id() as i32,
                since: None,
            },
            confirmed: None,
        })
    }

    /// Claims the lease: free, lapsed, already this process's, or held by a process of this
    /// host that no longer runs.
    pub(crate) async fn claim(&mut self) -> Result<Claim, CassandraError> {
        let action = format!("to claim the lease of {}", self.sync);
        // Each pass ends with the lease held, or held by another live process; another pass
        // only follows a change of holder between two requests.
        loop {
            let since = CqlTimestamp(Utc::now().timestamp_millis());
            let values = (&self.sync, self.me.owner, &self.me.host, self.me.pid, since);
            let result = self.cql.execute(&self.claim, values, &action).await?;
            if was_applied(&action, result)? {
                return self.confirm_now();
            }
            // `None`: it lapsed between the two requests.
            let Some(holder) = self.holder().await? else {
                continue;
            };
            if holder.owner != self.me.owner && !self.is_dead(&holder) {
                return Ok(Claim::Busy(holder));
            }
            if self.renew_as(holder.owner).await? {
                if holder.owner != self.me.owner {
                    tracing::info!(
                        "took over the lease of {} from a process of this host that no longer \
                         runs ({holder})",
                        self.sync
                    );
                }
                return self.confirm_now();
            }
        }
    }

    /// Confirms the lease when its last confirmation is older than [`LEASE_RENEWAL`]; returns
    /// the holder that took it, if another process did. A lease that lapsed with nobody taking
    /// it (Cassandra was out of reach longer than the TTL) is claimed again.
    pub(crate) async fn confirm(&mut self) -> Result<Option<Holder>, CassandraError> {
        match self.confirmed {
            Some(at) if at.elapsed() < LEASE_RENEWAL => return Ok(None),
            _ => {}
        }
        if self.renew_as(self.me.owner).await? {
            self.confirmed = Some(Instant::now());
            return Ok(None);
        }
        match self.claim().await? {
            Claim::Held => {
                tracing::info!("the lease of {} had lapsed; taken again", self.sync);
                Ok(None)
            }
            Claim::Busy(holder) => {
                self.confirmed = None;
                Ok(Some(holder))
            }
        }
    }

    /// Gives the lease up, so that a waiting process takes over at once. A failure is only
    /// logged: the lease lapses after its TTL anyway.
    pub(crate) async fn release(&mut self) {
        if self.confirmed.take().is_none() {
            return;
        }
        let action = format!("to release the lease of {}", self.sync);
        let values = (&self.sync, self.me.owner);
        if let Err(e) = self.cql.execute(&self.release, values, &action).await {
            tracing::warn!("{e}; the lease lapses within {}s", LEASE_TTL.as_secs());
        }
    }

    /// The lease table, for messages.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn confirm_now(&mut self) -> Result<Claim, CassandraError> {
        self.confirmed = Some(Instant::now());
        Ok(Claim::Held)
    }

    /// Renews the lease for this process, if `owner` holds it now.
    async fn renew_as(&self, owner: Uuid) -> Result<bool, CassandraError> {
        let since = CqlTimestamp(Utc::now().timestamp_millis());
        let action = format!("to renew the lease of {}", self.sync);
        let values = (
            self.me.owner,
            &self.me.host,
            self.me.pid,
            since,
            &self.sync,
            owner,
        );
        let result = self.cql.execute(&self.renew, values, &action).await?;
        was_applied(&action, result)
    }

    /// Who holds the lease now, if anyone.
    pub(crate) async fn holder(&self) -> Result<Option<Holder>, CassandraError> {
        let action = format!("to read the lease of {}", self.sync);
        let rows = self
            .cql
            .execute(&self.read, (&self.sync,), &action)
            .await?
            .into_rows_result()
            .map_err(|e| CassandraError::protocol(&action, e))?;
        type LeaseRow = (
            Option<Uuid>,
            Option<String>,
            Option<i32>,
            Option<CqlTimestamp>,
        );
        let row = rows
            .maybe_first_row::<LeaseRow>()
            .map_err(|e| CassandraError::protocol(&action, e))?;
        Ok(row.and_then(|(owner, host, pid, since)| {
            Some(Holder {
                owner: owner?,
                host: host.unwrap_or_default(),
                pid: pid.unwrap_or_default(),
                since: since.and_then(|t| DateTime::from_timestamp_millis(t.0)),
            })
        }))
    }

    /// Whether `holder` is a process of this host that no longer runs (this very pid held by
    /// another owner is an earlier life of this process: a container restarted in its pod).
    fn is_dead(&self, holder: &Holder) -> bool {
        holder.host == self.me.host && (holder.pid == self.me.pid || !process_runs(holder.pid))
    }
}

/// Whether a process of this host runs (a zombie, killed and not yet reaped, does not).
fn process_runs(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command's closing parenthesis.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X" | "x"))
}

/// This host's name, as the kernel knows it.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_and_a_pid_that_does_not_exist_does_not() {
        assert!(process_runs(std::process::id() as i32));
        assert!(!process_runs(i32::MAX));
    }

    #[test]
    fn a_holder_says_where_it_runs() {
        let holder = Holder {
            owner: Uuid::nil(),
            host: "web-1".into(),
            pid: 42,
            since: DateTime::from_timestamp_millis(0),
        };
        assert_eq!(
            holder.to_string(),
            "host web-1, pid 42, since 1970-01-01T00:00:00Z"
        );
    }
}
