//! essync's default policy: the newer version wins.
//!
//! Built for `wasm32-wasip2` and embedded in the essync binary; `--policy` replaces it.
//!
//! # Filtering
//!
//! Every document takes part, unchanged.
//!
//! # Resolution: last write wins
//!
//! Given the Elasticsearch version and the Cassandra version of one id:
//!
//! 1. a present version beats an absent one (the id is copied to the side that lacks it);
//! 2. the version with the later timestamp (UTC milliseconds) wins;
//! 3. when the timestamps are equal, the versions are compared field by field and the greater
//!    wins: first the content, as canonical JSON text (keys sorted, no whitespace, numbers in
//!    one spelling) compared byte by byte; then the index; then the document type;
//! 4. when all of these are equal, both sides already hold the same document: `unchanged`.
//!
//! The tie-break depends on the two versions only, never on the side they were read from or
//! on the order of rounds, so both sides converge: whichever side resolves the conflict first,
//! the same version wins, and once both sides hold it, resolving again answers `unchanged`.
//! The rule is total (any input gets an answer; content that is not JSON is compared as raw
//! text), symmetric (swapping the sides swaps the answer) and idempotent. The order itself is
//! [`essync_policy::versions::compare`], shared with other policies that fall back to it.

use essync_policy::{Conflict, Policy, Resolution, versions};

/// The last-write-wins policy.
pub struct LastWriteWins;

impl Policy for LastWriteWins {
    fn resolve(conflict: Conflict) -> Result<Resolution, String> {
        Ok(resolve(&conflict))
    }
}

/// Resolves one conflict by the rule above.
pub fn resolve(conflict: &Conflict) -> Resolution {
    versions::last_write_wins(conflict)
}

essync_policy::export!(LastWriteWins);

#[cfg(test)]
mod tests {
    use super::*;
    use essync_policy::testing::{ID, conflict, doc};
    use essync_policy::{Candidate, Document, Side, Verdict};
    use proptest::prelude::*;

    /// What both sides hold after a resolution is applied.
    fn apply(c: &Conflict, resolution: &Resolution) -> Conflict {
        let both = |d: Option<Document>| conflict(d.clone(), d);
        match resolution {
            Resolution::Unchanged => c.clone(),
            Resolution::UseElasticsearch => both(c.elasticsearch.clone()),
            Resolution::UseCassandra => both(c.cassandra.clone()),
            Resolution::Write(d) => both(Some(d.clone())),
        }
    }

    #[test]
    fn the_newer_timestamp_wins() {
        let c = conflict(Some(doc(2, "{}")), Some(doc(1, "{}")));
        assert_eq!(resolve(&c), Resolution::UseElasticsearch);
        assert_eq!(resolve(&c.swapped()), Resolution::UseCassandra);
    }

    #[test]
    fn a_present_version_beats_an_absent_one() {
        assert_eq!(
            resolve(&conflict(None, Some(doc(1, "{}")))),
            Resolution::UseCassandra
        );
        assert_eq!(
            resolve(&conflict(Some(doc(1, "{}")), None)),
            Resolution::UseElasticsearch
        );
        assert_eq!(resolve(&conflict(None, None)), Resolution::Unchanged);
    }

    #[test]
    fn equal_timestamps_go_to_the_greater_canonical_content() {
        let c = conflict(Some(doc(5, r#"{"n": 1}"#)), Some(doc(5, r#"{"n":2}"#)));
        assert_eq!(resolve(&c), Resolution::UseCassandra);
        assert_eq!(resolve(&c.swapped()), Resolution::UseElasticsearch);
    }

    #[test]
    fn the_same_object_spelled_differently_is_unchanged() {
        let c = conflict(
            Some(doc(5, r#"{"a": 1, "b": [true]}"#)),
            Some(doc(5, r#"{"b":[true],"a":1.0}"#)),
        );
        assert_eq!(resolve(&c), Resolution::Unchanged);
    }

    #[test]
    fn equal_content_falls_back_to_index_then_type() {
        let mut es = doc(5, "{}");
        es.index = "a".to_string();
        let c = conflict(Some(es.clone()), Some(doc(5, "{}")));
        assert_eq!(resolve(&c), Resolution::UseCassandra);
        es.index = "books".to_string();
        es.doc_type = "zine".to_string();
        let c = conflict(Some(es), Some(doc(5, "{}")));
        assert_eq!(resolve(&c), Resolution::UseElasticsearch);
    }

    #[test]
    fn every_document_is_kept() {
        let candidate = Candidate {
            side: Side::Cassandra,
            document: doc(1, "{}"),
        };
        assert_eq!(LastWriteWins::filter(candidate), Ok(Verdict::Keep));
    }

    fn arb_document() -> impl Strategy<Value = Document> {
        (
            prop_oneof![Just("books"), Just("films")],
            prop_oneof![Just("book"), Just("_doc")],
            0i64..4,
            prop_oneof![
                Just("{}".to_string()),
                Just("not json".to_string()),
                (0u8..3, 0u8..3).prop_map(|(a, b)| format!(r#"{{"a":{a},"b":{b}}}"#)),
                (0u8..3, 0u8..3).prop_map(|(a, b)| format!(r#"{{ "b": {b}, "a": {a}.0 }}"#)),
            ],
        )
            .prop_map(|(index, doc_type, timestamp, content)| Document {
                id: ID.to_string(),
                index: index.to_string(),
                doc_type: doc_type.to_string(),
                timestamp,
                content,
            })
    }

    fn arb_conflict() -> impl Strategy<Value = Conflict> {
        (
            proptest::option::of(arb_document()),
            proptest::option::of(arb_document()),
        )
            .prop_map(|(es, cassandra)| conflict(es, cassandra))
    }

    proptest! {
        #[test]
        fn resolution_is_symmetric(c in arb_conflict()) {
            prop_assert_eq!(resolve(&c.clone().swapped()), resolve(&c).swapped());
        }

        #[test]
        fn resolving_again_after_applying_changes_nothing(c in arb_conflict()) {
            let after = apply(&c, &resolve(&c));
            prop_assert_eq!(resolve(&after), Resolution::Unchanged);
        }

        #[test]
        fn resolution_is_total_and_picks_a_present_version(c in arb_conflict()) {
            let answer = LastWriteWins::resolve(c.clone());
            match answer {
                Ok(Resolution::UseElasticsearch) => prop_assert!(c.elasticsearch.is_some()),
                Ok(Resolution::UseCassandra) => prop_assert!(c.cassandra.is_some()),
                Ok(Resolution::Unchanged) => {}
                other => prop_assert!(false, "unexpected answer {:?}", other),
            }
        }

        #[test]
        fn the_winner_is_never_older(c in arb_conflict()) {
            if let (Some(es), Some(cassandra)) = (&c.elasticsearch, &c.cassandra) {
                match resolve(&c) {
                    Resolution::UseElasticsearch => prop_assert!(es.timestamp >= cassandra.timestamp),
                    Resolution::UseCassandra => prop_assert!(cassandra.timestamp >= es.timestamp),
                    _ => prop_assert_eq!(es.timestamp, cassandra.timestamp),
                }
            }
        }
    }
}
