//! Example policy: merges the two versions of a document field by field.
//!
//! Every document takes part. When both sides hold a version of an id, the result keeps the
//! newest value of every top-level field of the content:
//!
//! - the newer version is the greater by [`essync_policy::versions::compare`] (later
//!   timestamp; ties broken as last write wins does);
//! - a top-level key present in both versions takes the newer version's value; a key present
//!   in only one version is kept;
//! - the merged document has the newer version's index, type and timestamp (the later of the
//!   two), and is written to both sides. When the merge is just the newer version, that side's
//!   version is used; when both versions are the same, nothing changes.
//!
//! When only one side holds the id, that version is copied to the other side. A version whose
//! content is not a JSON object is refused with the reason (essync reports it and leaves both
//! sides alone).
//!
//! Two versions only tell which whole version is newer, not when each field changed: a key
//! removed on one side comes back from the other side's version.

use std::cmp::Ordering;

use essync_policy::{Conflict, Document, Policy, Resolution, Side, json, versions};

/// The field-merge policy.
pub struct FieldMerge;

impl Policy for FieldMerge {
    fn resolve(conflict: Conflict) -> Result<Resolution, String> {
        resolve(&conflict)
    }
}

/// Resolves one conflict by merging top-level fields.
pub fn resolve(conflict: &Conflict) -> Result<Resolution, String> {
    let (Some(es), Some(cassandra)) = (&conflict.elasticsearch, &conflict.cassandra) else {
        return Ok(versions::last_write_wins(conflict));
    };
    let (newer, older, newer_side) = match versions::compare(es, cassandra) {
        Ordering::Equal => return Ok(Resolution::Unchanged),
        Ordering::Greater => (es, cassandra, Side::Elasticsearch),
        Ordering::Less => (cassandra, es, Side::Cassandra),
    };
    let merged = merge(newer, older)?;
    if merged.content == json::canonical(&newer.content) {
        Ok(Resolution::use_side(newer_side))
    } else {
        Ok(Resolution::Write(merged))
    }
}

/// The newer version with the top-level keys only the older version has added to its content.
fn merge(newer: &Document, older: &Document) -> Result<Document, String> {
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
    use essync_policy::testing::{conflict, doc};
    use proptest::prelude::*;

    #[test]
    fn newer_values_win_and_lone_keys_are_kept() {
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
    fn a_merge_that_is_the_newer_version_uses_that_side() {
        let c = conflict(
            Some(doc(1, r#"{"title":"Old"}"#)),
            Some(doc(2, r#"{"title":"New","pages":1}"#)),
        );
        assert_eq!(resolve(&c), Ok(Resolution::UseCassandra));
    }

    #[test]
    fn identical_versions_are_left_alone() {
        let c = conflict(Some(doc(2, r#"{"a":1}"#)), Some(doc(2, r#"{ "a": 1 }"#)));
        assert_eq!(resolve(&c), Ok(Resolution::Unchanged));
    }

    #[test]
    fn a_lone_version_is_copied() {
        let c = conflict(None, Some(doc(2, "{}")));
        assert_eq!(resolve(&c), Ok(Resolution::UseCassandra));
    }

    #[test]
    fn content_that_is_not_an_object_is_refused() {
        let c = conflict(Some(doc(2, "[1]")), Some(doc(1, "{}")));
        assert!(resolve(&c).unwrap_err().contains("not a JSON object"));
    }

    fn arb_conflict() -> impl Strategy<Value = Conflict> {
        let content = proptest::collection::btree_map("[abc]", 0u8..3, 0..3).prop_map(|m| {
            let fields: Vec<String> = m.iter().map(|(k, v)| format!(r#""{k}":{v}"#)).collect();
            format!("{{{}}}", fields.join(","))
        });
        let document = (0i64..3, content).prop_map(|(t, c)| doc(t, &c));
        (
            proptest::option::of(document.clone()),
            proptest::option::of(document),
        )
            .prop_map(|(es, cassandra)| conflict(es, cassandra))
    }

    fn apply(c: &Conflict, resolution: &Resolution) -> Conflict {
        let both = |d: Option<Document>| conflict(d.clone(), d);
        match resolution {
            Resolution::Unchanged => c.clone(),
            Resolution::UseElasticsearch => both(c.elasticsearch.clone()),
            Resolution::UseCassandra => both(c.cassandra.clone()),
            Resolution::Write(d) => both(Some(d.clone())),
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
    }
}
