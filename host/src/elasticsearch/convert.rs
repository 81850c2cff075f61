//! The one conversion each way between a [`Document`] and an Elasticsearch document.
//!
//! Modern Elasticsearch has neither mapping types nor `_timestamp`, so essync keeps a
//! document's type and timestamp inside `_source`, under the reserved field [`METADATA_FIELD`]:
//!
//! ```json
//! {"title": "...", "_essync": {"type": "book", "timestamp": "2024-05-06T07:08:09.123Z",
//!   "digest": "5f0c...e1", "over": "41/1"}}
//! ```
//!
//! Everything else in `_source` is the document's content. A content object that itself uses
//! the reserved field cannot be represented and is refused.
//!
//! `digest` and `over` are essync's mark: the [`Digest`] of the version it wrote, and the
//! version (`_seq_no/_primary_term`) that write replaced, absent when it created the document.
//! A version read with a digest mark equal to its own digest is exactly what essync wrote,
//! unchanged since; any change by another writer (content, type or timestamp) makes them
//! differ, even one that kept the metadata field as it was. That, with what it replaced, is how
//! a write of essync's that landed late (a process frozen past its lease, thawed after another
//! one took over) is told apart from an application's change (see `sync::batch::attribute`).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::response::Hit;
use crate::Document;
use crate::document::{
    Content, DEFAULT_TYPE, Digest, format_timestamp, truncate_to_millis, without_member,
};
use crate::store::{BadDocument, Read, Side, Stored, WrittenOver};

/// The `_source` field that holds essync's metadata (`type`, `timestamp`).
pub const METADATA_FIELD: &str = "_essync";

/// Where a document is in Elasticsearch, and the version a write must match to replace it.
///
/// Two versions are the same when their index, sequence number and primary term are: the
/// `_id`'s spelling and the routing say how to reach a document, not which version it is.
#[derive(Debug, Clone, Eq)]
pub struct EsVersion {
    /// The index holding the document.
    pub index: String,
    /// Its sequence number in its shard.
    pub seq_no: i64,
    /// The primary term of that sequence number.
    pub primary_term: i64,
    /// The `_id` exactly as Elasticsearch holds it, when it is not the uuid's canonical
    /// (lower-case, hyphenated) spelling: `6F1C1B0E-...`, `{6f1c...}`, `6f1c1b0e8a8e...`.
    /// Writes go back under this `_id`.
    pub raw_id: Option<String>,
    /// The custom routing the document was indexed with, if any: writes carry it.
    pub routing: Option<String>,
}

impl PartialEq for EsVersion {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index
            && self.seq_no == other.seq_no
            && self.primary_term == other.primary_term
    }
}

impl EsVersion {
    /// A version at a sequence number, with the canonical `_id` and no routing.
    pub fn new(index: impl Into<String>, seq_no: i64, primary_term: i64) -> Self {
        Self {
            index: index.into(),
            seq_no,
            primary_term,
            raw_id: None,
            routing: None,
        }
    }

    /// The `_id` that holds the document `id`.
    pub fn id_of(&self, id: Uuid) -> String {
        self.raw_id.clone().unwrap_or_else(|| id.to_string())
    }
}

/// The spellings of a uuid essync reads as `_id`s: hyphenated, simple (32 digits) and braced,
/// each in lower and upper case. essync writes the canonical one (lower-case, hyphenated).
pub fn spellings(id: Uuid) -> [String; 6] {
    let hyphenated = id.hyphenated().to_string();
    let simple = id.simple().to_string();
    let braced = id.braced().to_string();
    [
        hyphenated.to_uppercase(),
        simple.to_uppercase(),
        braced.to_uppercase(),
        hyphenated,
        simple,
        braced,
    ]
}

/// The uuid an `_id` spells, if it is one of [`spellings`]; why not, otherwise.
pub fn parse_id(raw: &str) -> Result<Uuid, String> {
    let id = Uuid::parse_str(raw)
        .map_err(|_| "its _id is not a uuid, so it has no row id in Cassandra".to_string())?;
    if spellings(id).iter().any(|s| s == raw) {
        Ok(id)
    } else {
        Err(format!(
            "its _id spells the uuid {id} in a way essync cannot look up (mixed case, or a urn); \
             essync reads uuids hyphenated, simple or braced, all in lower or all in upper case"
        ))
    }
}

