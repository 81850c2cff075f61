//! What essync policy authors share: the bindings of the `essync:policy` WIT world, a
//! [`Policy`] trait for writing a policy as plain Rust, and helpers for documents.
//!
//! A policy is a WebAssembly component that essync calls in batches to filter changes and to
//! resolve conflicts (see `wit/policy.wit` for the interface and its contract). essync takes a
//! change made on one side only by itself; `resolve` sees only conflicts: both sides changed an
//! id since the version they last shared (the *base*, given beside them), or one deleted it while
//! the other changed it. With this crate a policy is an ordinary Rust library:
//!
//! ```
//! use essync_policy::{Conflict, Policy, Resolution, versions};
//!
//! pub struct NewestWins;
//!
//! impl Policy for NewestWins {
//!     // `filter` keeps every document unless overridden.
//!     fn resolve(conflict: Conflict) -> Result<Resolution, String> {
//!         Ok(versions::last_write_wins(&conflict))
//!     }
//! }
//!
//! essync_policy::export!(NewestWins);
//! ```
//!
//! The crate is built twice:
//!
//! - natively (`crate-type = ["cdylib", "rlib"]`, `cargo test -p my-policy`): the logic is plain
//!   Rust, tested with plain unit tests; [`export!`] adds nothing and [`log`] writes to stderr;
//! - for `wasm32-wasip2` (`cargo build --release --target wasm32-wasip2 -p my-policy`): the
//!   [`export!`] macro generates the component's exports, and the `.wasm` file in
//!   `target/wasm32-wasip2/release/` is the policy component essync loads.
//!
//! Content crosses the boundary as JSON text; a policy that decides on metadata (id, index,
//! type, timestamp) never pays for parsing it. [`Document::content_object`] parses it when asked.
//!
//! # Numbers in content
//!
//! Every SDK gives the numbers of a document's content the same meaning, tested on the same
//! vectors (`policies/sdk/tests/content-vectors.json`). Here a number is a
//! [`serde_json::Number`], read as a number of Rust:
//!
//! - [`as_i64`](serde_json::Number::as_i64), [`as_u64`](serde_json::Number::as_u64) or
//!   [`as_i128`](serde_json::Number::as_i128): the exact integer, for a number written without
//!   a fraction or an exponent (`10`, `9007199254740993`); `None` for `2.0` or `1e2`;
//! - [`as_f64`](serde_json::Number::as_f64): the nearest double, for any number;
//! - [`as_str`](serde_json::Number::as_str): the spelling, its digits as written (`1.50`,
//!   `9007199254740993`) since the SDK builds `serde_json` with `arbitrary_precision`; an
//!   exponent is written `e+2` or `e-7` whatever its case and sign were.
//!
//! Compare two numbers as integers when both are, else as doubles: `10` is more than `9`, and
//! `1.5` equals `1.50`. Comparing two [`serde_json::Value`]s with `==` compares spellings
//! (`1.5 != 1.50`); [`json::canonical`] gives one spelling per number.

use std::cmp::Ordering;

use serde_json::{Map, Value};

/// The generated bindings of the `essync:policy` world. Use the re-exports at the crate root;
/// this module is public only because the [`export!`] macro refers to it.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "essync:policy/policy",
        pub_export_macro: true,
        export_macro_name: "export_component",
        default_bindings_module: "essync_policy::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::essync::policy::types::{
    Candidate, Conflict, Document, Level, Resolution, Side, Stamp, Verdict,
};
pub use bindings::exports::essync::policy::about::PolicyNeeds;

/// The version of the `essync:policy` WIT package these bindings implement.
pub const WORLD_VERSION: &str = "0.3.0";

/// A policy written as plain Rust: one decision per document or conflict.
///
/// [`export!`] turns a type implementing this trait into the exports of a policy component
/// (batches are mapped item by item, in order). The functions take their input by value so a
/// transform or a merge can reuse the strings without copying.
pub trait Policy {
    /// Whether [`Policy::resolve`] reads the content of a conflict's base (a three-way merge
    /// does). essync asks once, when it loads the component: when `true` it keeps the synced
    /// content of every document in its ledger (compressed) and a conflict's base carries it
    /// ([`Conflict::base_content`]); when `false` (the default) it keeps only what identifies
    /// each synced version, and a conflict's base comes with the content `{}`.
    const BASE_CONTENT: bool = false;

    /// Whether [`Policy::filter`] may answer anything but `Keep`. A policy that keeps the
    /// default `filter` (every change takes part) says `false`: essync then never calls it, and
    /// saves a call per batch with every changed document copied into the component. `true` by
    /// default, so that a policy that writes a `filter` is asked; with `false`, what `filter`
    /// would answer is ignored.
    const FILTERS: bool = true;

