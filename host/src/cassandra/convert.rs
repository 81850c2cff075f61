//! The one conversion each way between a [`Document`] and a row of the synced table
//! (`id uuid, index_ text, type text, timestamp timestamp, content text`).

use chrono::{DateTime, Utc};
use scylla::value::CqlTimestamp;

use uuid::Uuid;

use crate::Document;
use crate::document::{Content, DEFAULT_TYPE, Digest, now_millis};
use crate::elasticsearch::convert::json_kind;
use crate::store::{BadDocument, Read, Side, Stored};

/// The write times of a row's cells, as the reads that need only them select them: the newest
/// is the row's write time.
pub(crate) const WRITE_TIMES: &str =
    "writetime(index_), writetime(type), writetime(timestamp), writetime(content)";

/// The columns every read selects, in this order (see [`RawRow`]): the row, its cells' write
/// times, and the time to live left to its content (a row written `USING TTL`).
pub(crate) const COLUMNS: &str = "id, index_, type, timestamp, content, \
     writetime(index_), writetime(type), writetime(timestamp), writetime(content), ttl(content)";

/// A row as selected with [`COLUMNS`].
pub(crate) type RawRow = (
    Uuid,
    Option<String>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i32>,
);

/// A row selected as `token(id), COLUMNS`.
pub(crate) type TokenRow = (
    i64,
    Uuid,
    Option<String>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i32>,
);

/// The token, id and [`RawRow`] of a [`TokenRow`].
pub(crate) fn split_token(row: TokenRow) -> (i64, Uuid, RawRow) {
    let (token, id, index, doc_type, timestamp, content, w1, w2, w3, w4, ttl) = row;
    (
        token,
        id,
        (id, index, doc_type, timestamp, content, w1, w2, w3, w4, ttl),
    )
}

/// A row exactly as stored: what a compare-and-set write must find to replace it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CassandraVersion {
    /// The `index_` column.
    pub index: Option<String>,
    /// The `type` column.
    pub doc_type: Option<String>,
    /// The `timestamp` column, in milliseconds since the epoch.
    pub timestamp: Option<i64>,
    /// The `content` column, as stored text.
    pub content: Option<String>,
    /// The latest write time of the row's cells, in microseconds since the epoch.
    pub written_at: Option<i64>,
    /// The seconds the row has left to live, when it was written `USING TTL`: essync's
    /// rewrite of the row keeps it.
    pub ttl: Option<i32>,
}

/// Reads a row into a document. A row whose `timestamp` is null takes the time its write was
/// seen by Cassandra (its cells' write time).
pub(crate) fn from_row(row: RawRow) -> Read<CassandraVersion> {
    let (id, index, doc_type, timestamp, content, w_index, w_type, w_timestamp, w_content, ttl) =
        row;
    let written_at = [w_index, w_type, w_timestamp, w_content]
        .into_iter()
        .flatten()
        .max();
    let version = CassandraVersion {
        index,
        doc_type,
        timestamp: timestamp.map(|t| t.0),
        content,
        written_at,
        ttl: ttl.filter(|t| *t > 0),
    };
    match document_of(id, &version) {
        Ok((mut document, stamped)) => Read::Document(Stored {
            digest: {
                let (digest, repeats) = Digest::with_repeats(
                    &document.index,
                    version.doc_type.as_deref().filter(|t| !t.is_empty()),
                    version.timestamp,
                    &document.content,
                );
                if repeats {
                    // Written on as a parser reads it: each key once, with its last value.
                    document.content = Content::from(document.content.value().clone());
                }
                digest
            },
            document,
            stamped,
            // A row holding a type and a timestamp holds the document as it reads.
            exact: stamped,
            essync_wrote: None,
            version,
        }),
        Err(reason) => Read::Bad(BadDocument {
            side: Side::Cassandra,
            id: Some(id),
            location: id.to_string(),
            reason,
        }),
    }
}

