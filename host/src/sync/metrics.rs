//! Counters and histograms of a running sync, kept in a `prometheus-client` registry and
//! served in the Prometheus text format by the binary's `--metrics ADDRESS`.
//!
//! The names are documented (and graphed by the dashboard in `docs/grafana/essync.json`, whose
//! queries a test checks against [`Metrics::render`]): renaming one breaks users' alerts.

use std::sync::atomic::AtomicU64;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::report::RoundReport;
use crate::store::Side;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds of the round duration histogram, in seconds: an idle round takes milliseconds,
/// a busy one up to its period (1 s to minutes), a reconciliation much longer.
const DURATION_BUCKETS: [f64; 16] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Upper bounds of the lag histogram, in seconds: the lag is about the period (1 s to
/// minutes), more when rounds run late; fine enough around common periods for a p50 and a p99.
const LAG_BUCKETS: [f64; 19] = [
    0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0,
    300.0, 600.0, 1200.0,
];

/// A per-side counter's labels: `side="elasticsearch"` or `side="cassandra"`.
type SideLabels = [(&'static str, &'static str); 1];

/// A request counter's labels: the store, and the kind of request (Elasticsearch's API,
/// Cassandra's statement).
type RequestLabels = [(&'static str, &'static str); 2];

/// What a sync has done since the process started.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rounds: Counter,
    round_failures: Counter,
    read: Family<SideLabels, Counter>,
    written: Family<SideLabels, Counter>,
    deleted: Family<SideLabels, Counter>,
    in_sync: Counter,
    conflicts: Counter,
    filtered: Counter,
    out_of_scope: Counter,
    changed_underneath: Counter,
    errors: Counter,
    requests: Family<RequestLabels, Counter>,
    failed_documents: Gauge,
    reconciling: Gauge,
    last_round_duration: Gauge<f64, AtomicU64>,
    last_round_lag: Gauge<f64, AtomicU64>,
    last_round_end: Gauge<f64, AtomicU64>,
    round_duration: Histogram,
    round_lag: Histogram,
}

/// A registry being filled: each metric is registered under its name and handed back.
struct Registering(Registry);

impl Registering {
    fn add<M: prometheus_client::registry::Metric + Clone>(
        &mut self,
        name: &str,
        help: &str,
        metric: M,
    ) -> M {
        self.0.register(name, help, metric.clone());
        metric
    }

    fn counter(&mut self, name: &str, help: &str) -> Counter {
        self.add(name, help, Counter::default())
    }

    fn gauge(&mut self, name: &str, help: &str) -> Gauge<f64, AtomicU64> {
        self.add(name, help, Gauge::default())
    }

