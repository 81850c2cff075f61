//! The document both stores exchange.
//!
//! A [`Document`] is at once an Elasticsearch document (`_id` = `id`, in index `index`) and a row
//! of the synced Cassandra table (`id`, `index_`, `type`, `timestamp`, `content`). Its timestamp
//! is UTC with millisecond precision on both sides: every constructor and every store truncates
//! to the millisecond, so two reads of the same version compare equal.

use std::fmt;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The document type given to documents that do not say theirs (modern Elasticsearch has no
/// mapping types; `_doc` is what it reports for every document).
pub const DEFAULT_TYPE: &str = "_doc";

/// One document, as both stores hold it.
#[derive(Clone, PartialEq)]
pub struct Document {
    /// Identity on both sides: the Cassandra primary key and the Elasticsearch `_id`.
    pub id: Uuid,
    /// The Elasticsearch index; the `index_` column in Cassandra.
    pub index: String,
    /// The document type of the seed's data model; the `type` column in Cassandra.
    pub doc_type: String,
    /// When this version was written, UTC, millisecond precision. `None` until a store or the
    /// caller sets it: `insert_or_replace_document` stamps the current time.
    pub timestamp: Option<DateTime<Utc>>,
    /// The body: a JSON object (the Elasticsearch `_source`, the Cassandra `content` text).
    pub content: Value,
}

impl Document {
    /// A new document with a random (v4) id and no timestamp yet.
    pub fn new(index: impl Into<String>, doc_type: impl Into<String>, content: Value) -> Self {
        Self::with_id(Uuid::new_v4(), index, doc_type, content)
    }

    /// A document with a given id and no timestamp yet.
    pub fn with_id(
        id: Uuid,
        index: impl Into<String>,
        doc_type: impl Into<String>,
        content: Value,
    ) -> Self {
        Self {
            id,
            index: index.into(),
            doc_type: doc_type.into(),
            timestamp: None,
            content,
        }
    }

    /// The same document with its timestamp set (truncated to the millisecond).
    pub fn at(mut self, timestamp: DateTime<Utc>) -> Self {
        self.timestamp = Some(truncate_to_millis(timestamp));
        self
    }

    /// The timestamp in milliseconds since the Unix epoch, if set.
    pub fn timestamp_millis(&self) -> Option<i64> {
        self.timestamp.map(|t| t.timestamp_millis())
    }

    /// The content as a JSON object, or `None` when it is some other JSON value.
    pub fn content_object(&self) -> Option<&Map<String, Value>> {
        self.content.as_object()
    }
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let timestamp = match self.timestamp {
            Some(t) => format_timestamp(t),
            None => "none".to_string(),
        };
        write!(
            f,
            "(Document)<id: {}, index: {}, type: {}, timestamp: {}>",
            self.id, self.index, self.doc_type, timestamp
        )
    }
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 200;
        let content = self.content.to_string();
        let shown = match content.char_indices().nth(SHOWN) {
            Some((end, _)) => format!("{}… ({} bytes)", &content[..end], content.len()),
            None => content,
        };
        write!(f, "{self} {shown}")
    }
}

/// Truncates a time to the millisecond, the precision both stores keep.
pub fn truncate_to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(t)
}

/// The current time, truncated to the millisecond.
pub fn now_millis() -> DateTime<Utc> {
    truncate_to_millis(Utc::now())
}

/// The RFC 3339 form used in logs and in Elasticsearch: UTC, milliseconds, `Z`.
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn new_documents_get_distinct_v4_ids_and_no_timestamp() {
        let a = Document::new("books", "book", json!({"title": "a"}));
        let b = Document::new("books", "book", json!({"title": "a"}));
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.get_version_num(), 4);
        assert_eq!(a.timestamp, None);
    }

    #[test]
    fn display_reads_like_the_seed() {
        let id = Uuid::parse_str("6f1c1b0e-8a8e-4a53-9c3f-4a0e6f1f7c11").unwrap();
        let t = Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap();
        let doc = Document::with_id(id, "books", "book", json!({})).at(t);
        assert_eq!(
            doc.to_string(),
            "(Document)<id: 6f1c1b0e-8a8e-4a53-9c3f-4a0e6f1f7c11, index: books, type: book, \
             timestamp: 2024-05-06T07:08:09.000Z>"
        );
    }

    #[test]
    fn timestamps_keep_milliseconds_only() {
        let t = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        let doc = Document::new("i", "t", json!({})).at(t);
        assert_eq!(doc.timestamp_millis(), Some(1_700_000_000_123));
        assert_eq!(doc.timestamp.unwrap().timestamp_subsec_nanos(), 123_000_000);
    }

    #[test]
    fn debug_shortens_large_content() {
        let doc = Document::new("i", "t", json!({"text": "x".repeat(10_000)}));
        let shown = format!("{doc:?}");
        assert!(shown.len() < 400, "{shown}");
        assert!(shown.contains("bytes)"));
    }
}