    /// Decides whether a change (a new version, or a delete when `candidate.deleted`) takes
    /// part in the sync. The default keeps every change (say [`Policy::FILTERS`] `false` with
    /// it).
    ///
    /// A `Transform` must be idempotent and keep the id (see the WIT contract); a delete cannot
    /// be transformed. An `Err` refuses to decide: essync reports it and asks again later.
    fn filter(candidate: Candidate) -> Result<Verdict, String> {
        let _ = candidate;
        Ok(Verdict::Keep)
    }

    /// Decides what both sides hold for one id that both changed since the base. An `Err`
    /// refuses to decide: essync reports it, leaves both sides as they are and asks again later.
    fn resolve(conflict: Conflict) -> Result<Resolution, String>;
}

/// What the policy needs from essync: what the exported `needs` answers.
pub fn needs_of<P: Policy>() -> PolicyNeeds {
    PolicyNeeds {
        base_content: P::BASE_CONTENT,
        filters: P::FILTERS,
    }
}

/// Applies [`Policy::filter`] to each candidate, in order: what the exported `filter` does.
pub fn filter_batch<P: Policy>(batch: Vec<Candidate>) -> Vec<Result<Verdict, String>> {
    batch.into_iter().map(P::filter).collect()
}

/// Applies [`Policy::resolve`] to each conflict, in order: what the exported `resolve` does.
pub fn resolve_batch<P: Policy>(batch: Vec<Conflict>) -> Vec<Result<Resolution, String>> {
    batch.into_iter().map(P::resolve).collect()
}