    /// A counter per side, both shown from the start.
    fn per_side(&mut self, name: &str, help: &str) -> Family<SideLabels, Counter> {
        let family = Family::<SideLabels, Counter>::default();
        for side in [Side::Elasticsearch, Side::Cassandra] {
            drop(family.get_or_create(&side_labels(side)));
        }
        self.add(name, help, family)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// No rounds yet; every metric registered (at zero), so that each is served from the start.
    pub fn new() -> Self {
        let mut r = Registering(Registry::with_prefix("essync"));
        r.0.register_collector(Box::new(PolicyCpu));
        // The fields are made in the order written, each registering its metric; the registry
        // itself goes last.
        Self {
            rounds: r.counter("rounds", "Rounds finished"),
            round_failures: r.counter(
                "round_failures",
                "Rounds that failed as a whole and were retried",
            ),
            read: r.per_side(
                "documents_read",
                "Documents read from each side's change feed",
            ),
            written: r.per_side("documents_written", "Documents written to each side"),
            deleted: r.per_side(
                "documents_deleted",
                "Documents deleted from each side (deletes propagated from the other side)",
            ),
            in_sync: r.counter("in_sync", "Ids found equal on both sides"),
            conflicts: r.counter(
                "conflicts",
                "Ids both sides changed since the last sync, resolved by the policy",
            ),
            filtered: r.counter("filtered", "Ids the policy kept out of the sync"),
            out_of_scope: r.counter("out_of_scope", "Ids outside the synced indices"),
            changed_underneath: r.counter(
                "changed_underneath",
                "Writes that found the stored version changed since it was read",
            ),
            errors: r.counter("errors", "Document failures (recorded for retry)"),
            requests: r.add(
                "requests",
                "Requests sent to each store, by kind (Elasticsearch API, Cassandra statement)",
                Family::default(),
            ),
            failed_documents: r.add(
                "failed_documents",
                "Documents recorded as failed now (essync errors lists them)",
                Gauge::default(),
            ),
            reconciling: r.add(
                "reconciling",
                "1 while a full reconciliation (-s) is under way",
                Gauge::default(),
            ),
            last_round_duration: r.gauge(
                "last_round_duration_seconds",
                "How long the last round took",
            ),
            last_round_lag: r.gauge(
                "last_round_lag_seconds",
                "The age of the oldest change the last round could pick up",
            ),
            last_round_end: r.gauge(
                "last_round_end_timestamp_seconds",
                "When the last round ended (Unix time)",
            ),
            round_duration: r.add(
                "round_duration_seconds",
                "How long each round took",
                Histogram::new(DURATION_BUCKETS),
            ),
            round_lag: r.add(
                "round_lag_seconds",
                "The age of the oldest change each round could pick up",
                Histogram::new(LAG_BUCKETS),
            ),
            registry: r.0,
        }
    }

    /// Counts a finished round; `failed_documents` is how many are recorded as failed now.
    pub fn round(&self, report: &RoundReport, failed_documents: usize, reconciling: bool) {
        self.rounds.inc();
        for (side, counts) in [
            (Side::Elasticsearch, &report.elasticsearch),
            (Side::Cassandra, &report.cassandra),
        ] {
            let labels = side_labels(side);
            self.read.get_or_create(&labels).inc_by(counts.read);
            self.written.get_or_create(&labels).inc_by(counts.written);
            self.deleted.get_or_create(&labels).inc_by(counts.deleted);
        }
        self.in_sync.inc_by(report.in_sync);
        self.conflicts.inc_by(report.conflicts);
        self.filtered.inc_by(report.filtered);
        self.out_of_scope.inc_by(report.out_of_scope);
        self.changed_underneath.inc_by(report.changed_underneath);
        self.errors.inc_by(report.errors);
        for (store, counts) in [
            ("elasticsearch", &report.requests.elasticsearch),
            ("cassandra", &report.requests.cassandra),
        ] {
            for (kind, n) in counts {
                self.requests
                    .get_or_create(&[("store", store), ("kind", *kind)])
                    .inc_by(*n);
            }
        }
        self.failed_documents
            .set(i64::try_from(failed_documents).unwrap_or(i64::MAX));
        self.reconciling.set(i64::from(reconciling));
        let duration = report.duration.as_secs_f64();
        let lag = report.lag.as_secs_f64();
        self.last_round_duration.set(duration);
        self.last_round_lag.set(lag);
        self.round_duration.observe(duration);
        self.round_lag.observe(lag);
        self.last_round_end.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        );
    }

    /// Counts a round that failed as a whole (a store unreachable, say).
    pub fn failed_round(&self) {
        self.round_failures.inc();
    }

    /// The Prometheus text exposition (format 0.0.4, [`CONTENT_TYPE`]) of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!("cannot render the metrics: {e}");
        }
        out
    }
}

fn side_labels(side: Side) -> SideLabels {
    [(
        "side",
        match side {
            Side::Elasticsearch => "elasticsearch",
            Side::Cassandra => "cassandra",
        },
    )]
}

/// `essync_policy_cpu_seconds_total`: read at each scrape from the policy runtime's process-wide
/// account.
#[derive(Debug)]
struct PolicyCpu;

