//! {{name}}: an essync policy.
//!
//! Documents of indices whose name starts with `scratch-` stay on their side. When both sides
//! changed a document, the newer version wins (essync's default rule).

use essync_policy::{Candidate, Conflict, Policy, Resolution, Verdict, versions};

/// The policy.
pub struct {{type}};

impl Policy for {{type}} {
    /// Whether `resolve` merges from the content of a conflict's base (`conflict.base`): essync
    /// then keeps it for every document. When false, the base comes with the content `{}`
    /// (`conflict.base_content` is false).
    const BASE_CONTENT: bool = false;

    /// Whether `filter` may answer anything but `Keep` (this one skips scratch indices). A
    /// policy that keeps every change says `false`, and essync never asks it.
    const FILTERS: bool = true;

    fn filter(candidate: Candidate) -> Result<Verdict, String> {
        let index = &candidate.document.index;
        if index.starts_with("scratch-") {
            return Ok(Verdict::Skip(format!("{index} is a scratch index")));
        }
        Ok(Verdict::Keep)
    }

    fn resolve(conflict: Conflict) -> Result<Resolution, String> {
        Ok(versions::last_write_wins(&conflict))
    }
}

essync_policy::export!({{type}});

/// Each test checks one rule of the policy and says which: when you change a rule on purpose,
/// change its test (and its case in cases.json) to match.
#[cfg(test)]
mod tests {
    use super::*;
    use essync_policy::Side;
    use essync_policy::testing::{candidate, conflict_from, doc, doc_in};

    #[test]
    fn scratch_indices_stay_on_their_side() {
        let scratch = candidate(Side::Elasticsearch, doc_in("scratch-notes", 1, "{}"));
        assert!(
            matches!({{type}}::filter(scratch), Ok(Verdict::Skip(_))),
            "the rule 'documents of scratch-* indices stay on their side' no longer holds: if \
             you changed it on purpose, change this test and its case in cases.json"
        );
        let book = candidate(Side::Cassandra, doc(1, "{}"));
        assert_eq!(
            {{type}}::filter(book),
            Ok(Verdict::Keep),
            "a document of another index no longer takes part: if the policy now skips it on \
             purpose, change this test"
        );
    }

    #[test]
    fn the_newer_version_wins() {
        let base = doc(0, r#"{"title":"Dune"}"#);
        let c = conflict_from(
            base,
            Some(doc(2, r#"{"title":"Dune","pages":412}"#)),
            Some(doc(1, r#"{"title":"Dune (2nd edition)"}"#)),
        );
        assert_eq!(
            {{type}}::resolve(c),
            Ok(Resolution::UseElasticsearch),
            "the rule 'the newer version wins a conflict' no longer holds: if you changed it on \
             purpose, change this test and its case in cases.json"
        );
    }
}