/// The `_source` essync writes for a document: its content's text with the metadata field
/// added as its last member, written without a copy of the content.
#[derive(Debug)]
pub struct Source<'a> {
    content: &'a str,
    metadata: Value,
}

impl Source<'_> {
    /// Appends the source's JSON text.
    pub fn write_to(&self, buffer: &mut Vec<u8>) {
        let content = self.content.trim_end();
        let body = content.strip_suffix('}').unwrap_or(content);
        buffer.extend_from_slice(body.as_bytes());
        if !body
            .trim_start()
            .strip_prefix('{')
            .unwrap_or(body)
            .trim()
            .is_empty()
        {
            buffer.push(b',');
        }
        buffer.push(b'"');
        buffer.extend_from_slice(METADATA_FIELD.as_bytes());
        buffer.extend_from_slice(b"\":");
        // Serialising a `Value` into a buffer cannot fail.
        let _ = serde_json::to_writer(&mut *buffer, &self.metadata);
        buffer.push(b'}');
    }

    /// The source's JSON text.
    pub fn text(&self) -> String {
        let mut buffer = Vec::with_capacity(self.content.len() + 80);
        self.write_to(&mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// The `_source` essync writes for a document (see [`Source`]), marked with `digest`, the
/// document's own, and with what the write replaces; or why it cannot be written.
pub fn to_source(
    document: &Document,
    timestamp: DateTime<Utc>,
    digest: Digest,
    over: WrittenOver,
) -> Result<Source<'_>, String> {
    if !document.content.is_object_text() {
        return Err(format!(
            "content is not a JSON object but {}",
            json_kind(&document.content)
        ));
    }
    let content = document.content.text();
    if without_member(content, METADATA_FIELD).1.is_some() {
        return Err(format!(
            "content uses the field '{METADATA_FIELD}', which essync reserves for its metadata in Elasticsearch"
        ));
    }
    let mut metadata = json!({
        "type": document.doc_type,
        "timestamp": format_timestamp(timestamp),
        "digest": digest.hex(),
    });
    if let WrittenOver::Version {
        seq_no,
        primary_term,
    } = over
    {
        metadata["over"] = json!(format!("{seq_no}/{primary_term}"));
    }
    Ok(Source { content, metadata })
}

/// Reads one search hit (or `_mget` doc) into a document; `seen_at` is the timestamp given to a
/// document that carries no metadata (one written by another program).
pub(crate) fn from_hit(mut hit: Hit, seen_at: DateTime<Utc>) -> Read<EsVersion> {
    let index = hit.index.as_str();
    let raw_id = hit.id.as_str();
    let bad = |id: Option<Uuid>, reason: String| {
        Read::Bad(BadDocument {
            side: Side::Elasticsearch,
            id,
            location: format!("{index}/{raw_id}"),
            reason,
        })
    };
    let id = match parse_id(raw_id) {
        Ok(id) => id,
        Err(reason) => return bad(Uuid::parse_str(raw_id).ok(), reason),
    };
    let Some(version) = version_of(&hit) else {
        return bad(
            Some(id),
            "the answer carries no _seq_no/_primary_term".to_string(),
        );
    };
    let source = match hit.source.take() {
        Some(raw) if raw.get().trim_start().starts_with('{') => raw,
        Some(other) => {
            let other: Value = serde_json::from_str(other.get()).unwrap_or(Value::Null);
            return bad(Some(id), format!("_source is {}", json_kind(&other)));
        }
        None => {
            return bad(
                Some(id),
                "_source is disabled for its index; essync needs it".to_string(),
            );
        }
    };
    let (content, metadata) = without_member(source.get(), METADATA_FIELD);
    let metadata: Option<Value> = metadata.and_then(|raw| serde_json::from_str(raw).ok());
    let (stored_type, stored_timestamp, mark) = match read_metadata(metadata.as_ref()) {
        Ok(stored) => stored,
        Err(reason) => return bad(Some(id), reason),
    };
    // The answer parsed, so its source is valid JSON.
    let content = Content::trusted(content);
    let digest = Digest::of(
        index,
        stored_type.as_deref(),
        stored_timestamp.map(|t| t.timestamp_millis()),
        &content,
    );
    let stamped = stored_timestamp.is_some();
    let exact = stamped && stored_type.is_some();
    let essync_wrote = mark.filter(|mark| mark.digest == digest).map(|m| m.over);
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
        exact,
        essync_wrote,
        version,
    })
}

