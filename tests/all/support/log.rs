//! essync's logs as the tests read them. The tests start essync with `--log-format json`: each
//! round's summary is then one JSON object whose fields (`report.*`) carry its figures, read
//! here into a [`Round`], and every other line is rendered back into the text people read, so
//! that a test looks for a message as a person would and a failure prints readable logs.

use std::fmt;

use serde_json::Value;

/// The option that makes essync log as the tests read it.
pub const LOG_FORMAT: [&str; 2] = ["--log-format", "json"];

/// One round's summary, from its fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Round {
    /// The round's number in its process.
    pub number: u64,
    /// Documents read from Elasticsearch, Cassandra.
    pub read: [u64; 2],
    /// Documents written to Elasticsearch, Cassandra.
    pub written: [u64; 2],
    /// Documents deleted from Elasticsearch, Cassandra.
    pub deleted: [u64; 2],
    /// Ids both sides changed: resolved by the policy.
    pub conflicts: u64,
    /// Ids the policy kept out of the sync.
    pub filtered: u64,
    /// Documents that failed.
    pub errors: u64,
    /// The line people read.
    pub message: String,
}

impl Round {
    /// The round summary a log line holds, if it is one.
    pub fn from_line(line: &str) -> Option<Round> {
        let event: Value = serde_json::from_str(line).ok()?;
        let fields = event.get("fields")?;
        let count = |name: &str| fields.get(format!("report.{name}")).and_then(Value::as_u64);
        Some(Round {
            number: count("round")?,
            read: [count("es_read")?, count("cassandra_read")?],
            written: [count("es_written")?, count("cassandra_written")?],
            deleted: [count("es_deleted")?, count("cassandra_deleted")?],
            conflicts: count("conflicts")?,
            filtered: count("filtered")?,
            errors: count("errors")?,
            message: fields.get("message")?.as_str()?.to_string(),
        })
    }

    /// The round summaries of a process's output, in order.
    pub fn all_in(output: &str) -> Vec<Round> {
        output.lines().filter_map(Round::from_line).collect()
    }

    /// Whether the round wrote and deleted nothing, on either side.
    pub fn idle(&self) -> bool {
        self.written == [0, 0] && self.deleted == [0, 0]
    }
}

impl fmt::Display for Round {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A log line as the text format writes it (`TIME LEVEL TARGET: MESSAGE name=value ...`, the
/// round's figures left out); a line that is not a JSON event (a panic, the one line of a
/// fatal error) as it is.
pub fn render(line: &str) -> String {
    let Ok(Value::Object(event)) = serde_json::from_str::<Value>(line) else {
        return line.to_string();
    };
    let text = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or_default();
    let mut rendered = format!(
        "{} {:>5} {}:",
        text("timestamp"),
        text("level"),
        text("target")
    );
    if let Some(Value::Object(fields)) = event.get("fields") {
        if let Some(message) = fields.get("message").and_then(Value::as_str) {
            rendered.push(' ');
            rendered.push_str(message);
        }
        for (name, value) in fields {
            if name != "message" && !name.starts_with("report.") {
                rendered.push_str(&format!(" {name}={value}"));
            }
        }
    }
    rendered
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = r#"{"timestamp":"2025-11-26T16:49:00.123456Z","level":"INFO","fields":{"message":"round 12: read es 40 / cassandra 35; wrote es 20 / cassandra 18; conflicts 2, in sync 35, filtered 0, errors 3; 0.31s, lag 10.0s","report.round":12,"report.es_read":40,"report.es_written":20,"report.es_deleted":0,"report.cassandra_read":35,"report.cassandra_written":18,"report.cassandra_deleted":0,"report.conflicts":2,"report.in_sync":35,"report.filtered":0,"report.errors":3,"report.duration_s":0.312,"report.lag_s":10.0},"target":"essync::sync"}"#;

    #[test]
    fn a_summary_is_read_from_its_fields_and_other_lines_are_not_summaries() {
        let round = Round::from_line(SUMMARY).expect("a summary");
        assert_eq!(round.number, 12);
        assert_eq!((round.read, round.written), ([40, 35], [20, 18]));
        assert_eq!((round.conflicts, round.errors), (2, 3));
        assert!(!round.idle());
        assert!(round.to_string().starts_with("round 12: read es 40"));
        let other = r#"{"timestamp":"t","level":"INFO","fields":{"message":"round 12: read es 1 / cassandra 1"},"target":"essync::sync"}"#;
        assert_eq!(Round::from_line(other), None);
        assert_eq!(
            Round::from_line("round 12: read es 40 / cassandra 35"),
            None
        );
    }

    #[test]
    fn lines_are_rendered_as_the_text_format_writes_them() {
        let line = r#"{"timestamp":"2025-11-26T16:49:00Z","level":"WARN","fields":{"message":"index skipped","index":"shop"},"target":"essync::sync"}"#;
        assert_eq!(
            render(line),
            "2025-11-26T16:49:00Z  WARN essync::sync: index skipped index=\"shop\""
        );
        assert!(render(SUMMARY).ends_with("INFO essync::sync: round 12: read es 40 / cassandra 35; wrote es 20 / cassandra 18; conflicts 2, in sync 35, filtered 0, errors 3; 0.31s, lag 10.0s"));
        assert_eq!(
            render("essync: Cassandra is gone"),
            "essync: Cassandra is gone"
        );
    }
}
