//! The lease of a table: one essync process syncs a table at a time. A second process started on
//! the same table (a rolling deploy, an overlapping restart, an operator's second copy) waits
//! until the first stops, then takes over from the saved checkpoint.
//!
//! The lease is a row of `KEYSPACE.essync_leases`, claimed with a lightweight transaction
//! (`INSERT ... IF NOT EXISTS USING TTL`), renewed while the holder works and sleeps
//! (`UPDATE ... USING TTL ... IF owner = ?`), and deleted when it stops. A holder that dies
//! stops renewing: its lease lapses after its TTL (`--lease-ttl`, default [`LEASE_TTL`]), or at
//! once when the holder was a process
//! of this host that no longer runs (a crash, `kill -9`, a container restarted in its pod).
//!
//! A holder that was frozen or cut off past the TTL may find its lease taken: it writes nothing
//! more, and stops with an error (its supervisor restarts it, and it waits its turn). Three
//! fences keep what it still had in flight from undoing the new holder's work:
//!
//! - **Confirmation before writing.** The ledger's writes and each checkpoint are made only
//!   after the lease was confirmed within a third of the TTL (its renewal period), on this
//!   process's monotonic clock, which keeps counting while a process is frozen.
//! - **The epoch** (see [`super::checkpoint`]): each holder raises the sync's epoch once, and a
//!   checkpoint is saved only while the epoch is still its own.
//! - **Write times** ([`WriteFence`]): the ledger's writes carry a write time no later than the
//!   lease could still be in force. A write that was held up (frozen between the confirmation
//!   and its request) carries an older write time than any write of the next holder, and loses
//!   to it cell by cell. This assumes the hosts' clocks agree within a third of the TTL (10 s
//!   by default).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use uuid::Uuid;

use crate::cassandra::cql::Cql;
use crate::cassandra::write::was_applied;
use crate::cassandra::{CassandraError, TokenRange, create_table};
use crate::sync::ranges;
use crate::sync::{Stop, SyncError};

/// The table of leases, one row per synced table of the keyspace.
pub const LEASE_TABLE: &str = "essync_leases";

/// How long a lease lasts without renewal by default: how long a table waits for a holder that
/// died elsewhere (on this host, a dead holder is replaced at once). The holder renews it every
/// third of that, and a confirmation serves that long for its writes.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// How often a waiting process checks the lease.
const LEASE_CHECK: Duration = Duration::from_secs(2);

/// The write times this process gives the ledger's writes while it holds a lease: its clock's,
/// strictly increasing, and never later than a third of the TTL (the clock skew allowed between
/// hosts) before the earliest moment its lease could lapse (the wall time of the request that
/// last confirmed it, plus the TTL).
///
/// A holder renews before it writes, so that bound never bites a healthy one. A holder frozen
/// between its confirmation and a write writes, once thawed, at most at that bound: before the
/// next holder could take the lease, so every cell the next holder writes wins over it.
#[derive(Debug)]
pub struct WriteFence {
    /// How long after a confirmation's request its write times may reach, in microseconds.
    reach: i64,
    /// The latest write time allowed, in microseconds since the epoch.
    until: AtomicI64,
    /// The last write time given.
    last: AtomicI64,
}

impl WriteFence {
    fn new(ttl: Duration) -> Self {
        Self {
            reach: (ttl - ttl / 3).as_micros() as i64,
            // Never confirmed: the epoch's first microsecond, older than any real write.
            until: AtomicI64::new(0),
            last: AtomicI64::new(i64::MIN),
        }
    }

    /// Allows write times up to the bound of a lease confirmed by a request sent at `sent_at`
    /// (milliseconds since the epoch).
    fn confirmed(&self, sent_at: i64) {
        let until = sent_at.saturating_mul(1000).saturating_add(self.reach);
        self.until.fetch_max(until, Ordering::SeqCst);
    }

