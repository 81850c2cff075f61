//! The one conversion each way between a [`Document`] and an Elasticsearch document.
//!
//! Modern Elasticsearch has neither mapping types nor `_timestamp`, so essync keeps a
//! document's type and timestamp inside `_source`, under the reserved field [`METADATA_FIELD`]:
//!
//! ```json
//! {"title": "...", "_essync": {"type": "book", "timestamp": "2024-05-06T07:08:09.123Z"}}
//! ```
//!
//! Everything else in `_source` is the document's content. A content object that itself uses
//! the reserved field cannot be represented and is refused.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::Document;
use crate::document::{DEFAULT_TYPE, Digest, format_timestamp, truncate_to_millis};
use crate::store::{BadDocument, Read, Side, Stored};

/// The `_source` field that holds essync's metadata (`type`, `timestamp`).
pub const METADATA_FIELD: &str = "_essync";

/// Where a document is in Elasticsearch, and the version a write must match to replace it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsVersion {
    /// The index holding the document.
    pub index: String,
    /// Its sequence number in its shard.
    pub seq_no: i64,
    /// The primary term of that sequence number.
    pub primary_term: i64,
}

/// The `_source` essync writes for a document: its content plus the metadata field.
pub fn to_source(document: &Document, timestamp: DateTime<Utc>) -> Result<Value, String> {
    let Some(content) = document.content.as_object() else {
        return Err(format!(
            "content is not a JSON object but {}",
            json_kind(&document.content)
        ));
    };
    if content.contains_key(METADATA_FIELD) {
        return Err(format!(
            "content uses the field '{METADATA_FIELD}', which essync reserves for its metadata in Elasticsearch"
        ));
    }
    let mut source = content.clone();
    source.insert(
        METADATA_FIELD.to_string(),
        json!({"type": document.doc_type, "timestamp": format_timestamp(timestamp)}),
    );
    Ok(Value::Object(source))
}

/// Reads one search hit (or `_mget` doc) into a document; `seen_at` is the timestamp given to a
/// document that carries no metadata (one written by another program).
pub fn from_hit(hit: &Value, seen_at: DateTime<Utc>) -> Read<EsVersion> {
    let index = hit.get("_index").and_then(Value::as_str).unwrap_or("?");
    let raw_id = hit.get("_id").and_then(Value::as_str).unwrap_or("?");
    let bad = |id: Option<Uuid>, reason: String| {
        Read::Bad(BadDocument {
            side: Side::Elasticsearch,
            id,
            location: format!("{index}/{raw_id}"),
            reason,
        })
    };
    let id = match Uuid::parse_str(raw_id) {
        Ok(id) => id,
        Err(_) => {
            return bad(
                None,
                "its _id is not a uuid, so it has no row id in Cassandra".to_string(),
            );
        }
    };
    let (Some(seq_no), Some(primary_term)) = (
        hit.get("_seq_no").and_then(Value::as_i64),
        hit.get("_primary_term").and_then(Value::as_i64),
    ) else {
        return bad(
            Some(id),
            "the answer carries no _seq_no/_primary_term".to_string(),
        );
    };
    let mut content = match hit.get("_source") {
        Some(Value::Object(map)) => map.clone(),
        Some(other) => return bad(Some(id), format!("_source is {}", json_kind(other))),
        None => {
            return bad(
                Some(id),
                "_source is disabled for its index; essync needs it".to_string(),
            );
        }
    };
    let metadata = content.remove(METADATA_FIELD);
    let (stored_type, stored_timestamp) = match read_metadata(metadata.as_ref()) {
        Ok(stored) => stored,
        Err(reason) => return bad(Some(id), reason),
    };
    let content = Value::Object(content);
    let digest = Digest::of(
        index,
        stored_type.as_deref(),
        stored_timestamp.map(|t| t.timestamp_millis()),
        &content,
    );
    let stamped = stored_timestamp.is_some();
    Read::Document(Stored {
        document: Document {
            id,
            index: index.to_string(),
            doc_type: stored_type.unwrap_or_else(|| DEFAULT_TYPE.to_string()),
            timestamp: Some(stored_timestamp.unwrap_or_else(|| truncate_to_millis(seen_at))),
            content,
        },
        stamped,
        digest,
        version: EsVersion {
            index: index.to_string(),
            seq_no,
            primary_term,
        },
    })
}

/// The version of a hit (a search hit or an `_mget` doc, with or without its source).
pub(crate) fn version_of(hit: &Value) -> Option<EsVersion> {
    Some(EsVersion {
        index: hit.get("_index")?.as_str()?.to_string(),
        seq_no: hit.get("_seq_no")?.as_i64()?,
        primary_term: hit.get("_primary_term")?.as_i64()?,
    })
}

