//! Counters of a running sync, in the Prometheus text format (served by the binary's
//! `--metrics ADDRESS`).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::report::RoundReport;

/// What a sync has done since the process started.
#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<State>,
}

#[derive(Debug, Default, Clone)]
struct State {
    rounds: u64,
    failed_rounds: u64,
    read: [u64; 2],
    written: [u64; 2],
    deleted: [u64; 2],
    in_sync: u64,
    conflicts: u64,
    filtered: u64,
    out_of_scope: u64,
    changed_underneath: u64,
    errors: u64,
    failed_documents: u64,
    reconciling: bool,
    last_duration: f64,
    last_lag: f64,
    last_round_end: f64,
    /// Requests sent, by store and kind.
    requests: std::collections::BTreeMap<(&'static str, &'static str), u64>,
}

impl Metrics {
    /// No rounds yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a finished round; `failed_documents` is how many are recorded as failed now.
    pub fn round(&self, report: &RoundReport, failed_documents: usize, reconciling: bool) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        s.rounds += 1;
        s.read[0] += report.elasticsearch.read;
        s.read[1] += report.cassandra.read;
        s.written[0] += report.elasticsearch.written;
        s.written[1] += report.cassandra.written;
        s.deleted[0] += report.elasticsearch.deleted;
        s.deleted[1] += report.cassandra.deleted;
        s.in_sync += report.in_sync;
        s.conflicts += report.conflicts;
        s.filtered += report.filtered;
        s.out_of_scope += report.out_of_scope;
        s.changed_underneath += report.changed_underneath;
        s.errors += report.errors;
        s.failed_documents = failed_documents as u64;
        s.reconciling = reconciling;
        for (store, counts) in [
            ("elasticsearch", &report.requests.elasticsearch),
            ("cassandra", &report.requests.cassandra),
        ] {
            for (kind, n) in counts {
                *s.requests.entry((store, kind)).or_default() += n;
            }
        }
        s.last_duration = report.duration.as_secs_f64();
        s.last_lag = report.lag.as_secs_f64();
        s.last_round_end = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
    }

    /// Counts a round that failed as a whole (a store unreachable, say).
    pub fn failed_round(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.failed_rounds += 1;
        }
    }

    /// The Prometheus text exposition of the counters.
    pub fn render(&self) -> String {
        let s = self.state.lock().map(|s| s.clone()).unwrap_or_default();
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, values: &[(&str, f64)]| {
            let _ = writeln!(out, "# HELP essync_{name} {help}");
            let _ = writeln!(out, "# TYPE essync_{name} {kind}");
            for (labels, value) in values {
                let _ = writeln!(out, "essync_{name}{labels} {value}");
            }
        };
        let sides = |v: [u64; 2]| {
            [
                ("{side=\"elasticsearch\"}", v[0] as f64),
                ("{side=\"cassandra\"}", v[1] as f64),
            ]
        };
        metric(
            "rounds_total",
            "counter",
            "Rounds finished.",
            &[("", s.rounds as f64)],
        );
        metric(
            "round_failures_total",
            "counter",
            "Rounds that failed as a whole and were retried.",
            &[("", s.failed_rounds as f64)],
        );
        metric(
            "documents_read_total",
            "counter",
            "Documents read from each side's change feed.",
            &sides(s.read),
        );
        metric(
            "documents_written_total",
            "counter",
            "Documents written to each side.",
            &sides(s.written),
        );
        metric(
            "documents_deleted_total",
            "counter",
            "Documents deleted from each side (deletes propagated from the other side).",
            &sides(s.deleted),
        );
        metric(
            "in_sync_total",
            "counter",
            "Ids found equal on both sides.",
            &[("", s.in_sync as f64)],
        );
        metric(
            "conflicts_total",
            "counter",
            "Ids both sides changed since the last sync, resolved by the policy.",
            &[("", s.conflicts as f64)],
        );
        metric(
            "filtered_total",
            "counter",
            "Ids the policy kept out of the sync.",
            &[("", s.filtered as f64)],
        );
        metric(
            "out_of_scope_total",
            "counter",
            "Ids outside the synced indices.",
            &[("", s.out_of_scope as f64)],
        );
        metric(
            "changed_underneath_total",
            "counter",
            "Writes that found the stored version changed since it was read.",
            &[("", s.changed_underneath as f64)],
        );
        metric(
            "errors_total",
            "counter",
            "Document failures (recorded for retry).",
            &[("", s.errors as f64)],
        );
        metric(
            "failed_documents",
            "gauge",
            "Documents recorded as failed now (essync errors lists them).",
            &[("", s.failed_documents as f64)],
        );
        metric(
            "reconciling",
            "gauge",
            "1 while a full reconciliation (-s) is under way.",
            &[("", if s.reconciling { 1.0 } else { 0.0 })],
        );
        metric(
            "last_round_duration_seconds",
            "gauge",
            "How long the last round took.",
            &[("", s.last_duration)],
        );
        metric(
            "last_round_lag_seconds",
            "gauge",
            "The age of the oldest change the last round could pick up.",
            &[("", s.last_lag)],
        );
        metric(
            "last_round_end_timestamp_seconds",
            "gauge",
            "When the last round ended (Unix time).",
            &[("", s.last_round_end)],
        );
        let requests: Vec<(String, f64)> = s
            .requests
            .iter()
            .map(|((store, kind), n)| (format!("{{store=\"{store}\",kind=\"{kind}\"}}"), *n as f64))
            .collect();
        let requests: Vec<(&str, f64)> = requests.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        metric(
            "requests_total",
            "counter",
            "Requests sent to each store, by kind (Elasticsearch API, Cassandra statement).",
            &requests,
        );
        metric(
            "policy_cpu_seconds_total",
            "counter",
            "CPU time spent inside policy calls (filter and resolve), process-wide.",
            &[("", crate::policy::usage::cpu_seconds())],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_add_up_in_the_exposition() {
        let metrics = Metrics::new();
        let mut report = RoundReport::default();
        report.elasticsearch.read = 3;
        report.cassandra.written = 2;
        report.conflicts = 1;
        metrics.round(&report, 4, true);
        metrics.round(&report, 0, false);
        metrics.failed_round();
        let text = metrics.render();
        assert!(text.contains("essync_rounds_total 2\n"), "{text}");
        assert!(text.contains("essync_round_failures_total 1\n"), "{text}");
        assert!(
            text.contains("essync_documents_read_total{side=\"elasticsearch\"} 6\n"),
            "{text}"
        );
        assert!(
            text.contains("essync_documents_written_total{side=\"cassandra\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("essync_conflicts_total 2\n"), "{text}");
        assert!(text.contains("essync_failed_documents 0\n"), "{text}");
        assert!(text.contains("essync_reconciling 0\n"), "{text}");
        assert!(
            text.contains("# TYPE essync_rounds_total counter"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE essync_policy_cpu_seconds_total counter"),
            "{text}"
        );
    }
}
