//! A document's body, kept as the JSON text a store holds.
//!
//! essync moves contents between the stores as text: a Cassandra `content` cell is written to
//! Elasticsearch as it reads, and an Elasticsearch `_source` (less essync's metadata field) is
//! written to Cassandra as it reads. Numbers keep their spelling and keys their order, and no
//! tree of values is built for a document that is only copied. The [`Value`] is parsed on first
//! use (`content["title"]`, `content.as_object()`), for the programs and policies that look
//! inside.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use serde::de::IgnoredAny;
use serde_json::Value;

/// A JSON value (a document's content is an object) as text, with its parsed [`Value`] at hand
/// through `Deref`.
#[derive(Clone)]
pub struct Content {
    text: Arc<str>,
    value: OnceLock<Value>,
}

impl Content {
    /// The content of a JSON text, or why the text is not JSON. The text is kept as it is.
    pub fn from_json(text: impl Into<Arc<str>>) -> Result<Self, serde_json::Error> {
        let text: Arc<str> = text.into();
        serde_json::from_str::<IgnoredAny>(&text)?;
        Ok(Self::trusted(text))
    }

    /// A text already known to be valid JSON.
    pub(crate) fn trusted(text: impl Into<Arc<str>>) -> Self {
        Self {
            text: text.into(),
            value: OnceLock::new(),
        }
    }

    /// The JSON text, exactly as read or given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parsed value.
    pub fn value(&self) -> &Value {
        self.value
            .get_or_init(|| serde_json::from_str(&self.text).unwrap_or(Value::Null))
    }

    /// The parsed value, owned.
    pub fn into_value(self) -> Value {
        match self.value.into_inner() {
            Some(value) => value,
            None => serde_json::from_str(&self.text).unwrap_or(Value::Null),
        }
    }

    /// Whether the text is a JSON object (what a document's content must be), seen without
    /// parsing it.
    pub fn is_object_text(&self) -> bool {
        self.text.trim_start().starts_with('{')
    }
}

impl From<Value> for Content {
    fn from(value: Value) -> Self {
        // Serialising a `Value` cannot fail: its keys are strings.
        let text = serde_json::to_string(&value).unwrap_or_default();
        Self {
            text: text.into(),
            value: OnceLock::from(value),
        }
    }
}

impl From<Content> for Value {
    fn from(content: Content) -> Self {
        content.into_value()
    }
}

impl Deref for Content {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.value()
    }
}

impl PartialEq for Content {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text || self.value() == other.value()
    }
}

impl PartialEq<Value> for Content {
    fn eq(&self, other: &Value) -> bool {
        self.value() == other
    }
}

impl PartialEq<Content> for Value {
    fn eq(&self, other: &Content) -> bool {
        self == other.value()
    }
}

impl serde::Serialize for Content {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(serializer)
    }
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_kept_as_read_and_parsed_on_demand() {
        let content =
            Content::from_json(r#"{"b": 1.50, "a": 123456789012345678901234567890}"#).unwrap();
        assert_eq!(
            content.text(),
            r#"{"b": 1.50, "a": 123456789012345678901234567890}"#
        );
        assert_eq!(content["a"].to_string(), "123456789012345678901234567890");
        assert!(content.is_object_text());
        assert!(Content::from_json("{").is_err());
        assert!(Content::from_json(r#"{"a":1} x"#).is_err());
    }

    #[test]
    fn values_become_compact_text() {
        let content = Content::from(json!({"title": "x", "n": [1, 2]}));
        assert_eq!(content.text(), r#"{"title":"x","n":[1,2]}"#);
        assert_eq!(content, json!({"n": [1, 2], "title": "x"}));
        assert!(!Content::from(json!([1])).is_object_text());
    }
}
