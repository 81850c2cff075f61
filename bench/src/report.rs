//! The figures: the table printed for people, and `latest.json` with exactly the keys the
//! benchmark promises.

use std::path::Path;

use anyhow::Context as _;
use serde_json::{Value, json};

/// The figures `latest.json` holds (seconds unless named otherwise).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Documents per side.
    pub n: usize,
    /// Step 1.
    pub raw_limit_s: f64,
    /// Step 2: the backfill round's own time.
    pub backfill_s: f64,
    /// Step 2: 2N / backfill_s.
    pub backfill_docs_per_s: f64,
    /// Step 2: raw_limit_s / backfill_s.
    pub backfill_ratio: f64,
    /// Step 3.
    pub next_round_s: f64,
    /// Step 4.
    pub incremental_round_s: f64,
    /// Step 5, at N.
    pub idle_round_s_n: f64,
    /// Step 5, at 4N.
    pub idle_round_s_4n: f64,
    /// Step 6, MiB, at N.
    pub peak_rss_mb_n: f64,
    /// Step 6, MiB, at 4N.
    pub peak_rss_mb_4n: f64,
    /// Step 7 (not measured with `--quick`).
    pub lag_p50_s: Option<f64>,
    /// Step 7 (not measured with `--quick`).
    pub lag_p99_s: Option<f64>,
    /// Step 8 (absent when the binary does not export the policy's CPU time).
    pub policy_cpu_share: Option<f64>,
    /// Step 2: essync's CPU microseconds over the 2N documents copied.
    pub cpu_us_per_doc_essync: f64,
    /// Step 2: Elasticsearch's, during the backfill (absent when its process is not found).
    pub cpu_us_per_doc_elasticsearch: Option<f64>,
    /// Step 2: Cassandra's, during the backfill (absent when its process is not found).
    pub cpu_us_per_doc_cassandra: Option<f64>,
    /// Step 1: Elasticsearch's CPU microseconds during both stores at once, over its 2N.
    pub raw_cpu_us_per_doc_elasticsearch: Option<f64>,
    /// Step 1: Cassandra's, the same.
    pub raw_cpu_us_per_doc_cassandra: Option<f64>,
    /// Step 2: Cassandra requests of the backfill over the documents copied (absent when the
    /// binary does not count them).
    pub cassandra_requests_per_doc: Option<f64>,
    /// Step 2: Elasticsearch requests, the same.
    pub es_requests_per_doc: Option<f64>,
    /// Step 2: the ledger's SSTable bytes after the backfill over its rows (absent when it
    /// could not be flushed or measured).
    pub ledger_bytes_per_doc: Option<f64>,
    /// Step 9: the reconciliation with a small-window index in the selection over the one
    /// without.
    pub hostile_reconcile_ratio: f64,
    /// Step 10: for 1, 2 and 3 processes sharing a table, the backfill's time and the most
    /// writes one process made over an even share.
    pub shared: Vec<(u32, f64, f64)>,
}

fn round(value: f64, decimals: i32) -> Value {
    let scale = 10f64.powi(decimals);
    json!((value * scale).round() / scale)
}

fn optional(value: Option<f64>, decimals: i32) -> Value {
    value.map_or(Value::Null, |v| round(v, decimals))
}

