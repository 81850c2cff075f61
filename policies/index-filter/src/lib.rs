//! Example policy: documents of some indices stay on their side.
//!
//! A document takes part in the sync unless its index is private: an index whose name starts
//! with [`PRIVATE_PREFIX`] (`private-`) or is one of [`PRIVATE_INDICES`]. A private document is
//! skipped, and a skip leaves its id alone on both sides: it is neither copied nor overwritten.
//! Conflicts between the other documents are resolved by last write wins
//! ([`essync_policy::versions::last_write_wins`]).
//!
//! To keep other indices private, edit the two constants and rebuild the component.

use essync_policy::{Candidate, Conflict, Policy, Resolution, Verdict, versions};

/// Indices whose name starts with this prefix stay on their side.
pub const PRIVATE_PREFIX: &str = "private-";

/// Indices that stay on their side, by exact name.
pub const PRIVATE_INDICES: &[&str] = &["audit", "sessions"];

/// The index-filter policy.
pub struct IndexFilter;

/// Whether documents of this index stay on their side.
pub fn is_private(index: &str) -> bool {
    index.starts_with(PRIVATE_PREFIX) || PRIVATE_INDICES.contains(&index)
}

impl Policy for IndexFilter {
    fn filter(candidate: Candidate) -> Result<Verdict, String> {
        let index = &candidate.document.index;
        if is_private(index) {
            Ok(Verdict::Skip(format!("index {index} is private")))
        } else {
            Ok(Verdict::Keep)
        }
    }

    fn resolve(conflict: Conflict) -> Result<Resolution, String> {
        Ok(versions::last_write_wins(&conflict))
    }
}

essync_policy::export!(IndexFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use essync_policy::{Side, testing};

    fn candidate(index: &str) -> Candidate {
        testing::candidate(Side::Elasticsearch, testing::doc_in(index, 1, "{}"))
    }

    #[test]
    fn private_indices_stay_on_their_side() {
        for index in ["private-hr", "audit", "sessions"] {
            assert_eq!(
                IndexFilter::filter(candidate(index)),
                Ok(Verdict::Skip(format!("index {index} is private")))
            );
        }
    }

    #[test]
    fn other_indices_take_part() {
        for index in ["books", "privateer", "audits", "public-private-"] {
            assert_eq!(IndexFilter::filter(candidate(index)), Ok(Verdict::Keep));
        }
    }
}
