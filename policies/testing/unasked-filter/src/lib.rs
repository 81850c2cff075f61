//! A policy that says its filter keeps every change (`FILTERS` is false) while its filter skips
//! each: essync, which trusts what a policy says it needs, must never call it, so every change
//! it syncs with this policy shows that the filter was not asked. Not an example.

use essync_policy::{Candidate, Conflict, Policy, Resolution, Verdict, versions};

/// The unasked-filter policy.
pub struct UnaskedFilter;

impl Policy for UnaskedFilter {
    const FILTERS: bool = false;

    fn filter(candidate: Candidate) -> Result<Verdict, String> {
        let _ = candidate;
        Ok(Verdict::Skip(
            "asked although the policy said its filter keeps every change".to_string(),
        ))
    }

    fn resolve(conflict: Conflict) -> Result<Resolution, String> {
        Ok(versions::last_write_wins(&conflict))
    }
}

essync_policy::export!(UnaskedFilter);