impl Collector for PolicyCpu {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(crate::policy::usage::cpu_seconds());
        let metric = encoder.encode_descriptor(
            "policy_cpu_seconds",
            "CPU time spent inside policy calls (filter and resolve), process-wide.",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
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
        report.requests.elasticsearch.insert("bulk", 3);
        report.duration = std::time::Duration::from_millis(300);
        report.lag = std::time::Duration::from_secs(10);
        metrics.round(&report, 4, true);
        metrics.round(&report, 0, false);
        metrics.failed_round();
        let text = metrics.render();
        for line in [
            "essync_rounds_total 2\n",
            "essync_round_failures_total 1\n",
            "essync_documents_read_total{side=\"elasticsearch\"} 6\n",
            "essync_documents_written_total{side=\"cassandra\"} 4\n",
            "essync_documents_deleted_total{side=\"cassandra\"} 0\n",
            "essync_conflicts_total 2\n",
            "essync_requests_total{store=\"elasticsearch\",kind=\"bulk\"} 6\n",
            "essync_failed_documents 0\n",
            "essync_reconciling 0\n",
            "essync_last_round_lag_seconds 10.0\n",
            "# TYPE essync_rounds_total counter\n",
            "# TYPE essync_policy_cpu_seconds_total counter\n",
            "# TYPE essync_round_duration_seconds histogram\n",
            "essync_round_duration_seconds_bucket{le=\"0.25\"} 0\n",
            "essync_round_duration_seconds_bucket{le=\"0.5\"} 2\n",
            "essync_round_duration_seconds_count 2\n",
            "essync_round_lag_seconds_bucket{le=\"7.5\"} 0\n",
            "essync_round_lag_seconds_bucket{le=\"10\"} 2\n",
            "essync_round_lag_seconds_sum 20.0\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }

    /// Every name docs/operating.md documents is served before the first round (an alert on a
    /// metric that appears only later cannot tell "zero" from "missing").
    #[test]
    fn every_documented_name_is_served_from_the_start() {
        let served = served_names(&Metrics::new().render());
        for name in [
            "essync_rounds_total",
            "essync_round_failures_total",
            "essync_documents_read_total",
            "essync_documents_written_total",
            "essync_documents_deleted_total",
            "essync_conflicts_total",
            "essync_in_sync_total",
            "essync_filtered_total",
            "essync_out_of_scope_total",
            "essync_errors_total",
            "essync_changed_underneath_total",
            "essync_failed_documents",
            "essync_reconciling",
            "essync_last_round_duration_seconds",
            "essync_last_round_end_timestamp_seconds",
            "essync_last_round_lag_seconds",
            "essync_policy_cpu_seconds_total",
            "essync_round_duration_seconds_bucket",
            "essync_round_duration_seconds_sum",
            "essync_round_duration_seconds_count",
            "essync_round_lag_seconds_bucket",
            "essync_round_lag_seconds_sum",
            "essync_round_lag_seconds_count",
        ] {
            assert!(served.contains(name), "{name} is not served: {served:?}");
        }
    }

    /// The dashboard shipped beside the documentation graphs only what essync serves: every
    /// query of its panels and variables names served series, and each names at least one.
    #[test]
    fn every_query_of_the_dashboard_names_a_served_metric() {
        // A request counter is served once a round sent a request of its kind.
        let metrics = Metrics::new();
        let mut report = RoundReport::default();
        report.requests.cassandra.insert("write", 1);
        metrics.round(&report, 0, false);
        let served = served_names(&metrics.render());
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/grafana/essync.json"))
                .expect("the dashboard is JSON");
        let mut queries = Vec::new();
        collect_queries(&dashboard, &mut queries);
        assert!(queries.len() >= 15, "too few queries found: {queries:?}");
        for query in &queries {
            let names = metric_names(query);
            assert!(!names.is_empty(), "{query} names no metric");
            for name in names {
                assert!(
                    served.contains(&name),
                    "{query} names {name}, which essync does not serve"
                );
            }
        }
    }

    /// The PromQL reader must see a metric where there is one, and only there.
    #[test]
    fn metric_names_skips_functions_labels_ranges_and_variables() {
        assert_eq!(
            metric_names(
                "histogram_quantile(0.99, sum by (le, side) (rate(a_bucket{instance=~\"$instance\", \
                 x='y}'}[$__rate_interval]))) / on (job) group_left b offset 5m + time() - c_total"
            ),
            ["a_bucket", "b", "c_total"]
        );
        assert_eq!(
            metric_names("label_values(essync_rounds_total, instance)"),
            ["essync_rounds_total"]
        );
    }

    /// The PromQL expressions of a Grafana dashboard: each panel target's `expr`, and each
    /// query variable's query.
    fn collect_queries(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                        ("query", serde_json::Value::Object(query)) => {
                            if let Some(q) = query.get("query").and_then(|q| q.as_str()) {
                                out.push(q.to_string());
                            }
                        }
                        _ => collect_queries(value, out),
                    }
                }
            }
            serde_json::Value::Array(items) => {
                items.iter().for_each(|item| collect_queries(item, out));
            }
            _ => {}
        }
    }

    /// Skips from an opening bracket to its closing one, strings included.
    fn skip_to(chars: &[char], mut i: usize, close: char) -> usize {
        let mut quote = None;
        while i < chars.len() {
            match (quote, chars[i]) {
                (Some(_), '\\') => i += 1,
                (Some(q), c) if c == q => quote = None,
                (None, '"' | '\'') => quote = Some(chars[i]),
                (None, c) if c == close => return i + 1,
                _ => {}
            }
            i += 1;
        }
        i
    }

    /// The metric names a PromQL expression (or a Grafana `label_values(METRIC, LABEL)`) reads:
    /// identifiers that are not functions, keywords, label names, numbers, durations, strings
    /// or dashboard variables.
    fn metric_names(query: &str) -> Vec<String> {
        const LABEL_LISTS: [&str; 6] = [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ];
        const KEYWORDS: [&str; 5] = ["and", "or", "unless", "bool", "offset"];
        let chars: Vec<char> = query.chars().collect();
        let mut names = Vec::new();
        let mut i = 0;
        let skip_to = |i: usize, close: char| skip_to(&chars, i, close);
        while i < chars.len() {
            let c = chars[i];
            if c == '{' {
                i = skip_to(i + 1, '}');
            } else if c == '[' {
                i = skip_to(i + 1, ']');
            } else if c == '"' || c == '\'' {
                i = skip_to(i + 1, c);
            } else if c == '$' || c.is_ascii_digit() || c == '.' {
                // A variable, a number or a duration (`5m`).
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.')
                {
                    i += 1;
                }
            } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let next_word: String = chars[next..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .collect();
                // A function or aggregation: `rate(`, or `sum by (le) (`.
                let call =
                    chars.get(next) == Some(&'(') || matches!(next_word.as_str(), "by" | "without");
                if LABEL_LISTS.contains(&word.as_str()) {
                    if call {
                        i = skip_to(next + 1, ')');
                    }
                } else if word == "label_values" && call {
                    // label_values(METRIC, LABEL): the metric, and not the label.
                    let end = skip_to(next + 1, ')');
                    let inner: String = chars[next + 1..end.saturating_sub(1)].iter().collect();
                    let metric = inner.split(',').next().unwrap_or_default();
                    names.extend(metric_names(metric));
                    i = end;
                } else if !call && !KEYWORDS.contains(&word.as_str()) {
                    names.push(word);
                }
            } else {
                i += 1;
            }
        }
        names
    }

    /// The names of the series in an exposition.
    pub(super) fn served_names(text: &str) -> std::collections::BTreeSet<String> {
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| line.split(['{', ' ']).next())
            .map(str::to_string)
            .collect()
    }
}
