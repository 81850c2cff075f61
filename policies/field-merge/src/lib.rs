//! Example policy: a three-way merge of the top-level fields of a document.
//!
//! Every change takes part. When both sides changed a document since the version they last
//! shared (the base), each top-level field of the content is merged on its own:
//!
//! - a field changed (or added, or removed) on one side only takes that side's value, even when
//!   the other side's version is newer as a whole;
//! - a field changed on both sides takes the newer version's value (the greater by
//!   [`essync_policy::versions::compare_in`]: later timestamp, ties broken as the default policy
//!   does); a removal counts as a change;
//! - the index and the type are merged the same way; the merged document has the newer
//!   version's timestamp, and is written to both sides. When the merge is one side's version,
//!   that side's version is used; when both versions are the same, nothing changes.
//!
//! Without a base (both sides created the document), fields cannot be told apart by who changed
//! them: a key present in both takes the newer version's value, and a key of one side only is
//! kept. When one side deleted the document and the other changed it, the change wins (the
//! document comes back), as in the default policy.
//!
//! The merge reads the base's content, so the policy asks essync for it
//! ([`Policy::BASE_CONTENT`]): essync then keeps the synced content of every document in its
//! ledger. A conflict whose base comes without its content (`base_content` false: a document
//! synced before this policy was in use, when essync kept no content) is merged as without a
//! base (the two-way merge above), the newer version still chosen as with a base.
//!
//! A version whose content is not a JSON object is refused with the reason (essync reports it
//! and leaves both sides alone).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use essync_policy::{Conflict, Document, Policy, Resolution, json, versions};
use serde_json::{Map, Value};

/// The field-merge policy.
pub struct FieldMerge;

impl Policy for FieldMerge {
    const BASE_CONTENT: bool = true;
    /// Every change takes part: essync need not ask.
    const FILTERS: bool = false;

    fn resolve(conflict: Conflict) -> Result<Resolution, String> {
        resolve(&conflict)
    }
}

/// Resolves one conflict by merging top-level fields.
pub fn resolve(conflict: &Conflict) -> Result<Resolution, String> {
    let (Some(es), Some(cassandra)) = (&conflict.elasticsearch, &conflict.cassandra) else {
        return Ok(versions::last_write_wins(conflict));
    };
    let (newer, older) = match versions::compare_in(conflict, es, cassandra) {
        Ordering::Equal => return Ok(Resolution::Unchanged),
        Ordering::Greater => (es, cassandra),
        Ordering::Less => (cassandra, es),
    };
    let merged = match conflict.base_with_content() {
        Some(base) => three_way(base, newer, older)?,
        None => two_way(newer, older)?,
    };
    Ok(if versions::same(&merged, es) {
        Resolution::UseElasticsearch
    } else if versions::same(&merged, cassandra) {
        Resolution::UseCassandra
    } else {
        Resolution::Write(merged)
    })
}

/// Each field from the side that changed it; fields both changed from the newer version.
fn three_way(base: &Document, newer: &Document, older: &Document) -> Result<Document, String> {
    let (base_fields, newer_fields, older_fields) = (
        base.content_object()?,
        newer.content_object()?,
        older.content_object()?,
    );
    let keys: BTreeSet<&String> = base_fields
        .keys()
        .chain(newer_fields.keys())
        .chain(older_fields.keys())
        .collect();
    let mut content = Map::new();
    for key in keys {
        let value = pick(
            base_fields.get(key),
            newer_fields.get(key),
            older_fields.get(key),
        );
        if let Some(value) = value {
            content.insert(key.clone(), value.clone());
        }
    }
    let mut merged = newer.clone();
    merged.index = pick_text(&base.index, &newer.index, &older.index);
    merged.doc_type = pick_text(&base.doc_type, &newer.doc_type, &older.doc_type);
    merged.set_content(&content);
    Ok(merged)
}

/// The value of one field: the older side's when only it changed the field, else the newer
/// side's (`None`: the field is absent).
fn pick<'a>(
    base: Option<&Value>,
    newer: Option<&'a Value>,
    older: Option<&'a Value>,
) -> Option<&'a Value> {
    if same_value(newer, base) {
        older
    } else {
        newer
    }
}

fn pick_text(base: &str, newer: &str, older: &str) -> String {
    if newer == base { older } else { newer }.to_string()
}

/// Whether two field values are the same JSON, however spelled.
fn same_value(a: Option<&Value>, b: Option<&Value>) -> bool {
    let text = |v: &Value| {
        let mut out = String::new();
        json::write_value(v, &mut out);
        out
    };
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a == b || text(a) == text(b),
        _ => false,
    }
}

/// The newer version with the top-level keys only the older version has added to its content.
fn two_way(newer: &Document, older: &Document) -> Result<Document, String> {
    let mut content = older.content_object()?;
    content.extend(newer.content_object()?);
    let mut merged = newer.clone();
    merged.set_content(&content);
    Ok(merged)
}

essync_policy::export!(FieldMerge);

#[cfg(test)]
mod tests {
    use super::*;
    use essync_policy::testing::{self, ID, conflict, conflict_from, doc};
    use proptest::prelude::*;

