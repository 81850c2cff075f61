//! A policy component of the previous interface, `essync:policy@0.2.0`, built straight from
//! `wit/0.2.0` with no SDK: what a user's compiled policy of that version looks like. It tests
//! that essync keeps running such components, and keeps the base's content for them (they
//! export no `about`, and may merge from the base). Not an example.
//!
//! - filter: every change takes part;
//! - resolve: both sides get the base back, as it is (so a test sees the base it was given);
//!   without a base, the Elasticsearch version wins whenever it is present.

wit_bindgen::generate!({
    path: "../../../wit/0.2.0",
    world: "essync:policy/policy@0.2.0",
    additional_derives: [PartialEq],
});

use essync::policy::types::{Candidate, Conflict, Resolution, Verdict};

/// The legacy policy.
pub struct Legacy;

impl exports::essync::policy::filter::Guest for Legacy {
    fn filter(batch: Vec<Candidate>) -> Vec<Result<Verdict, String>> {
        batch.into_iter().map(|_| Ok(Verdict::Keep)).collect()
    }
}

impl exports::essync::policy::resolver::Guest for Legacy {
    fn resolve(batch: Vec<Conflict>) -> Vec<Result<Resolution, String>> {
        batch
            .into_iter()
            .map(|conflict| {
                Ok(match (conflict.base, &conflict.elasticsearch) {
                    (Some(base), _) => Resolution::Write(base),
                    (None, Some(_)) => Resolution::UseElasticsearch,
                    (None, None) => Resolution::UseCassandra,
                })
            })
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
export!(Legacy);
