//! Example policy: Cassandra is the source of truth.
//!
//! Every document takes part. When both sides hold a version of an id, the Cassandra version
//! wins, whatever the timestamps (unless both versions are already the same, then nothing
//! changes); when only one side holds the id, that version is copied to the other side.

use std::cmp::Ordering;

use essync_policy::{Conflict, Policy, Resolution, versions};

/// The prefer-cassandra policy.
pub struct PreferCassandra;

impl Policy for PreferCassandra {
    fn resolve(conflict: Conflict) -> Result<Resolution, String> {
        Ok(resolve(&conflict))
    }
}

/// Resolves one conflict: Cassandra wins.
pub fn resolve(conflict: &Conflict) -> Resolution {
    match (&conflict.elasticsearch, &conflict.cassandra) {
        (Some(es), Some(cassandra)) if versions::compare(es, cassandra) == Ordering::Equal => {
            Resolution::Unchanged
        }
        (_, Some(_)) => Resolution::UseCassandra,
        (Some(_), None) => Resolution::UseElasticsearch,
        (None, None) => Resolution::Unchanged,
    }
}

essync_policy::export!(PreferCassandra);

#[cfg(test)]
mod tests {
    use super::*;
    use essync_policy::testing::{conflict, doc};

    #[test]
    fn cassandra_wins_even_when_older() {
        let c = conflict(Some(doc(9, r#"{"a":1}"#)), Some(doc(1, r#"{"a":2}"#)));
        assert_eq!(resolve(&c), Resolution::UseCassandra);
    }

    #[test]
    fn a_lone_version_is_copied_to_the_other_side() {
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
