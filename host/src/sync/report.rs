//! What a round did, in numbers: one summary line per round.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::store::Side;

/// Counts for one side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SideCounts {
    /// Documents read from this side's change feed.
    pub read: u64,
    /// Documents written to this side.
    pub written: u64,
    /// Documents deleted from this side.
    pub deleted: u64,
}

/// Requests sent to each store, by kind (Elasticsearch's API, `search`, `bulk`, ...; the
/// kind of Cassandra statement, `write`, `ledger_read`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requests {
    /// To Elasticsearch.
    pub elasticsearch: BTreeMap<&'static str, u64>,
    /// To Cassandra.
    pub cassandra: BTreeMap<&'static str, u64>,
}

impl Requests {
    /// What was sent between two snapshots of each store's counts.
    pub fn between(
        before: &Requests,
        elasticsearch: BTreeMap<&'static str, u64>,
        cassandra: BTreeMap<&'static str, u64>,
    ) -> Requests {
        let since = |now: BTreeMap<&'static str, u64>, then: &BTreeMap<&'static str, u64>| {
            now.into_iter()
                .map(|(kind, n)| (kind, n - then.get(kind).copied().unwrap_or(0).min(n)))
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        Requests {
            elasticsearch: since(elasticsearch, &before.elasticsearch),
            cassandra: since(cassandra, &before.cassandra),
        }
    }

    /// All the requests to Elasticsearch, and to Cassandra.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.elasticsearch.values().sum(),
            self.cassandra.values().sum(),
        )
    }
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoundReport {
    /// The round's number since the process started (1 is the first).
    pub number: u64,
    /// Elasticsearch's counts.
    pub elasticsearch: SideCounts,
    /// Cassandra's counts.
    pub cassandra: SideCounts,
    /// Ids found equal on both sides (nothing to do).
    pub in_sync: u64,
    /// Versions read back as essync left them (its own writes), recognised from the ledger
    /// without reading the other side.
    pub unchanged: u64,
    /// Ids both sides changed since the last sync: resolved by the policy.
    pub conflicts: u64,
    /// Ids the policy kept out of the sync.
    pub filtered: u64,
    /// Ids outside the synced indices.
    pub out_of_scope: u64,
    /// Writes that found the stored version changed since it was read; retried later.
    pub changed_underneath: u64,
    /// Documents that failed (bad data, refused writes, policy failures); recorded for retry.
    pub errors: u64,
    /// Ids retried from earlier failures.
    pub retried: u64,
    /// How long the round took.
    pub duration: Duration,
    /// How old the oldest change this round could pick up was: the time since the previous
    /// round started (or since this one started, for the first).
    pub lag: Duration,
    /// Whether the round stopped early (a stop was asked for).
    pub interrupted: bool,
    /// The requests the round sent to each store.
    pub requests: Requests,
    /// The ids counted in `filtered`: a row the policy keeps out can be read more than once in
    /// a round (the feed's safety window, the sweep), and is counted once.
    pub filtered_ids: std::collections::HashSet<uuid::Uuid>,
}

impl RoundReport {
    /// The counts of one side.
    pub fn side_mut(&mut self, side: Side) -> &mut SideCounts {
        match side {
            Side::Elasticsearch => &mut self.elasticsearch,
            Side::Cassandra => &mut self.cassandra,
        }
    }

    /// Counts an id the policy kept out, once per round; returns whether it was new.
    pub(crate) fn count_filtered(&mut self, id: uuid::Uuid) -> bool {
        let new = self.filtered_ids.insert(id);
        if new {
            self.filtered += 1;
        }
        new
    }

    /// Documents written, both sides together.
    pub fn written(&self) -> u64 {
        self.elasticsearch.written + self.cassandra.written
    }

    /// Logs the round's summary at INFO: one line for people (the message, as [`Display`]
    /// writes it, marked when nothing was written because of `--dry-run`), and the same figures
    /// as fields for programs, named `report.*`: one per counter, the durations in seconds. The
    /// JSON log format carries the fields; the text format leaves them out, since the message
    /// says them.
    ///
    /// [`Display`]: fmt::Display
    pub fn log(&self, dry_run: bool) {
        let (es_requests, cassandra_requests) = self.requests.totals();
        let note = if dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        };
        // The summary has always been logged as the sync's (`essync::sync`), not as this
        // module's: filters and readers name that target. The fields go in braces: written bare,
        // a dotted first field is ambiguous to the macro.
        tracing::info!(
            target: "essync::sync",
            {
                report.round = self.number,
                report.es_read = self.elasticsearch.read,
                report.es_written = self.elasticsearch.written,
                report.es_deleted = self.elasticsearch.deleted,
                report.cassandra_read = self.cassandra.read,
                report.cassandra_written = self.cassandra.written,
                report.cassandra_deleted = self.cassandra.deleted,
                report.conflicts = self.conflicts,
                report.in_sync = self.in_sync,
                report.filtered = self.filtered,
                report.errors = self.errors,
                report.own_writes_read_back = self.unchanged,
                report.changed_underneath = self.changed_underneath,
                report.out_of_scope = self.out_of_scope,
                report.retried = self.retried,
                report.es_requests = es_requests,
                report.cassandra_requests = cassandra_requests,
                report.duration_s = self.duration.as_secs_f64(),
                report.lag_s = self.lag.as_secs_f64(),
                report.stopped_early = self.interrupted,
                report.dry_run = dry_run
            },
            "{self}{note}"
        );
    }
}

impl fmt::Display for RoundReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "round {}: read es {} / cassandra {}; wrote es {} / cassandra {}; conflicts {}, \
             in sync {}, filtered {}, errors {}",
            self.number,
            self.elasticsearch.read,
            self.cassandra.read,
            self.elasticsearch.written,
            self.cassandra.written,
            self.conflicts,
            self.in_sync,
            self.filtered,
            self.errors,
        )?;
        let deleted = (self.elasticsearch.deleted, self.cassandra.deleted);
        if deleted != (0, 0) {
            write!(f, ", deleted es {} / cassandra {}", deleted.0, deleted.1)?;
        }
        if self.unchanged > 0 {
            write!(f, ", own writes read back {}", self.unchanged)?;
        }
        if self.changed_underneath > 0 {
            write!(f, ", changed underneath {}", self.changed_underneath)?;
        }
        if self.out_of_scope > 0 {
            write!(f, ", out of scope {}", self.out_of_scope)?;
        }
        if self.retried > 0 {
            write!(f, ", retried {}", self.retried)?;
        }
        let (es, cassandra) = self.requests.totals();
        write!(f, ", requests es {es} / cassandra {cassandra}")?;
        write!(
            f,
            "; {:.2}s, lag {:.1}s",
            self.duration.as_secs_f64(),
            self.lag.as_secs_f64()
        )?;
        if self.interrupted {
            write!(f, " (stopped early)")?;
        }
        Ok(())
    }
}