fn document_of(id: Uuid, row: &CassandraVersion) -> Result<(Document, bool), String> {
    let index = match row.index.as_deref() {
        Some(index) if !index.is_empty() => index.to_string(),
        _ => return Err("index_ is empty, so the row has no Elasticsearch index".to_string()),
    };
    let content = match row.content.as_deref() {
        None => return Err("content is null".to_string()),
        Some(text) => match Content::from_json(text) {
            Ok(content) if content.is_object_text() => content,
            Ok(other) => {
                return Err(format!(
                    "content is {}, not a JSON object",
                    json_kind(&other)
                ));
            }
            Err(e) => return Err(format!("content is not JSON: {e}")),
        },
    };
    let (timestamp, stamped_time) = match row.timestamp {
        Some(millis) => match DateTime::from_timestamp_millis(millis) {
            Some(t) => (t, true),
            None => return Err(format!("timestamp {millis} ms is out of range")),
        },
        None => (seen_at(row.written_at), false),
    };
    let (doc_type, stamped_type) = match row.doc_type.as_deref() {
        Some(t) if !t.is_empty() => (t.to_string(), true),
        _ => (DEFAULT_TYPE.to_string(), false),
    };
    let document = Document {
        id,
        index,
        doc_type,
        timestamp: Some(timestamp),
        content,
    };
    Ok((document, stamped_time && stamped_type))
}

/// When Cassandra saw a row's write, to the millisecond (now, if it does not say).
fn seen_at(written_at: Option<i64>) -> DateTime<Utc> {
    written_at
        .and_then(DateTime::from_timestamp_micros)
        .map(crate::document::truncate_to_millis)
        .unwrap_or_else(now_millis)
}

/// The column values essync writes for a document.
pub(crate) struct Columns {
    pub index: String,
    pub doc_type: String,
    pub timestamp: CqlTimestamp,
    pub content: Content,
}

/// The columns of a document about to be written, or why it cannot be.
pub(crate) fn to_columns(document: &Document) -> Result<Columns, String> {
    let Some(timestamp) = document.timestamp else {
        return Err("the document has no timestamp".to_string());
    };
    if !document.content.is_object_text() {
        return Err(format!(
            "content is {}, not a JSON object",
            json_kind(&document.content)
        ));
    }
    if document.index.is_empty() {
        return Err("the document has no index".to_string());
    }
    Ok(Columns {
        index: document.index.clone(),
        doc_type: document.doc_type.clone(),
        timestamp: CqlTimestamp(timestamp.timestamp_millis()),
        content: document.content.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(content: Option<&str>, timestamp: Option<i64>) -> RawRow {
        (
            Uuid::new_v4(),
            Some("books".to_string()),
            Some("book".to_string()),
            timestamp.map(CqlTimestamp),
            content.map(str::to_string),
            Some(1_700_000_000_000_000),
            Some(1_700_000_000_000_000),
            Some(1_700_000_000_000_000),
            Some(1_700_000_000_123_456),
            None,
        )
    }

    #[test]
    fn rows_become_documents() {
        let Read::Document(stored) = from_row(row(Some(r#"{"a": [1, "x"]}"#), Some(5))) else {
            panic!("not read");
        };
        assert!(stored.stamped);
        assert_eq!(stored.document.timestamp_millis(), Some(5));
        assert_eq!(stored.document.content["a"][1], "x");
        assert_eq!(stored.version.written_at, Some(1_700_000_000_123_456));
    }

    #[test]
    fn rows_without_timestamp_take_their_write_time() {
        let Read::Document(stored) = from_row(row(Some("{}"), None)) else {
            panic!("not read");
        };
        assert!(!stored.stamped);
        assert_eq!(stored.document.timestamp_millis(), Some(1_700_000_000_123));
    }

    #[test]
    fn bad_content_is_reported_with_its_reason() {
        for (content, reason) in [
            (None, "content is null"),
            (Some("[1]"), "an array, not a JSON object"),
            (Some("{"), "not JSON"),
            (Some("\"text\""), "a string"),
        ] {
            let Read::Bad(bad) = from_row(row(content, Some(1))) else {
                panic!("accepted {content:?}");
            };
            assert!(bad.reason.contains(reason), "{}", bad.reason);
        }
    }

    #[test]
    fn documents_become_columns() {
        let content = Content::from_json(r#"{"k": 1.50}"#).unwrap();
        let doc = Document::new("i", "t", content).at(DateTime::from_timestamp_millis(42).unwrap());
        let columns = to_columns(&doc).unwrap();
        assert_eq!(columns.timestamp, CqlTimestamp(42));
        assert_eq!(columns.content.text(), r#"{"k": 1.50}"#);
        assert!(to_columns(&Document::new("i", "t", serde_json::json!(1))).is_err());
    }
}