/// Exports a [`Policy`] implementation as the component's `about`, `filter` and `resolver`
/// interfaces.
///
/// Call it once, at the root of the policy crate: `essync_policy::export!(MyPolicy);`. The
/// WebAssembly exports exist only when building for `wasm32`; natively the macro only
/// implements the generated traits, so the crate also builds and tests as an ordinary library.
#[macro_export]
macro_rules! export {
    ($ty:ident) => {
        impl $crate::bindings::exports::essync::policy::about::Guest for $ty {
            fn needs() -> $crate::PolicyNeeds {
                $crate::needs_of::<$ty>()
            }
        }

        impl $crate::bindings::exports::essync::policy::filter::Guest for $ty {
            fn filter(
                batch: ::std::vec::Vec<$crate::Candidate>,
            ) -> ::std::vec::Vec<::std::result::Result<$crate::Verdict, ::std::string::String>>
            {
                $crate::filter_batch::<$ty>(batch)
            }
        }

        impl $crate::bindings::exports::essync::policy::resolver::Guest for $ty {
            fn resolve(
                batch: ::std::vec::Vec<$crate::Conflict>,
            ) -> ::std::vec::Vec<
                ::std::result::Result<$crate::Resolution, ::std::string::String>,
            > {
                $crate::resolve_batch::<$ty>(batch)
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export_component!($ty with_types_in $crate::bindings);
    };
}

/// Logs a message through essync's logs (target `essync::policy`). essync keeps a bounded
/// number of messages per call. Natively (in tests) the message goes to stderr.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{level:?}: {message}");
}

impl Document {
    /// Parses the content: the JSON object that is the document's body, its keys in their
    /// order, its numbers as the crate documentation says (*Numbers in content*).
    ///
    /// Parsing is left to the policy that needs it, so the error is a reason ready to return
    /// as a refusal: content that is not JSON, or not an object.
    pub fn content_object(&self) -> Result<Map<String, Value>, String> {
        match serde_json::from_str::<Value>(&self.content) {
            Ok(Value::Object(object)) => Ok(object),
            Ok(_) => Err(format!("the content of {} is not a JSON object", self.id)),
            Err(e) => Err(format!("the content of {} is not JSON: {e}", self.id)),
        }
    }

    /// Sets the content to the canonical text of a JSON object (see [`json::canonical`]).
    pub fn set_content(&mut self, content: &Map<String, Value>) {
        let mut text = String::with_capacity(self.content.len());
        json::write_object(content, &mut text);
        self.content = text;
    }
}

impl Conflict {
    /// The same conflict with the Elasticsearch and Cassandra versions swapped: what the other
    /// side sees. Handy to test that a rule is symmetric.
    pub fn swapped(self) -> Conflict {
        Conflict {
            id: self.id,
            base: self.base,
            base_content: self.base_content,
            elasticsearch: self.cassandra,
            cassandra: self.elasticsearch,
        }
    }

    /// Whether `side` deleted the document since the base (its version is absent, the base is
    /// there).
    pub fn deleted(&self, side: Side) -> bool {
        self.base.is_some() && self.version(side).is_none()
    }

    /// The base, when it carries the synced version's content (`base_content`): what a merge
    /// may read. `None` when there is no base, or when essync kept no content for it (the
    /// policy did not ask, or the document was synced before it did).
    pub fn base_with_content(&self) -> Option<&Document> {
        self.base.as_ref().filter(|_| self.base_content)
    }

    /// The version read from one side.
    pub fn version(&self, side: Side) -> Option<&Document> {
        match side {
            Side::Elasticsearch => self.elasticsearch.as_ref(),
            Side::Cassandra => self.cassandra.as_ref(),
        }
    }
}

impl Resolution {
    /// The same resolution seen from the other side: `UseElasticsearch` and `UseCassandra`
    /// exchanged, the rest unchanged.
    pub fn swapped(self) -> Resolution {
        match self {
            Resolution::UseElasticsearch => Resolution::UseCassandra,
            Resolution::UseCassandra => Resolution::UseElasticsearch,
            other => other,
        }
    }

    /// The resolution that makes both sides hold the version of `side`.
    pub fn use_side(side: Side) -> Resolution {
        match side {
            Side::Elasticsearch => Resolution::UseElasticsearch,
            Side::Cassandra => Resolution::UseCassandra,
        }
    }
}

/// Canonical JSON text, so that two texts of the same object compare equal.
pub mod json {
    use std::borrow::Cow;

    use serde_json::{Map, Value};

    /// The canonical text of a JSON text: no whitespace, object keys sorted by their UTF-8
    /// bytes, strings escaped the way `serde_json` escapes them, integers in decimal and other
    /// numbers in Rust's shortest round-trip form of their `f64` value (`1.0` and `1e0` are
    /// both `1`). Text that is not JSON is returned as it is.
    ///
    /// The form depends on no `serde_json` feature (key order, number precision), so a policy
    /// built for WebAssembly and the same code built natively agree.
    pub fn canonical(text: &str) -> Cow<'_, str> {
        match serde_json::from_str::<Value>(text) {
            Ok(value) => {
                let mut out = String::with_capacity(text.len());
                write_value(&value, &mut out);
                Cow::Owned(out)
            }
            Err(_) => Cow::Borrowed(text),
        }
    }

    /// Appends the canonical text of a JSON value.
    pub fn write_value(value: &Value, out: &mut String) {
        match value {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    out.push_str(&i.to_string());
                } else if let Some(u) = n.as_u64() {
                    out.push_str(&u.to_string());
                } else if !n.as_str().contains(['.', 'e', 'E']) {
                    // An integer past 64 bits keeps every digit.
                    out.push_str(n.as_str());
                } else {
                    match n.as_f64() {
                        Some(f) if f.is_finite() => out.push_str(&f.to_string()),
                        _ => out.push_str(&n.to_string()),
                    }
                }
            }
            Value::String(s) => write_string(s, out),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_value(item, out);
                }
                out.push(']');
            }
            Value::Object(object) => write_object(object, out),
        }
    }

    /// Appends the canonical text of a JSON object.
    pub fn write_object(object: &Map<String, Value>, out: &mut String) {
        let mut entries: Vec<(&String, &Value)> = object.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        out.push('{');
        for (i, (key, value)) in entries.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_string(key, out);
            out.push(':');
            write_value(value, out);
        }
        out.push('}');
    }

    fn write_string(s: &str, out: &mut String) {
        // Serialising a string cannot fail; the fallback keeps the function total anyway.
        match serde_json::to_string(s) {
            Ok(quoted) => out.push_str(&quoted),
            Err(_) => out.push_str("\"\""),
        }
    }
}

/// The order of versions that the default policy uses: which of two versions of a document is
/// the newer one, and the default resolution built on it.
pub mod versions {
    use super::*;

    /// Compares two versions of a document: the later timestamp is greater; when the
    /// timestamps are equal, the canonical content text (see [`json::canonical`]) is compared
    /// byte by byte, then the index, then the document type. `Equal` means the two versions
    /// hold the same data (who set the timestamp does not matter).
    ///
    /// The order is total and depends on the two versions only, never on which side they come
    /// from, so every replica that compares the same two versions picks the same winner.
    pub fn compare(a: &Document, b: &Document) -> Ordering {
        a.timestamp
            .cmp(&b.timestamp)
            .then_with(|| compare_content(&a.content, &b.content))
            .then_with(|| a.index.cmp(&b.index))
            .then_with(|| a.doc_type.cmp(&b.doc_type))
    }