/// The version of a hit (a search hit or an `_mget` doc, with or without its source): where
/// it is, its `_id` as spelled there and its routing.
pub(crate) fn version_of(hit: &Hit) -> Option<EsVersion> {
    let id = Uuid::parse_str(&hit.id).ok()?;
    Some(EsVersion {
        index: hit.index.clone(),
        seq_no: hit.seq_no?,
        primary_term: hit.primary_term?,
        raw_id: (hit.id != id.to_string()).then(|| hit.id.clone()),
        routing: hit.routing.clone(),
    })
}

/// essync's mark, as read: the digest of the version it wrote, and what that write replaced.
struct Mark {
    digest: Digest,
    over: WrittenOver,
}

/// What the metadata field holds.
type Metadata = (Option<String>, Option<DateTime<Utc>>, Option<Mark>);

/// The type, timestamp and mark the metadata field holds (each `None` when absent), or why it
/// is unusable. A mark that cannot be read is no mark.
fn read_metadata(metadata: Option<&Value>) -> Result<Metadata, String> {
    let Some(metadata) = metadata else {
        return Ok((None, None, None));
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
    Ok((doc_type, timestamp, read_mark(fields)))
}

fn read_mark(fields: &Map<String, Value>) -> Option<Mark> {
    let digest = Digest::from_hex(fields.get("digest")?.as_str()?)?;
    let over = match fields.get("over") {
        None | Some(Value::Null) => WrittenOver::Nothing,
        Some(over) => {
            let (seq_no, primary_term) = over.as_str()?.split_once('/')?;
            WrittenOver::Version {
                seq_no: seq_no.parse().ok()?,
                primary_term: primary_term.parse().ok()?,
            }
        }
    };
    Some(Mark { digest, over })
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
            "timestamp": {"type": "date", "format": "strict_date_optional_time||epoch_millis"},
            "digest": {"type": "keyword", "index": false, "doc_values": false},
            "over": {"type": "keyword", "index": false, "doc_values": false}
        }}),
    );
    json!({ "properties": properties })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn hit(id: &str, source: Value) -> Hit {
        let hit = json!({"_index": "books", "_id": id, "_seq_no": 7, "_primary_term": 1, "_source": source});
        serde_json::from_str(&hit.to_string()).expect("a hit")
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
        let source: Value = serde_json::from_str(
            &to_source(&doc, t, doc.digest(), WrittenOver::Nothing)
                .unwrap()
                .text(),
        )
        .unwrap();
        assert_eq!(
            source[METADATA_FIELD]["timestamp"],
            "2023-11-14T22:13:20.123Z"
        );
        let Read::Document(stored) = from_hit(hit(&doc.id.to_string(), source), seen()) else {
            panic!("not read back");
        };
        assert!(stored.stamped);
        assert_eq!(stored.document, doc);
        assert_eq!(stored.version.seq_no, 7);
        assert_eq!(
            stored.essync_wrote,
            Some(WrittenOver::Nothing),
            "essync's mark"
        );
        assert_eq!(stored.digest, doc.digest());
    }

    #[test]
    fn a_change_by_another_writer_breaks_essyncs_mark() {
        let t = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
        let doc = Document::new("books", "book", json!({"title": "T"})).at(t);
        let written: Value = serde_json::from_str(
            &to_source(&doc, t, doc.digest(), WrittenOver::Nothing)
                .unwrap()
                .text(),
        )
        .unwrap();
        let read = |source: Value| match from_hit(hit(&doc.id.to_string(), source), seen()) {
            Read::Document(stored) => stored.essync_wrote.is_some(),
            Read::Bad(bad) => panic!("{bad}"),
        };
        assert!(read(written.clone()));
        let over = WrittenOver::Version {
            seq_no: 41,
            primary_term: 2,
        };
        let replacing: Value =
            serde_json::from_str(&to_source(&doc, t, doc.digest(), over).unwrap().text()).unwrap();
        assert_eq!(replacing[METADATA_FIELD]["over"], "41/2");
        match from_hit(hit(&doc.id.to_string(), replacing), seen()) {
            Read::Document(stored) => assert_eq!(stored.essync_wrote, Some(over)),
            Read::Bad(bad) => panic!("{bad}"),
        }
        // A read-modify-write that kept the metadata field as it was.
        let mut changed = written.clone();
        changed["title"] = json!("U");
        assert!(!read(changed), "a change of the content");
        let mut restamped = written.clone();
        restamped[METADATA_FIELD]["timestamp"] = json!("2023-11-14T22:13:21.000Z");
        assert!(!read(restamped), "a change of the timestamp");
        let mut unmarked = written;
        unmarked[METADATA_FIELD]
            .as_object_mut()
            .unwrap()
            .remove("digest");
        assert!(!read(unmarked), "no mark");
    }

    #[test]
    fn documents_without_metadata_take_the_time_they_were_seen() {
        let id = Uuid::new_v4();
        let Read::Document(stored) = from_hit(hit(&id.to_string(), json!({"a": 1})), seen()) else {
            panic!("not read");
        };
        assert!(!stored.stamped);
        assert_eq!(stored.document.timestamp, Some(seen()));
        assert_eq!(stored.document.doc_type, DEFAULT_TYPE);
    }

    #[test]
    fn ids_that_are_not_uuids_are_reported() {
        let Read::Bad(bad) = from_hit(hit("not-a-uuid", json!({})), seen()) else {
            panic!("accepted a non-uuid id");
        };
        assert_eq!(bad.location, "books/not-a-uuid");
        assert!(bad.reason.contains("not a uuid"), "{}", bad.reason);
    }

    #[test]
    fn uuid_ids_in_any_usual_spelling_are_read_and_kept_for_writing_back() {
        let id = Uuid::parse_str("6f1c1b0e-8a8e-4a53-9c3f-4a0e6f1f7c11").unwrap();
        for raw in spellings(id) {
            let Read::Document(stored) = from_hit(hit(&raw, json!({})), seen()) else {
                panic!("{raw} not read");
            };
            assert_eq!(stored.document.id, id);
            assert_eq!(stored.version.id_of(id), raw);
            assert_eq!(stored.version.raw_id.is_none(), raw == id.to_string());
        }
        let Read::Bad(bad) = from_hit(
            hit("6F1c1b0e-8a8e-4a53-9c3f-4a0e6f1f7c11", json!({})),
            seen(),
        ) else {
            panic!("mixed case accepted");
        };
        assert_eq!(bad.id, Some(id));
        assert!(bad.reason.contains("mixed case"), "{}", bad.reason);
    }

    #[test]
    fn malformed_metadata_is_reported() {
        let id = Uuid::new_v4().to_string();
        let source = json!({METADATA_FIELD: {"timestamp": "yesterday"}});
        let Read::Bad(bad) = from_hit(hit(&id, source), seen()) else {
            panic!("accepted a bad timestamp");
        };
        assert!(bad.reason.contains("RFC 3339"), "{}", bad.reason);
    }

    #[test]
    fn content_using_the_reserved_field_is_refused() {
        let doc = Document::new("i", "t", json!({METADATA_FIELD: 1}));
        assert!(
            to_source(&doc, seen(), doc.digest(), WrittenOver::Nothing)
                .unwrap_err()
                .contains("reserves")
        );
        let doc = Document::new("i", "t", json!([1, 2]));
        assert!(
            to_source(&doc, seen(), doc.digest(), WrittenOver::Nothing)
                .unwrap_err()
                .contains("an array")
        );
    }
}