    /// The write time of the next write.
    pub fn stamp(&self) -> i64 {
        let now = Utc::now().timestamp_micros();
        let until = self.until.load(Ordering::SeqCst);
        let mut last = self.last.load(Ordering::SeqCst);
        loop {
            let stamp = now.max(last.saturating_add(1)).min(until);
            match self.last.compare_exchange_weak(
                last,
                stamp.max(last),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return stamp,
                Err(seen) => last = seen,
            }
        }
    }
}

/// What confirming a lease found.
#[derive(Debug)]
pub(crate) enum Confirmation {
    /// It is still this process's.
    Held,
    /// It had lapsed (Cassandra was out of reach longer than the TTL), and was taken again:
    /// another process may have held it meanwhile (the epoch says).
    Retaken,
    /// Another process holds it.
    Lost(Holder),
}

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

impl Holder {
    /// Whether this is a process of this host that no longer runs (a crash, `kill -9`).
    pub fn gone_from_this_host(&self) -> bool {
        self.host == host_name() && !process_runs(self.pid)
    }
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
    /// Another live process holds a lease of the same table under another range count (see
    /// [`crate::sync::ranges`]): this one may sync nothing of it until that one is gone.
    Elsewhere {
        /// The other process's range count.
        ranges: u32,
        /// The other process.
        holder: Holder,
    },
}

/// This process's lease on one table.
pub struct Lease {
    cql: Cql,
    keyspace: String,
    /// The synced table.
    synced: String,
    /// The part of it this lease is for.
    range: TokenRange,
    /// The lease's row: [`ranges::unit_name`] of the two above.
    sync: String,
    table: String,
    me: Holder,
    claim: PreparedStatement,
    renew: PreparedStatement,
    release: PreparedStatement,
    read: PreparedStatement,
    /// How long the lease lasts without renewal.
    ttl: Duration,
    /// When the lease was last confirmed as this process's.
    confirmed: Option<Instant>,
    /// The write times allowed under it.
    fence: Arc<WriteFence>,
}

impl Lease {
    /// Takes the lease of `cassandra`'s table for `ttl` (renewed every third of it), waiting
    /// while another live process holds it (said once per holder, at INFO), and trying again
    /// after a transient failure (said at WARN when the failure is new, and every
    /// [`FAILURES_SAID_EVERY`] tries while it lasts; each try at DEBUG). `None` when `stop` was
    /// set while waiting.
    pub async fn acquire(
        cassandra: &crate::cassandra::CassandraStore,
        range: TokenRange,
        ttl: Duration,
        stop: &Stop,
    ) -> Result<Option<Lease>, SyncError> {
        let config = cassandra.config();
        let cql = cassandra.cql();
        let mut lease = Lease::open(cql, &config.keyspace, &config.table, range, ttl).await?;
        let mut waiting_for = None;
        let mut failing = Failing::default();
        loop {
            match lease.claim().await {
                Ok(Claim::Held) => {
                    if waiting_for.is_some() {
                        tracing::info!("the other essync is gone; this one takes over");
                    }
                    failing.ended();
                    return Ok(Some(lease));
                }
                Ok(Claim::Busy(holder)) => {
                    if waiting_for.as_ref() != Some(&holder.owner) {
                        tracing::info!(
                            "{}.{} is synced by another essync ({holder}); waiting until it \
                             stops (its lease lapses at most {}s after it dies)",
                            config.keyspace,
                            config.table,
                            lease.ttl.as_secs()
                        );
                        waiting_for = Some(holder.owner);
                    }
                }
                Ok(Claim::Elsewhere { ranges, holder }) => {
                    if waiting_for.as_ref() != Some(&holder.owner) {
                        tracing::info!(
                            "{}.{} is synced in {ranges} range(s) by another essync ({holder}); \
                             this one syncs it in {} and waits until that one stops (pass \
                             --ranges {ranges} to share the work with it)",
                            config.keyspace,
                            config.table,
                            range.count,
                        );
                        waiting_for = Some(holder.owner);
                    }
                }
                // A lightweight transaction that timed out (a busy or degraded cluster) may
                // have applied: the next claim finds this process's own row and renews it.
                Err(e) if e.is_transient() => failing.again(&e),
                Err(e) => return Err(e.into()),
            }
            if stop.sleep(LEASE_CHECK).await {
                return Ok(None);
            }
        }
    }