    /// Whether two versions hold the same data: [`compare`] finds them equal.
    pub fn same(a: &Document, b: &Document) -> bool {
        compare(a, b) == Ordering::Equal
    }

    /// Compares the two versions of a conflict as the default policy does: like [`compare`],
    /// except that when the conflict has no base (both sides created the id before essync saw
    /// either), a version whose writer stamped it is newer than one essync had to stamp
    /// ([`Stamp::Observed`]): on first contact an observed timestamp says when essync looked,
    /// not when the data was written.
    pub fn compare_in(conflict: &Conflict, a: &Document, b: &Document) -> Ordering {
        if conflict.base.is_none() {
            let rank = |d: &Document| matches!(d.stamp, Stamp::Written);
            match rank(a).cmp(&rank(b)) {
                Ordering::Equal => {}
                decided => return decided,
            }
        }
        compare(a, b)
    }

    fn compare_content(a: &str, b: &str) -> Ordering {
        // Equal texts are the common case (both sides already in sync): no parsing then.
        if a == b {
            return Ordering::Equal;
        }
        json::canonical(a)
            .as_bytes()
            .cmp(json::canonical(b).as_bytes())
    }

    /// The default resolution, "the change wins; when both sides changed, the later one wins":
    ///
    /// - both versions present: the greater by [`compare_in`] wins; equal versions are
    ///   `Unchanged`;
    /// - one side deleted the document and the other changed it: the change wins, and the
    ///   deleting side gets it back (a delete erases data for good, while a restored document
    ///   can be deleted again: in doubt, essync keeps data);
    /// - one version only and no base (never a conflict essync sends, but the rule is total):
    ///   that version is copied;
    /// - no version at all: `Unchanged`.
    pub fn last_write_wins(conflict: &Conflict) -> Resolution {
        match (&conflict.elasticsearch, &conflict.cassandra) {
            (None, None) => Resolution::Unchanged,
            (Some(_), None) => Resolution::UseElasticsearch,
            (None, Some(_)) => Resolution::UseCassandra,
            (Some(es), Some(cassandra)) => match compare_in(conflict, es, cassandra) {
                Ordering::Greater => Resolution::UseElasticsearch,
                Ordering::Less => Resolution::UseCassandra,
                Ordering::Equal => Resolution::Unchanged,
            },
        }
    }

    /// The side whose version [`last_write_wins`] picks, if any.
    pub fn newer_side(conflict: &Conflict) -> Option<Side> {
        match last_write_wins(conflict) {
            Resolution::UseElasticsearch => Some(Side::Elasticsearch),
            Resolution::UseCassandra => Some(Side::Cassandra),
            _ => None,
        }
    }
}

/// Fixtures for a policy's native unit tests: documents, conflicts and candidates in a line.
pub mod testing {
    use super::{Candidate, Conflict, Document, Side, Stamp};

    /// The id every fixture uses.
    pub const ID: &str = "6f1c1b0e-8a8e-4a53-9c3f-4a0e6f1f7c11";

    /// A document of [`ID`] in the index `books`, type `book`, stamped by its writer.
    pub fn doc(timestamp: i64, content: &str) -> Document {
        doc_in("books", timestamp, content)
    }

    /// A document of [`ID`] in another index.
    pub fn doc_in(index: &str, timestamp: i64, content: &str) -> Document {
        Document {
            id: ID.to_string(),
            index: index.to_string(),
            doc_type: "book".to_string(),
            timestamp,
            stamp: Stamp::Written,
            content: content.to_string(),
        }
    }

    /// The same document with a timestamp essync observed rather than one its writer set.
    pub fn observed(mut document: Document) -> Document {
        document.stamp = Stamp::Observed;
        document
    }

    /// Both versions of [`ID`], with no base: both sides created it.
    pub fn conflict(elasticsearch: Option<Document>, cassandra: Option<Document>) -> Conflict {
        Conflict {
            id: ID.to_string(),
            base: None,
            base_content: false,
            elasticsearch,
            cassandra,
        }
    }

    /// Both versions of [`ID`] and the base they both changed (or one of them deleted), the
    /// base with its content (as a policy that asked for it sees it).
    pub fn conflict_from(
        base: Document,
        elasticsearch: Option<Document>,
        cassandra: Option<Document>,
    ) -> Conflict {
        Conflict {
            id: ID.to_string(),
            base: Some(base),
            base_content: true,
            elasticsearch,
            cassandra,
        }
    }

