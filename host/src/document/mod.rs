//! The document both stores exchange.
//!
//! A [`Document`] is at once an Elasticsearch document (`_id` = `id`, in index `index`) and a row
//! of the synced Cassandra table (`id`, `index_`, `type`, `timestamp`, `content`). Its timestamp
//! is UTC with millisecond precision on both sides: every constructor and every store truncates
//! to the millisecond, so two reads of the same version compare equal.

mod canonical;
mod content;

use std::fmt::{self, Write as _};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

pub(crate) use canonical::without_member;
pub use content::Content;

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
    /// The body: a JSON object (the Elasticsearch `_source`, the Cassandra `content` text), as
    /// text, parsed on first look (`content["title"]`).
    pub content: Content,
}

impl Document {
    /// A new document with a random (v4) id and no timestamp yet.
    pub fn new(
        index: impl Into<String>,
        doc_type: impl Into<String>,
        content: impl Into<Content>,
    ) -> Self {
        Self::with_id(Uuid::new_v4(), index, doc_type, content)
    }

    /// A document with a given id and no timestamp yet.
    pub fn with_id(
        id: Uuid,
        index: impl Into<String>,
        doc_type: impl Into<String>,
        content: impl Into<Content>,
    ) -> Self {
        Self {
            id,
            index: index.into(),
            doc_type: doc_type.into(),
            timestamp: None,
            content: content.into(),
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

    /// The content as JSON text, as read or given: what Cassandra's `content` column and a
    /// policy receive.
    pub fn content_text(&self) -> &str {
        self.content.text()
    }

    /// The fingerprint of this document as essync writes it (with its type and timestamp):
    /// equal to the [`Digest`] a store reports for a version that holds exactly this.
    pub fn digest(&self) -> Digest {
        Digest::of(
            &self.index,
            Some(&self.doc_type),
            self.timestamp_millis(),
            &self.content,
        )
    }
}

/// The fingerprint of one stored version of a document: its index, its type and timestamp as
/// stored (absent when the store holds none), and its content as canonical JSON (keys sorted, no
/// whitespace, one spelling per number), hashed with SHA-256 and cut to 128 bits.
///
/// Two versions with the same digest hold the same data, however their JSON is spelled or
/// ordered; any change to a field, the type, the timestamp or the index changes it. essync
/// keeps the digest of the version both stores held after a sync (the ledger), and recognises
/// that version on each side by it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 16]);

impl Digest {
    /// The digest of a version with these stored fields.
    pub fn of(
        index: &str,
        doc_type: Option<&str>,
        timestamp: Option<i64>,
        content: &Content,
    ) -> Self {
        Self::with_repeats(index, doc_type, timestamp, content).0
    }

    /// The digest, and whether an object of the content repeats a key (a text no parser reads
    /// the same way: it is written as parsed, each key once).
    pub(crate) fn with_repeats(
        index: &str,
        doc_type: Option<&str>,
        timestamp: Option<i64>,
        content: &Content,
    ) -> (Self, bool) {
        thread_local! {
            /// The text hashed, kept between calls: a page's digests reuse one buffer.
            static TEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        let (hash, repeats) = TEXT.with_borrow_mut(|text| {
            text.clear();
            // Length-prefixed fields: no two different versions serialise the same way.
            let mut field = |value: Option<&str>| match value {
                Some(value) => {
                    let _ = write!(text, "{}:", value.len());
                    text.push_str(value);
                }
                None => text.push('-'),
            };
            field(Some(index));
            field(doc_type);
            field(timestamp.map(|t| t.to_string()).as_deref());
            let mut hasher = Sha256::new();
            hasher.update(text.as_bytes());
            text.clear();
            let repeats = canonical::canonical_text(content.text(), text);
            hasher.update(text.as_bytes());
            if text.capacity() > 1 << 20 {
                // One large document does not keep a large buffer for the thread's life.
                *text = String::new();
            }
            (hasher.finalize(), repeats)
        });
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&hash[..16]);
        (Digest(bytes), repeats)
    }

    /// The digest in lower-case hexadecimal (32 digits).
    pub fn hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(32);
        for byte in self.0 {
            hex.push(DIGITS[usize::from(byte >> 4)] as char);
            hex.push(DIGITS[usize::from(byte & 15)] as char);
        }
        hex
    }

    /// The digest [`Digest::hex`] wrote (either case), if `hex` is one.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let hex = hex.as_bytes();
        if hex.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
            *byte = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(Digest(bytes))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0[..6] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Appends the canonical text of a JSON value: no whitespace, object keys sorted by their UTF-8
/// bytes, strings escaped as `serde_json` escapes them, integers in decimal with every digit
/// (past 64 bits too) and other numbers in the shortest form that reads back as the same `f64`
/// (`1.50`, `1.5` and `15e-1` are one number). The same form as the policy SDK's
/// `json::canonical`.
pub fn canonical_json(value: &Value, out: &mut String) {
    // Serialising a `Value` cannot fail: its keys are strings.
    let text = serde_json::to_string(value).unwrap_or_default();
    canonical::canonical_text(&text, out);
}

/// Whether two JSON values hold the same data, however they are spelled or ordered (their
/// [`canonical_json`] texts are equal).
pub fn canonical_eq(a: &Value, b: &Value) -> bool {
    let (mut left, mut right) = (String::new(), String::new());
    canonical_json(a, &mut left);
    canonical_json(b, &mut right);
    left == right
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
        let content = self.content_text();
        let shown = match content.char_indices().nth(SHOWN) {
            Some((end, _)) => format!("{}… ({} bytes)", &content[..end], content.len()),
            None => content.to_string(),
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
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let every: String = (0u32..0x300).filter_map(char::from_u32).collect();
        for text in [every.as_str(), "", "plain", "a\"b\\c\u{7f}é𝄞\u{2028}"] {
            let mut out = String::new();
            canonical::escaped(text, &mut out);
            assert_eq!(out, serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn a_digest_reads_back_from_its_hex() {
        let digest = Digest([
            0xab, 0x01, 0xf0, 0x9c, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xfe, 0xff,
        ]);
        assert_eq!(digest.hex(), "ab01f09c00010203040506070809feff");
        assert_eq!(Digest::from_hex(&digest.hex()), Some(digest));
        assert_eq!(Digest::from_hex(&digest.hex().to_uppercase()), Some(digest));
        assert_eq!(Digest::from_hex("ab01"), None);
        assert_eq!(Digest::from_hex(&"g".repeat(32)), None);
    }

    #[test]
    fn digests_ignore_spelling_and_order_but_see_every_field() {
        let a: Value =
            serde_json::from_str(r#"{"b": [1.50, {"y": 1, "x": "é"}], "a": null}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a":null,"b":[1.5,{"x":"\u00e9","y":1.0}]}"#).unwrap();
        let digest = |index, doc_type, timestamp, content: &Value| {
            Digest::of(index, doc_type, timestamp, &Content::from(content.clone()))
        };
        let base = digest("i", Some("t"), Some(5), &a);
        assert_eq!(base, digest("i", Some("t"), Some(5), &b));
        assert_ne!(base, digest("j", Some("t"), Some(5), &a));
        assert_ne!(base, digest("i", None, Some(5), &a));
        assert_ne!(base, digest("i", Some("t"), None, &a));
        assert_ne!(base, digest("i", Some("t"), Some(6), &a));
        assert_ne!(base, digest("i", Some("t"), Some(5), &json!({"a": 1})));
        // Fields cannot bleed into each other.
        assert_ne!(
            digest("ab", Some("c"), None, &json!({})),
            digest("a", Some("bc"), None, &json!({}))
        );
        let doc = Document::with_id(Uuid::new_v4(), "i", "t", a.clone())
            .at(DateTime::from_timestamp_millis(5).unwrap());
        assert_eq!(doc.digest(), base);
    }

    #[test]
    fn integers_are_canonical_whatever_their_path() {
        for text in [
            "0",
            "-0",
            "7",
            "-7",
            "00",
            "123456789012345678",
            "-123456789012345678",
            "1234567890123456789",
            "18446744073709551615",
            "18446744073709551616",
            "123456789012345678901234567890",
            "1.0",
            "1e3",
            "-0.0",
        ] {
            let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            let mut fast = String::new();
            canonical_json(&value, &mut fast);
            let expected = match &value {
                Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => i.to_string(),
                    (None, Some(u), _) => u.to_string(),
                    (None, None, _) if !text.contains(['.', 'e', 'E']) => text.to_string(),
                    (None, None, Some(f)) if f.is_finite() => f.to_string(),
                    _ => n.to_string(),
                },
                other => other.to_string(),
            };
            assert_eq!(fast, expected, "{text}");
        }
    }

    #[test]
    fn debug_shortens_large_content() {
        let doc = Document::new("i", "t", json!({"text": "x".repeat(10_000)}));
        let shown = format!("{doc:?}");
        assert!(shown.len() < 400, "{shown}");
        assert!(shown.contains("bytes)"));
    }
}