    /// Creates the lease table when missing and prepares its statements for a lease of
    /// `range` of `cassandra`'s table lasting `ttl`; claims nothing yet.
    pub async fn of_range(
        cassandra: &crate::cassandra::CassandraStore,
        range: TokenRange,
        ttl: Duration,
    ) -> Result<Self, CassandraError> {
        let config = cassandra.config();
        Self::open(cassandra.cql(), &config.keyspace, &config.table, range, ttl).await
    }

    /// [`Lease::of_range`], from the parts of a store.
    pub(crate) async fn open(
        cql: &Cql,
        keyspace: &str,
        table: &str,
        range: TokenRange,
        ttl: Duration,
    ) -> Result<Self, CassandraError> {
        let synced = table;
        let sync = &ranges::unit_name(synced, range);
        let table = format!("{keyspace}.{LEASE_TABLE}");
        cql.change_schema(
            create_table(
                keyspace,
                LEASE_TABLE,
                "sync text PRIMARY KEY, owner uuid, host text, pid int, since timestamp",
            ),
            &format!("to create {table}"),
        )
        .await?;
        let action = format!("to prepare the statements of {table}");
        let prepare = |cql_text: String| cql.prepare("lease", cql_text, &action);
        Ok(Self {
            claim: prepare(format!(
                "INSERT INTO {table} (sync, owner, host, pid, since) VALUES (?, ?, ?, ?, ?) \
                 IF NOT EXISTS USING TTL {}",
                ttl.as_secs()
            ))
            .await?,
            renew: prepare(format!(
                "UPDATE {table} USING TTL {} SET owner = ?, host = ?, pid = ?, since = ? \
                 WHERE sync = ? IF owner = ?",
                ttl.as_secs()
            ))
            .await?,
            release: prepare(format!("DELETE FROM {table} WHERE sync = ? IF owner = ?")).await?,
            read: prepare(format!(
                "SELECT owner, host, pid, since FROM {table} WHERE sync = ?"
            ))
            .await?,
            cql: cql.clone(),
            keyspace: keyspace.to_string(),
            synced: synced.to_string(),
            range,
            sync: sync.to_string(),
            table,
            me: Holder {
                owner: Uuid::new_v4(),
                host: host_name(),
                pid: std::process::id() as i32,
                since: None,
            },
            ttl,
            confirmed: None,
            fence: Arc::new(WriteFence::new(ttl)),
        })
    }

    /// Claims the lease: free, lapsed, already this process's, or held by a process of this
    /// host that no longer runs; then, once held, makes sure no process holds a lease of the
    /// table under another range count (else gives it up again). Checking after the claim is
    /// what makes two processes of different counts that claim at once never both go on: the
    /// later of the two checks sees the other's lease.
    pub async fn claim(&mut self) -> Result<Claim, CassandraError> {
        let claim = self.claim_row().await?;
        if !matches!(claim, Claim::Held) {
            return Ok(claim);
        }
        let leases = ranges::leases_of(&self.cql, &self.keyspace, &self.synced).await?;
        match leases.other_count(self.range.count) {
            None => Ok(Claim::Held),
            Some((range, holder)) => {
                let claim = Claim::Elsewhere {
                    ranges: range.count,
                    holder: holder.clone(),
                };
                self.release().await;
                Ok(claim)
            }
        }
    }

