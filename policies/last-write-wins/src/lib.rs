//! essync's default policy: the change wins; when both sides changed, the later one wins.
//!
//! Built for `wasm32-wasip2` and embedded in the essync binary; `--policy` replaces it.
//!
//! # Filtering
//!
//! Every change takes part, unchanged. The policy says so ([`Policy::FILTERS`] is false), and
//! essync does not call its filter.
//!
//! # Resolution
//!
//! essync itself takes a change made on one side only (an update, a creation or a delete), so
//! this policy sees only conflicts: both sides changed an id since the version they last shared
//! (the base), both created it with different content, or one deleted it while the other
//! changed it.
//!
//! 1. **Delete against change:** the change wins, and the side that deleted the document gets
//!    it back. A delete erases data for good, while a restored document can be deleted again:
//!    in doubt, essync keeps what an application wrote.
//! 2. **Both changed:** the version with the later timestamp (UTC milliseconds) wins. A change
//!    that kept the base's timestamp (an Elasticsearch partial update, a Cassandra update of
//!    the content alone) counts from when it was made, as essync observed it.
//! 3. **Both created (no base):** as 2, except that a version whose writer stamped it beats a
//!    version essync had to stamp (an Elasticsearch document without essync's metadata, a
//!    Cassandra row without a timestamp): on first contact such a time only says when essync
//!    looked, not when the data was written.
//! 4. When the timestamps are equal, the versions are compared field by field and the greater
//!    wins: first the content, as canonical JSON text (keys sorted, no whitespace, numbers in
//!    one spelling) compared byte by byte; then the index; then the document type.
//! 5. When all of these are equal, both sides already hold the same document: `unchanged`.
//!
//! The rule depends on the versions only, never on the side they were read from or on the
//! order of rounds, so both sides converge: whichever side resolves the conflict first, the
//! same version wins. The rule is total (any input gets an answer; content that is not JSON is
//! compared as raw text) and symmetric (swapping the sides swaps the answer). The order itself
//! is [`essync_policy::versions::compare_in`], shared with other policies that fall back to it.

use essync_policy::{Conflict, Policy, Resolution, versions};

/// The default policy.
pub struct LastWriteWins;

impl Policy for LastWriteWins {
    /// Every change takes part: essync need not ask.
    const FILTERS: bool = false;

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
    use essync_policy::testing::{ID, conflict, conflict_from, doc, observed};
    use essync_policy::{Candidate, Document, Side, Stamp, Verdict, testing};
    use proptest::prelude::*;

    /// What both sides hold after a resolution is applied.
    fn apply(c: &Conflict, resolution: &Resolution) -> Conflict {
        let both = |d: Option<Document>| Conflict {
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

    #[test]
    fn the_newer_timestamp_wins() {
        let c = conflict_from(doc(0, "{}"), Some(doc(2, "{}")), Some(doc(1, "{}")));
        assert_eq!(resolve(&c), Resolution::UseElasticsearch);
        assert_eq!(resolve(&c.swapped()), Resolution::UseCassandra);
    }

    #[test]
    fn a_change_beats_a_delete_on_either_side() {
        let base = doc(1, r#"{"v":1}"#);
        let changed = doc(0, r#"{"v":2}"#);
        let c = conflict_from(base.clone(), None, Some(changed.clone()));
        assert_eq!(resolve(&c), Resolution::UseCassandra);
        let c = conflict_from(base, Some(changed), None);
        assert_eq!(resolve(&c), Resolution::UseElasticsearch);
    }

    #[test]
    fn on_first_contact_a_stamped_version_beats_an_observed_one() {
        let c = conflict(
            Some(observed(doc(9, r#"{"v":"old data, seen now"}"#))),
            Some(doc(5, r#"{"v":"stamped"}"#)),
        );
        assert_eq!(resolve(&c), Resolution::UseCassandra);
        let both_observed = conflict(
            Some(observed(doc(9, r#"{"v":"a"}"#))),
            Some(observed(doc(5, r#"{"v":"b"}"#))),
        );
        assert_eq!(resolve(&both_observed), Resolution::UseElasticsearch);
    }

    #[test]
    fn a_change_that_kept_its_stamp_counts_from_when_it_was_observed() {
        let base = doc(5, r#"{"v":9}"#);
        let partial_update = observed(doc(50, r#"{"v":1}"#));
        let c = conflict_from(base, Some(partial_update), Some(doc(20, r#"{"v":7}"#)));
        assert_eq!(resolve(&c), Resolution::UseElasticsearch);
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
    fn every_change_is_kept() {
        let candidate = Candidate {
            side: Side::Cassandra,
            document: doc(1, "{}"),
            deleted: false,
        };
        assert_eq!(LastWriteWins::filter(candidate), Ok(Verdict::Keep));
        let deletion = testing::deletion(Side::Elasticsearch, doc(1, "{}"));
        assert_eq!(LastWriteWins::filter(deletion), Ok(Verdict::Keep));
    }

    fn arb_document() -> impl Strategy<Value = Document> {
        (
            prop_oneof![Just("books"), Just("films")],
            prop_oneof![Just("book"), Just("_doc")],
            0i64..4,
            prop_oneof![Just(Stamp::Written), Just(Stamp::Observed)],
            prop_oneof![
                Just("{}".to_string()),
                Just("not json".to_string()),
                (0u8..3, 0u8..3).prop_map(|(a, b)| format!(r#"{{"a":{a},"b":{b}}}"#)),
                (0u8..3, 0u8..3).prop_map(|(a, b)| format!(r#"{{ "b": {b}, "a": {a}.0 }}"#)),
            ],
        )
            .prop_map(|(index, doc_type, timestamp, stamp, content)| Document {
                id: ID.to_string(),
                index: index.to_string(),
                doc_type: doc_type.to_string(),
                timestamp,
                stamp,
                content,
            })
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
        fn a_change_is_never_lost_to_a_delete(c in arb_conflict()) {
            match resolve(&c) {
                Resolution::Delete => prop_assert!(false, "the default policy never deletes"),
                Resolution::Unchanged => prop_assert_eq!(
                    c.elasticsearch.is_some(), c.cassandra.is_some()
                ),
                _ => {}
            }
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
        fn with_a_base_the_winner_is_never_older(c in arb_conflict()) {
            if let (Some(_), Some(es), Some(cassandra)) = (&c.base, &c.elasticsearch, &c.cassandra) {
                match resolve(&c) {
                    Resolution::UseElasticsearch => prop_assert!(es.timestamp >= cassandra.timestamp),
                    Resolution::UseCassandra => prop_assert!(cassandra.timestamp >= es.timestamp),
                    _ => prop_assert_eq!(es.timestamp, cassandra.timestamp),
                }
            }
        }
    }
}
