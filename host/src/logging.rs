//! Logs go to stderr through `tracing`: one line of text per event for people (the default), or
//! one JSON object per line for programs (`--log-format json`). `-v` and `-vv` raise essync's
//! level; `RUST_LOG` overrides everything.
//!
//! Each round's summary is one event (`RoundReport::log`): its message is the line people read,
//! and its fields (`report.*`, one per counter, durations in seconds) are the same figures for
//! programs. The JSON format carries both; the text format writes the message alone.

use std::fmt;

use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::cli::LogFormat;

/// Sends the process's logs to stderr, in `format`, at the level `-v`/`-vv` asked for.
pub fn init(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "essync=info",
        1 => "essync=debug",
        _ => "essync=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    subscriber(filter, format, std::io::stderr, ansi).init();
}

/// The subscriber that writes logs in `format` to `writer`.
fn subscriber<W>(
    filter: EnvFilter,
    format: LogFormat,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(logs.with_ansi(ansi).fmt_fields(TextFields).finish()),
        LogFormat::Json => Box::new(
            logs.json()
                .with_current_span(false)
                .with_span_list(false)
                .finish(),
        ),
    }
}

/// The fields of a text log line: the message, then `name=value` for each other field, as
/// tracing's default writes them, except the round summary's figures (`report.*`), which the
/// message already says in words.
struct TextFields;

impl<'writer> FormatFields<'writer> for TextFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = TextVisitor {
            writer,
            empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct TextVisitor<'writer> {
    writer: Writer<'writer>,
    empty: bool,
    result: fmt::Result,
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // `log.*` fields are the metadata of records from the `log` crate, shown already.
        if self.result.is_err() || name.starts_with("report.") || name.starts_with("log.") {
            return;
        }
        let separator = if self.empty { "" } else { " " };
        self.empty = false;
        self.result = match name {
            "message" => write!(self.writer, "{separator}{value:?}"),
            name => {
                let name = name.strip_prefix("r#").unwrap_or(name);
                write!(self.writer, "{separator}{name}={value:?}")
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use essync::sync::RoundReport;
    use essync::sync::report::SideCounts;
    use serde_json::Value;

    use super::*;

    /// What a subscriber in `format` writes while `log` runs.
    fn written(format: LogFormat, log: impl FnOnce()) -> String {
        #[derive(Clone)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .map_err(|_| std::io::ErrorKind::Other)?
                    .write(bytes)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer(Arc::default());
        let writer = buffer.clone();
        let subscriber = subscriber(
            EnvFilter::new("essync=info"),
            format,
            move || writer.clone(),
            false,
        );
        tracing::subscriber::with_default(subscriber, log);
        let bytes = buffer.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).expect("logs are UTF-8")
    }

    fn report() -> RoundReport {
        RoundReport {
            number: 12,
            elasticsearch: SideCounts {
                read: 40,
                written: 20,
                deleted: 1,
            },
            cassandra: SideCounts {
                read: 35,
                written: 18,
                deleted: 0,
            },
            in_sync: 35,
            unchanged: 18,
            conflicts: 2,
            duration: Duration::from_millis(312),
            lag: Duration::from_secs(10),
            ..RoundReport::default()
        }
    }

    const LINE: &str = "round 12: read es 40 / cassandra 35; wrote es 20 / cassandra 18; \
                        conflicts 2, in sync 35, filtered 0, errors 0, deleted es 1 / cassandra \
                        0, own writes read back 18, requests es 0 / cassandra 0; 0.31s, lag \
                        10.0s";

    #[test]
    fn the_text_summary_is_the_line_people_read_and_nothing_more() {
        let text = written(LogFormat::Text, || report().log(false));
        assert!(
            text.ends_with(&format!(" INFO essync::sync: {LINE}\n")),
            "{text}"
        );
        let dry = written(LogFormat::Text, || report().log(true));
        assert!(
            dry.ends_with(&format!("{LINE} (dry run: nothing written)\n")),
            "{dry}"
        );
        // Other events keep their fields.
        let other = written(
            LogFormat::Text,
            || tracing::info!(target: "essync::x", index = "shop", shard = 3, "skipped"),
        );
        assert!(
            other.ends_with("skipped index=\"shop\" shard=3\n"),
            "{other}"
        );
    }

    #[test]
    fn the_json_summary_carries_each_figure_as_a_field_beside_the_message() {
        let json = written(LogFormat::Json, || report().log(true));
        assert_eq!(json.lines().count(), 1, "{json}");
        let event: Value = serde_json::from_str(&json).expect("one JSON object");
        assert_eq!(event["level"], "INFO");
        assert_eq!(event["target"], "essync::sync");
        let fields = &event["fields"];
        assert_eq!(
            fields["message"],
            format!("{LINE} (dry run: nothing written)")
        );
        for (name, value) in [
            ("report.round", 12),
            ("report.es_read", 40),
            ("report.es_written", 20),
            ("report.es_deleted", 1),
            ("report.cassandra_read", 35),
            ("report.cassandra_written", 18),
            ("report.cassandra_deleted", 0),
            ("report.conflicts", 2),
            ("report.in_sync", 35),
            ("report.filtered", 0),
            ("report.errors", 0),
            ("report.own_writes_read_back", 18),
            ("report.changed_underneath", 0),
            ("report.out_of_scope", 0),
            ("report.retried", 0),
            ("report.es_requests", 0),
            ("report.cassandra_requests", 0),
        ] {
            assert_eq!(fields[name], value, "{name} in {json}");
        }
        assert_eq!(fields["report.duration_s"], 0.312);
        assert_eq!(fields["report.lag_s"], 10.0);
        assert_eq!(fields["report.stopped_early"], false);
        assert_eq!(fields["report.dry_run"], true);
    }
}