    /// Claims the lease's row (see [`Lease::claim`]).
    async fn claim_row(&mut self) -> Result<Claim, CassandraError> {
        let action = format!("to claim the lease of {}", self.sync);
        // Each pass ends with the lease held, or held by another live process; another pass
        // only follows a change of holder between two requests.
        loop {
            let since = CqlTimestamp(Utc::now().timestamp_millis());
            let values = (&self.sync, self.me.owner, &self.me.host, self.me.pid, since);
            let result = self.cql.execute(&self.claim, values, &action).await?;
            if was_applied(&action, result)? {
                return Ok(self.confirmed_by(since));
            }
            // `None`: it lapsed between the two requests.
            let Some(holder) = self.holder().await? else {
                continue;
            };
            if holder.owner != self.me.owner && !self.is_dead(&holder) {
                return Ok(Claim::Busy(holder));
            }
            if let Some(sent_at) = self.renew_as(holder.owner).await? {
                if holder.owner != self.me.owner {
                    tracing::info!(
                        "took over the lease of {} from a process of this host that no longer \
                         runs ({holder})",
                        self.sync
                    );
                }
                return Ok(self.confirmed_by(sent_at));
            }
        }
    }

    /// Confirms the lease when its last confirmation is older than [`Lease::renewal`]. A lease
    /// that lapsed with nobody holding it now (Cassandra was out of reach longer than the TTL)
    /// is claimed again.
    pub(crate) async fn confirm(&mut self) -> Result<Confirmation, CassandraError> {
        match self.confirmed {
            Some(at) if at.elapsed() < self.renewal() => return Ok(Confirmation::Held),
            _ => {}
        }
        if let Some(sent_at) = self.renew_as(self.me.owner).await? {
            self.confirmed_by(sent_at);
            return Ok(Confirmation::Held);
        }
        match self.claim().await? {
            Claim::Held => {
                tracing::info!("the lease of {} had lapsed; taken again", self.sync);
                Ok(Confirmation::Retaken)
            }
            Claim::Busy(holder) | Claim::Elsewhere { holder, .. } => {
                self.confirmed = None;
                Ok(Confirmation::Lost(holder))
            }
        }
    }

    /// How often the lease is renewed, and how long a confirmation serves for writes: a third
    /// of its TTL.
    pub fn renewal(&self) -> Duration {
        self.ttl / 3
    }

    /// The write times allowed under this lease.
    pub(crate) fn fence(&self) -> Arc<WriteFence> {
        self.fence.clone()
    }

    /// Gives the lease up, so that a waiting process takes over at once. A failure is only
    /// logged: the lease lapses after its TTL anyway.
    pub(crate) async fn release(&mut self) {
        if self.confirmed.take().is_none() {
            return;
        }
        if !self.range.is_whole() {
            // Said before the lease goes: another process may take the range up at once.
            tracing::info!("releasing {}", self.range);
        }
        let action = format!("to release the lease of {}", self.sync);
        let values = (&self.sync, self.me.owner);
        if let Err(e) = self.cql.execute(&self.release, values, &action).await {
            tracing::warn!("{e}; the lease lapses within {}s", self.ttl.as_secs());
        }
    }

    /// The lease table, for messages.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The part of the table this lease is for.
    pub fn range(&self) -> TokenRange {
        self.range
    }

    /// The process holding (or claiming) it: this one.
    pub fn me(&self) -> &Holder {
        &self.me
    }

    /// Notes a confirmation by a request sent at `sent_at`.
    fn confirmed_by(&mut self, sent_at: CqlTimestamp) -> Claim {
        // Counted from when the request was sent: the lease lasts the TTL from when it was
        // applied, which is no earlier.
        let in_flight = (Utc::now().timestamp_millis() - sent_at.0).max(0) as u64;
        let now = Instant::now();
        self.confirmed = Some(
            now.checked_sub(Duration::from_millis(in_flight))
                .unwrap_or(now),
        );
        self.fence.confirmed(sent_at.0);
        Claim::Held
    }