    #[test]
    fn a_field_changed_on_one_side_only_is_taken_even_from_the_older_version() {
        let base = doc(1, r#"{"title":"Dune","pages":400,"isbn":"1"}"#);
        let es = doc(5, r#"{"title":"Dune","pages":412,"isbn":"1"}"#);
        let cassandra = doc(3, r#"{"title":"Dune (2nd ed.)","pages":400}"#);
        let c = conflict_from(base, Some(es), Some(cassandra));
        assert_eq!(
            resolve(&c),
            Ok(Resolution::Write(doc(
                5,
                r#"{"pages":412,"title":"Dune (2nd ed.)"}"#
            )))
        );
        assert_eq!(resolve(&c.clone().swapped()), resolve(&c));
    }

    #[test]
    fn a_field_changed_on_both_sides_takes_the_newer_value() {
        let base = doc(1, r#"{"v":1}"#);
        let c = conflict_from(base, Some(doc(5, r#"{"v":2}"#)), Some(doc(3, r#"{"v":3}"#)));
        assert_eq!(resolve(&c), Ok(Resolution::UseElasticsearch));
    }

    #[test]
    fn without_a_base_newer_values_win_and_lone_keys_are_kept() {
        let c = conflict(
            Some(doc(2, r#"{"title":"New","pages":10}"#)),
            Some(doc(1, r#"{"title":"Old","isbn":"123"}"#)),
        );
        assert_eq!(
            resolve(&c),
            Ok(Resolution::Write(doc(
                2,
                r#"{"isbn":"123","pages":10,"title":"New"}"#
            )))
        );
        assert_eq!(resolve(&c.clone().swapped()), resolve(&c));
    }

    #[test]
    fn a_base_without_content_merges_as_without_a_base() {
        let base = doc(1, r#"{"title":"Dune","pages":400,"isbn":"1"}"#);
        let es = doc(5, r#"{"title":"Dune","pages":412}"#);
        let cassandra = doc(3, r#"{"title":"Dune (2nd ed.)","isbn":"1"}"#);
        let c = testing::without_base_content(conflict_from(base, Some(es), Some(cassandra)));
        assert_eq!(
            resolve(&c),
            Ok(Resolution::Write(doc(
                5,
                r#"{"isbn":"1","pages":412,"title":"Dune"}"#
            )))
        );
        assert_eq!(resolve(&c.clone().swapped()), resolve(&c));
        assert!(essync_policy::needs_of::<FieldMerge>().base_content);
    }

    #[test]
    fn a_change_beats_a_delete() {
        let c = conflict_from(doc(1, "{}"), None, Some(doc(2, r#"{"a":1}"#)));
        assert_eq!(resolve(&c), Ok(Resolution::UseCassandra));
    }

    #[test]
    fn identical_versions_are_left_alone() {
        let c = conflict(Some(doc(2, r#"{"a":1}"#)), Some(doc(2, r#"{ "a": 1 }"#)));
        assert_eq!(resolve(&c), Ok(Resolution::Unchanged));
    }

    #[test]
    fn content_that_is_not_an_object_is_refused() {
        let c = conflict(Some(doc(2, "[1]")), Some(doc(1, "{}")));
        assert!(resolve(&c).unwrap_err().contains("not a JSON object"));
    }

    fn arb_document() -> impl Strategy<Value = essync_policy::Document> {
        let content = proptest::collection::btree_map("[abc]", 0u8..3, 0..3).prop_map(|m| {
            let fields: Vec<String> = m.iter().map(|(k, v)| format!(r#""{k}":{v}"#)).collect();
            format!("{{{}}}", fields.join(","))
        });
        (0i64..3, content).prop_map(|(t, c)| doc(t, &c))
    }

    fn arb_conflict() -> impl Strategy<Value = Conflict> {
        (
            proptest::option::of(arb_document()),
            proptest::option::of(arb_document()),
            proptest::option::of(arb_document()),
        )
            .prop_map(|(base, elasticsearch, cassandra)| Conflict {
                id: ID.to_string(),
                base_content: base.is_some(),
                base,
                elasticsearch,
                cassandra,
            })
    }

    fn apply(c: &Conflict, resolution: &Resolution) -> Conflict {
        let both = |d: Option<essync_policy::Document>| Conflict {
            elasticsearch: d.clone(),
            cassandra: d,
            ..c.clone()
        };
        match resolution {
            Resolution::Unchanged => c.clone(),
            Resolution::UseElasticsearch => both(c.elasticsearch.clone()),
            Resolution::UseCassandra => both(c.cassandra.clone()),
            Resolution::Write(d) => both(Some(d.clone())),
            Resolution::Delete => both(None),
        }
    }

    proptest! {
        #[test]
        fn merging_is_symmetric(c in arb_conflict()) {
            let swapped = resolve(&c.clone().swapped()).map(Resolution::swapped);
            prop_assert_eq!(swapped, resolve(&c));
        }

        #[test]
        fn merging_again_changes_nothing(c in arb_conflict()) {
            let resolution = resolve(&c).map_err(TestCaseError::fail)?;
            prop_assert_eq!(resolve(&apply(&c, &resolution)), Ok(Resolution::Unchanged));
        }

        #[test]
        fn a_field_only_one_side_changed_keeps_that_change(c in arb_conflict()) {
            let (Some(base), Some(es), Some(cassandra)) = (&c.base, &c.elasticsearch, &c.cassandra) else {
                return Ok(());
            };
            let merged = match resolve(&c).map_err(TestCaseError::fail)? {
                Resolution::Write(d) => d,
                Resolution::UseElasticsearch => es.clone(),
                Resolution::UseCassandra => cassandra.clone(),
                _ => return Ok(()),
            };
            let (b, e, k, m) = (
                base.content_object().unwrap(),
                es.content_object().unwrap(),
                cassandra.content_object().unwrap(),
                merged.content_object().unwrap(),
            );
            for key in ["a", "b", "c"] {
                if e.get(key) == b.get(key) && k.get(key) != b.get(key) {
                    prop_assert_eq!(m.get(key), k.get(key));
                }
                if k.get(key) == b.get(key) && e.get(key) != b.get(key) {
                    prop_assert_eq!(m.get(key), e.get(key));
                }
            }
        }
    }
}
