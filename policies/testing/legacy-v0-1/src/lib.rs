//! A policy component of the previous interface, `essync:policy@0.1.0`, built straight from
//! `wit/0.1.0` with no SDK: what a user's compiled policy of that version looks like. It tests
//! that essync keeps running such components (they see no base and no deletes). Not an example.
//!
//! - filter: documents of the index `legacy-private` stay on their side; the others take part;
//! - resolve: the Elasticsearch version wins whenever it is present.

wit_bindgen::generate!({
    path: "../../../wit/0.1.0",
    world: "essync:policy/policy@0.1.0",
    additional_derives: [PartialEq],
});

use essync::policy::types::{Candidate, Conflict, Resolution, Verdict};

/// The legacy policy.
pub struct Legacy;

impl exports::essync::policy::filter::Guest for Legacy {
    fn filter(batch: Vec<Candidate>) -> Vec<Result<Verdict, String>> {
        batch
            .into_iter()
            .map(|candidate| {
                Ok(if candidate.document.index == "legacy-private" {
                    Verdict::Skip("legacy-private stays on its side".to_string())
                } else {
                    Verdict::Keep
                })
            })
            .collect()
    }
}

impl exports::essync::policy::resolver::Guest for Legacy {
    fn resolve(batch: Vec<Conflict>) -> Vec<Result<Resolution, String>> {
        batch
            .into_iter()
            .map(|conflict| {
                Ok(match (&conflict.elasticsearch, &conflict.cassandra) {
                    (Some(es), Some(cassandra)) if es == cassandra => Resolution::Unchanged,
                    (Some(_), _) => Resolution::UseElasticsearch,
                    (None, Some(_)) => Resolution::UseCassandra,
                    (None, None) => Resolution::Unchanged,
                })
            })
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
export!(Legacy);