    /// Renews the lease for this process, if `owner` holds it now; returns when the renewal
    /// was sent, if it applied.
    async fn renew_as(&self, owner: Uuid) -> Result<Option<CqlTimestamp>, CassandraError> {
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
        Ok(was_applied(&action, result)?.then_some(since))
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

/// While claiming the lease keeps failing for a transient reason, how many tries pass between
/// two WARN lines (about a minute at [`LEASE_CHECK`]).
const FAILURES_SAID_EVERY: u32 = 30;

/// A run of transient failures to claim the lease: said at WARN when it starts or its reason
/// changes, then every [`FAILURES_SAID_EVERY`] tries, so that a cluster down for an hour does
/// not fill the log with a line every [`LEASE_CHECK`].
#[derive(Default)]
struct Failing {
    /// Failed tries in the run.
    tries: u32,
    /// Failed tries since the last WARN line.
    unsaid: u32,
    /// The reason of the last failure.
    last: Option<String>,
}

impl Failing {
    fn again(&mut self, error: &CassandraError) {
        let reason = error.to_string();
        self.tries += 1;
        self.unsaid += 1;
        let retry = LEASE_CHECK.as_secs();
        if self.last.as_deref() != Some(reason.as_str()) {
            tracing::warn!("{reason}; trying again every {retry}s");
            self.last = Some(reason);
            self.unsaid = 0;
        } else if self.unsaid >= FAILURES_SAID_EVERY {
            tracing::warn!("{reason}; still failing after {} tries", self.tries);
            self.unsaid = 0;
        } else {
            tracing::debug!("{reason}; trying again in {retry}s");
        }
    }

    fn ended(&mut self) {
        if self.last.take().is_some() {
            tracing::info!("the lease is claimed after {} failed tries", self.tries);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::logs_of;

    /// A lasting failure to claim the lease is said when it starts, when its reason changes and
    /// every [`FAILURES_SAID_EVERY`] tries, not at every try; its end is said once.
    #[test]
    fn a_lasting_failure_to_claim_is_said_now_and_then_not_at_every_try() {
        let failure = |reason: &str| CassandraError::Unreachable {
            nodes: "127.0.0.1:9042".to_string(),
            reason: reason.to_string(),
        };
        let logs = logs_of(|| {
            let mut failing = Failing::default();
            for _ in 0..65 {
                failing.again(&failure("connection refused"));
            }
            failing.again(&failure("timed out"));
            failing.ended();
        });
        let warnings: Vec<&str> = logs.lines().filter(|l| l.contains(" WARN ")).collect();
        assert_eq!(warnings.len(), 4, "{logs}");
        assert!(warnings[0].contains("connection refused"), "{logs}");
        assert!(
            warnings[1].contains("still failing after 31 tries"),
            "{logs}"
        );
        assert!(
            warnings[2].contains("still failing after 61 tries"),
            "{logs}"
        );
        assert!(warnings[3].contains("timed out"), "{logs}");
        assert!(
            logs.contains("the lease is claimed after 66 failed tries"),
            "{logs}"
        );
    }

    #[test]
    fn this_process_runs_and_a_pid_that_does_not_exist_does_not() {
        assert!(process_runs(std::process::id() as i32));
        assert!(!process_runs(i32::MAX));
    }

    #[test]
    fn write_times_increase_and_never_pass_the_leases_reach() {
        let fence = WriteFence::new(Duration::from_secs(30));
        let now_ms = Utc::now().timestamp_millis();
        fence.confirmed(now_ms);
        let stamps: Vec<i64> = (0..1000).map(|_| fence.stamp()).collect();
        assert!(stamps.windows(2).all(|w| w[0] < w[1]), "not increasing");
        let first = stamps[0];
        assert!((first - now_ms * 1000).abs() < 5_000_000, "not the clock's");

        // Confirmed 25 s ago: its writes carry at most 20 s after that request, whatever the
        // clock says now (a process thawed after a freeze).
        let fence = WriteFence::new(Duration::from_secs(30));
        let long_ago = now_ms - 25_000;
        fence.confirmed(long_ago);
        let until = long_ago * 1000 + 20_000_000;
        assert_eq!(fence.stamp(), until);
        assert_eq!(fence.stamp(), until);
        // A later confirmation moves the bound; an older one does not take it back.
        fence.confirmed(now_ms);
        fence.confirmed(long_ago);
        assert!(fence.stamp() > until);

        // Never confirmed: nothing it writes can win over anyone's write.
        assert_eq!(WriteFence::new(Duration::from_secs(30)).stamp(), 0);
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
