//! Example policy: Cassandra is the source of truth.
//!
//! Every change takes part. A change made on one side only is copied by essync whatever the
//! policy says (Cassandra cannot prefer a version it does not have an opinion on). When both
//! sides changed the same document since the base, Cassandra's outcome wins, whatever the
//! timestamps:
//!
//! - both changed it: Cassandra's version, on both sides (unless both already hold the same);
//! - Cassandra deleted it while Elasticsearch changed it: it is deleted from Elasticsearch too;
//! - Elasticsearch deleted it while Cassandra changed it: Cassandra's version comes back.

use essync_policy::{Conflict, Policy, Resolution, Side, versions};

/// The prefer-cassandra policy.
pub struct PreferCassandra;

impl Policy for PreferCassandra {
    /// Every change takes part: essync need not ask.
    const FILTERS: bool = false;

    fn resolve(conflict: Conflict) -> Result<Resolution, String> {
        Ok(resolve(&conflict))
    }
}

/// Resolves one conflict: Cassandra wins.
pub fn resolve(conflict: &Conflict) -> Resolution {
    match (&conflict.elasticsearch, &conflict.cassandra) {
        (Some(es), Some(cassandra)) if versions::same(es, cassandra) => Resolution::Unchanged,
        (_, Some(_)) => Resolution::UseCassandra,
        (Some(_), None) if conflict.deleted(Side::Cassandra) => Resolution::Delete,
        (Some(_), None) => Resolution::UseElasticsearch,
        (None, None) => Resolution::Unchanged,
    }
}

essync_policy::export!(PreferCassandra);

#[cfg(test)]
mod tests {
    use super::*;
    use essync_policy::testing::{conflict, conflict_from, doc};

    #[test]
    fn cassandra_wins_even_when_older() {
        let c = conflict_from(
            doc(0, "{}"),
            Some(doc(9, r#"{"a":1}"#)),
            Some(doc(1, r#"{"a":2}"#)),
        );
        assert_eq!(resolve(&c), Resolution::UseCassandra);
    }

    #[test]
    fn a_delete_in_cassandra_wins_over_a_change_in_elasticsearch() {
        let c = conflict_from(doc(0, "{}"), Some(doc(9, r#"{"a":1}"#)), None);
        assert_eq!(resolve(&c), Resolution::Delete);
    }

    #[test]
    fn a_change_in_cassandra_wins_over_a_delete_in_elasticsearch() {
        let c = conflict_from(doc(0, "{}"), None, Some(doc(1, r#"{"a":2}"#)));
        assert_eq!(resolve(&c), Resolution::UseCassandra);
    }

    #[test]
    fn a_lone_version_without_base_is_copied_to_the_other_side() {
        assert_eq!(
            resolve(&conflict(Some(doc(1, "{}")), None)),
            Resolution::UseElasticsearch
        );
        assert_eq!(
            resolve(&conflict(None, Some(doc(1, "{}")))),
            Resolution::UseCassandra
        );
        assert_eq!(resolve(&conflict(None, None)), Resolution::Unchanged);
    }

    #[test]
    fn identical_versions_are_left_alone() {
        let c = conflict(Some(doc(3, r#"{"a": 1}"#)), Some(doc(3, r#"{"a":1}"#)));
        assert_eq!(resolve(&c), Resolution::Unchanged);
    }
}