impl Figures {
    /// The JSON object: these keys, in this order, nothing else (`null` for what was not
    /// measured).
    pub fn to_json(&self) -> Value {
        let mut figures = json!({
            "n": self.n,
            "raw_limit_s": round(self.raw_limit_s, 4),
            "backfill_s": round(self.backfill_s, 4),
            "backfill_docs_per_s": round(self.backfill_docs_per_s, 1),
            "backfill_ratio": round(self.backfill_ratio, 4),
            "next_round_s": round(self.next_round_s, 4),
            "incremental_round_s": round(self.incremental_round_s, 4),
            "idle_round_s_n": round(self.idle_round_s_n, 4),
            "idle_round_s_4n": round(self.idle_round_s_4n, 4),
            "peak_rss_mb_n": round(self.peak_rss_mb_n, 1),
            "peak_rss_mb_4n": round(self.peak_rss_mb_4n, 1),
            "lag_p50_s": optional(self.lag_p50_s, 4),
            "lag_p99_s": optional(self.lag_p99_s, 4),
            "policy_cpu_share": optional(self.policy_cpu_share, 4),
            "cpu_us_per_doc_essync": round(self.cpu_us_per_doc_essync, 1),
            "cpu_us_per_doc_elasticsearch": optional(self.cpu_us_per_doc_elasticsearch, 1),
            "cpu_us_per_doc_cassandra": optional(self.cpu_us_per_doc_cassandra, 1),
            "raw_cpu_us_per_doc_elasticsearch": optional(self.raw_cpu_us_per_doc_elasticsearch, 1),
            "raw_cpu_us_per_doc_cassandra": optional(self.raw_cpu_us_per_doc_cassandra, 1),
            "cassandra_requests_per_doc": optional(self.cassandra_requests_per_doc, 4),
            "es_requests_per_doc": optional(self.es_requests_per_doc, 4),
            "ledger_bytes_per_doc": optional(self.ledger_bytes_per_doc, 1),
            "hostile_reconcile_ratio": round(self.hostile_reconcile_ratio, 4),
        });
        for (processes, backfill_s, unevenness) in &self.shared {
            figures[format!("shared_backfill_s_{processes}")] = round(*backfill_s, 4);
            figures[format!("shared_unevenness_{processes}")] = round(*unevenness, 4);
        }
        figures
    }

    /// Writes [`Figures::to_json`] to `path`, creating its folder.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
        }
        let text = serde_json::to_string_pretty(&self.to_json())? + "\n";
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// A Markdown table, columns padded so it reads as well in a terminal as in the README.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are empty).
    pub fn row(&mut self, cells: &[String]) {
        let mut row: Vec<String> = cells.to_vec();
        row.resize(self.header.len(), String::new());
        self.rows.push(row);
    }

    /// The table's text.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                std::iter::once(&self.header[i])
                    .chain(self.rows.iter().map(|r| &r[i]))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(3)
            })
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = line(&self.header);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&line(&rule));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// `12345.6` as `12,346`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Seconds with a precision that suits them.
pub fn seconds(value: f64) -> String {
    if value < 0.1 {
        format!("{:.1} ms", value * 1000.0)
    } else if value < 10.0 {
        format!("{value:.2} s")
    } else {
        format!("{value:.1} s")
    }
}

/// A share as a percentage.
pub fn percent(value: f64) -> String {
    format!("{:.1}%", value * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_has_exactly_the_promised_keys() {
        let figures = Figures {
            n: 10,
            backfill_s: 1.234_567,
            lag_p99_s: Some(0.5),
            ..Figures::default()
        };
        let json = figures.to_json();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "n",
                "raw_limit_s",
                "backfill_s",
                "backfill_docs_per_s",
                "backfill_ratio",
                "next_round_s",
                "incremental_round_s",
                "idle_round_s_n",
                "idle_round_s_4n",
                "peak_rss_mb_n",
                "peak_rss_mb_4n",
                "lag_p50_s",
                "lag_p99_s",
                "policy_cpu_share",
                "cpu_us_per_doc_essync",
                "cpu_us_per_doc_elasticsearch",
                "cpu_us_per_doc_cassandra",
                "raw_cpu_us_per_doc_elasticsearch",
                "raw_cpu_us_per_doc_cassandra",
                "cassandra_requests_per_doc",
                "es_requests_per_doc",
                "ledger_bytes_per_doc",
                "hostile_reconcile_ratio"
            ]
        );
        assert_eq!(json["backfill_s"], json!(1.2346));
        assert_eq!(json["lag_p50_s"], Value::Null);
        assert_eq!(json["lag_p99_s"], json!(0.5));
        assert_eq!(json["cassandra_requests_per_doc"], Value::Null);
    }

    #[test]
    fn numbers_are_shown_for_people() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(seconds(0.0123), "12.3 ms");
        assert_eq!(seconds(3.456), "3.46 s");
        assert_eq!(seconds(31.26), "31.3 s");
        assert_eq!(percent(0.0312), "3.1%");
    }

    #[test]
    fn tables_are_padded_markdown() {
        let mut table = Table::new(&["a", "bb"]);
        table.row(&["xyz".to_string()]);
        assert_eq!(
            table.render(),
            "| a   | bb  |\n| --- | --- |\n| xyz |     |\n"
        );
    }
}