    /// The same conflict as a policy that did not ask for base content sees it: the base's
    /// content is `{}` and `base_content` is false.
    pub fn without_base_content(mut conflict: Conflict) -> Conflict {
        if let Some(base) = conflict.base.as_mut() {
            base.content = "{}".to_string();
        }
        conflict.base_content = false;
        conflict
    }

    /// A new version about to take part, read from `side`.
    pub fn candidate(side: Side, document: Document) -> Candidate {
        Candidate {
            side,
            document,
            deleted: false,
        }
    }

    /// The delete of `document` (the base) on `side`.
    pub fn deletion(side: Side, document: Document) -> Candidate {
        Candidate {
            side,
            document,
            deleted: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::doc;
    use super::*;

    #[test]
    fn canonical_json_ignores_key_order_whitespace_and_number_spelling() {
        assert_eq!(
            json::canonical(r#" { "b" : [1.0, 2e0], "a": {"y": "é", "x": null} } "#),
            r#"{"a":{"x":null,"y":"é"},"b":[1,2]}"#
        );
        assert_eq!(json::canonical(r#"{"a":"\u00e9"}"#), r#"{"a":"é"}"#);
        assert_eq!(json::canonical("not json"), "not json");
        // What the Python and JavaScript helpers must write too (`policies/sdk/{python,js}`).
        assert_eq!(
            json::canonical(
                "[9007199254740993, 1e21, 1e-7, -0.0, -0, 18446744073709551616, 0.1, 1.5e300]"
            ),
            format!(
                "[9007199254740993,1000000000000000000000,0.0000001,-0,0,18446744073709551616,0.1,15{}]",
                "0".repeat(299)
            )
        );
        assert_eq!(
            json::canonical("{\"\u{ffff}\":1,\"\u{1F600}\":2,\"a\\u0000\":\"\\t\\u007f/\"}"),
            "{\"a\\u0000\":\"\\t\u{7f}/\",\"\u{ffff}\":1,\"\u{1F600}\":2}"
        );
    }

    #[test]
    fn later_timestamps_are_newer_and_ties_go_to_the_greater_content() {
        assert_eq!(
            versions::compare(&doc(2, "{}"), &doc(1, r#"{"z":1}"#)),
            Ordering::Greater
        );
        assert_eq!(
            versions::compare(&doc(1, r#"{"a":2}"#), &doc(1, r#"{"a":1}"#)),
            Ordering::Greater
        );
        assert_eq!(
            versions::compare(&doc(1, r#"{"a":1,"b":2}"#), &doc(1, r#"{ "b":2, "a":1 }"#)),
            Ordering::Equal
        );
        let mut other_index = doc(1, "{}");
        other_index.index = "zebra".to_string();
        assert_eq!(
            versions::compare(&other_index, &doc(1, "{}")),
            Ordering::Greater
        );
    }

    #[test]
    fn on_first_contact_a_written_stamp_beats_an_observed_one() {
        use super::testing::{conflict, conflict_from, observed};
        let stamped = doc(1, r#"{"v":"stamped"}"#);
        let seen_later = observed(doc(9, r#"{"v":"seen"}"#));
        let first = conflict(Some(seen_later.clone()), Some(stamped.clone()));
        assert_eq!(versions::last_write_wins(&first), Resolution::UseCassandra);
        assert_eq!(
            versions::last_write_wins(&first.clone().swapped()),
            Resolution::UseElasticsearch
        );
        // With a base, an observed timestamp is when the change was made: the later one wins.
        let later = conflict_from(doc(0, "{}"), Some(seen_later), Some(stamped));
        assert_eq!(
            versions::last_write_wins(&later),
            Resolution::UseElasticsearch
        );
    }

    #[test]
    fn a_change_beats_a_delete() {
        use super::testing::conflict_from;
        let c = conflict_from(doc(1, "{}"), None, Some(doc(2, r#"{"a":1}"#)));
        assert!(c.deleted(Side::Elasticsearch));
        assert!(!c.deleted(Side::Cassandra));
        assert_eq!(versions::last_write_wins(&c), Resolution::UseCassandra);
    }

    #[test]
    fn content_is_parsed_on_demand() {
        assert!(doc(1, r#"{"a":1}"#).content_object().is_ok());
        assert!(
            doc(1, "[1]")
                .content_object()
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(
            doc(1, "{")
                .content_object()
                .unwrap_err()
                .contains("not JSON")
        );
        let mut d = doc(1, "{}");
        let mut object = Map::new();
        object.insert("b".to_string(), Value::from(1));
        object.insert("a".to_string(), Value::from("x"));
        d.set_content(&object);
        assert_eq!(d.content, r#"{"a":"x","b":1}"#);
    }
}