/// The type and timestamp the metadata field holds (each `None` when absent), or why it is
/// unusable.
fn read_metadata(
    metadata: Option<&Value>,
) -> Result<(Option<String>, Option<DateTime<Utc>>), String> {
    let Some(metadata) = metadata else {
        return Ok((None, None));
    };
    let Some(fields) = metadata.as_object() else {
        return Err(format!(
            "its '{METADATA_FIELD}' field is {}, not an object",
            json_kind(metadata)
        ));
    };
    let doc_type = match fields.get("type") {
        Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
        None | Some(Value::Null) => None,
        Some(Value::String(_)) => None,
        Some(other) => {
            return Err(format!(
                "'{METADATA_FIELD}.type' is {}, not a string",
                json_kind(other)
            ));
        }
    };
    let timestamp = match fields.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse_timestamp(value)?),
    };
    Ok((doc_type, timestamp))
}

/// A timestamp as essync writes it (RFC 3339) or as a number of milliseconds since the epoch.
fn parse_timestamp(value: &Value) -> Result<DateTime<Utc>, String> {
    let parsed = match value {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("'{METADATA_FIELD}.timestamp' '{s}' is not RFC 3339: {e}")),
        Value::Number(n) => n
            .as_i64()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| {
                format!("'{METADATA_FIELD}.timestamp' {n} is not a time in milliseconds")
            }),
        other => Err(format!(
            "'{METADATA_FIELD}.timestamp' is {}",
            json_kind(other)
        )),
    }?;
    Ok(truncate_to_millis(parsed))
}

/// "a string", "an array", ... for messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The mapping essync adds to every index it writes to: its metadata typed as keyword and date.
pub fn metadata_mapping() -> Value {
    let mut properties = Map::new();
    properties.insert(
        METADATA_FIELD.to_string(),
        json!({"properties": {
            "type": {"type": "keyword"},
            "timestamp": {"type": "date", "format": "strict_date_optional_time||epoch_millis"}
        }}),
    );
    json!({ "properties": properties })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn hit(id: &str, source: Value) -> Value {
        json!({"_index": "books", "_id": id, "_seq_no": 7, "_primary_term": 1, "_source": source})
    }

    fn seen() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap()
    }

    #[test]
    fn metadata_round_trips() {
        let t = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
        let doc = Document::new(
            "books",
            "book",
            json!({"title": "T", "n": [1, {"x": null}]}),
        )
        .at(t);
        let source = to_source(&doc, t).unwrap();
        assert_eq!(
            source[METADATA_FIELD]["timestamp"],
            "2023-11-14T22:13:20.123Z"
        );
        let Read::Document(stored) = from_hit(&hit(&doc.id.to_string(), source), seen()) else {
            panic!("not read back");
        };
        assert!(stored.stamped);
        assert_eq!(stored.document, doc);
        assert_eq!(stored.version.seq_no, 7);
    }

    #[test]
    fn documents_without_metadata_take_the_time_they_were_seen() {
        let id = Uuid::new_v4();
        let Read::Document(stored) = from_hit(&hit(&id.to_string(), json!({"a": 1})), seen())
        else {
            panic!("not read");
        };
        assert!(!stored.stamped);
        assert_eq!(stored.document.timestamp, Some(seen()));
        assert_eq!(stored.document.doc_type, DEFAULT_TYPE);
    }

    #[test]
    fn ids_that_are_not_uuids_are_reported() {
        let Read::Bad(bad) = from_hit(&hit("not-a-uuid", json!({})), seen()) else {
            panic!("accepted a non-uuid id");
        };
        assert_eq!(bad.location, "books/not-a-uuid");
        assert!(bad.reason.contains("not a uuid"), "{}", bad.reason);
    }

    #[test]
    fn malformed_metadata_is_reported() {
        let id = Uuid::new_v4().to_string();
        let source = json!({METADATA_FIELD: {"timestamp": "yesterday"}});
        let Read::Bad(bad) = from_hit(&hit(&id, source), seen()) else {
            panic!("accepted a bad timestamp");
        };
        assert!(bad.reason.contains("RFC 3339"), "{}", bad.reason);
    }

    #[test]
    fn content_using_the_reserved_field_is_refused() {
        let doc = Document::new("i", "t", json!({METADATA_FIELD: 1}));
        assert!(to_source(&doc, seen()).unwrap_err().contains("reserves"));
        let doc = Document::new("i", "t", json!([1, 2]));
        assert!(to_source(&doc, seen()).unwrap_err().contains("an array"));
    }
}
