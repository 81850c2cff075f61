//! What to do with one id, given its version on each side and the policy's answers: pure
//! functions, tested without stores or a policy.

use uuid::Uuid;

use crate::Document;
use crate::cassandra::CassandraVersion;
use crate::elasticsearch::{EsVersion, IndexSelection};
use crate::policy::{PolicyError, Resolution, Verdict};
use crate::store::Stored;

/// One id and its version on each side, as read this round.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    pub id: Uuid,
    pub elasticsearch: Option<Stored<EsVersion>>,
    pub cassandra: Option<Stored<CassandraVersion>>,
}

/// The first look at a pair, before the policy is asked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Triage {
    /// Both sides hold the same document, with essync's metadata: nothing to do.
    InSync,
    /// Neither side holds the id (it was deleted since it was recorded).
    Gone,
    /// A version lives in an index outside the synced ones: left alone.
    OutOfScope(String),
    /// The policy decides.
    Decide,
}

pub(crate) fn triage(pair: &Pair, selection: &IndexSelection) -> Triage {
    for stored in [
        pair.elasticsearch.as_ref().map(|s| &s.document),
        pair.cassandra.as_ref().map(|s| &s.document),
    ]
    .into_iter()
    .flatten()
    {
        if !selection.contains(&stored.index) {
            return Triage::OutOfScope(format!(
                "index '{}' is not among the synced indices ({selection})",
                stored.index
            ));
        }
    }
    match (&pair.elasticsearch, &pair.cassandra) {
        (None, None) => Triage::Gone,
        (Some(e), Some(c)) if e.stamped && c.stamped && e.document == c.document => Triage::InSync,
        _ => Triage::Decide,
    }
}

/// The pair after the filter.
#[derive(Debug, PartialEq)]
// Short-lived, one per id in a batch: boxing the documents would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Filtered {
    /// The policy keeps the id out of the sync: both sides stay as they are.
    Skip(String),
    /// The policy could not decide; retried later.
    Failed(String),
    /// The versions that take part (transformed where the policy said so).
    Take {
        elasticsearch: Option<Document>,
        cassandra: Option<Document>,
    },
}

/// Applies the filter's verdicts on each side's version (`None` where the side has none).
pub(crate) fn apply_verdicts(
    pair: &Pair,
    elasticsearch: Option<Result<Verdict, PolicyError>>,
    cassandra: Option<Result<Verdict, PolicyError>>,
) -> Filtered {
    let mut taken = [None, None];
    let sides = [
        (
            "elasticsearch",
            pair.elasticsearch.as_ref().map(|s| &s.document),
            elasticsearch,
        ),
        (
            "cassandra",
            pair.cassandra.as_ref().map(|s| &s.document),
            cassandra,
        ),
    ];
    for (n, (side, document, verdict)) in sides.into_iter().enumerate() {
        let (Some(document), Some(verdict)) = (document, verdict) else {
            continue;
        };
        match verdict {
            Err(e) => return Filtered::Failed(format!("policy filter on the {side} version: {e}")),
            Ok(Verdict::Skip { reason }) => {
                return Filtered::Skip(format!("{side} version skipped: {reason}"));
            }
            Ok(Verdict::Keep) => taken[n] = Some(document.clone()),
            Ok(Verdict::Transform(transformed)) => {
                if transformed.id != pair.id {
                    return Filtered::Failed(format!(
                        "policy filter transformed the {side} version into another id ({})",
                        transformed.id
                    ));
                }
                taken[n] = Some(transformed);
            }
        }
    }
    let [elasticsearch, cassandra] = taken;
    Filtered::Take {
        elasticsearch,
        cassandra,
    }
}

/// What the sync writes for one id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    /// What both sides should hold; `None` leaves both as they are.
    pub target: Option<Document>,
    /// Whether Elasticsearch needs the target written.
    pub write_elasticsearch: bool,
    /// Whether Cassandra needs the target written.
    pub write_cassandra: bool,
    /// Which version won, for logs.
    pub winner: &'static str,
}

/// Turns the policy's resolution into writes: the target goes to each side that does not hold
/// exactly it (with essync's metadata).
pub(crate) fn decide(
    pair: &Pair,
    elasticsearch: Option<Document>,
    cassandra: Option<Document>,
    resolution: Resolution,
) -> Result<Decision, String> {
    let (target, winner) = match resolution {
        Resolution::Unchanged => {
            return Ok(Decision {
                target: None,
                write_elasticsearch: false,
                write_cassandra: false,
                winner: "unchanged",
            });
        }
        Resolution::UseElasticsearch => (
            elasticsearch
                .ok_or("the policy chose the Elasticsearch version, which does not exist")?,
            "elasticsearch",
        ),
        Resolution::UseCassandra => (
            cassandra.ok_or("the policy chose the Cassandra version, which does not exist")?,
            "cassandra",
        ),
        Resolution::Write(document) => (document, "merged"),
        Resolution::Delete => return Err("deletes are not applied yet".to_string()),
    };
    if target.id != pair.id {
        return Err(format!(
            "the policy's document has another id ({}) than the conflict's",
            target.id
        ));
    }
    if target.timestamp.is_none() {
        return Err("the policy's document has no timestamp".to_string());
    }
    let holds = |stored: Option<(&Document, bool)>| {
        stored.is_some_and(|(document, stamped)| stamped && *document == target)
    };
    let write_elasticsearch = !holds(
        pair.elasticsearch
            .as_ref()
            .map(|s| (&s.document, s.stamped)),
    );
    let write_cassandra = !holds(pair.cassandra.as_ref().map(|s| (&s.document, s.stamped)));
    Ok(Decision {
        target: Some(target),
        write_elasticsearch,
        write_cassandra,
        winner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use serde_json::json;

    fn doc(id: Uuid, millis: i64, content: serde_json::Value) -> Document {
        Document::with_id(id, "books", "book", content)
            .at(DateTime::from_timestamp_millis(millis).unwrap())
    }

    fn es(document: Document, stamped: bool) -> Stored<EsVersion> {
        Stored {
            version: EsVersion {
                index: document.index.clone(),
                seq_no: 1,
                primary_term: 1,
            },
            document,
            stamped,
        }
    }

    fn cassandra(document: Document, stamped: bool) -> Stored<CassandraVersion> {
        Stored {
            version: CassandraVersion {
                index: Some(document.index.clone()),
                doc_type: Some(document.doc_type.clone()),
                timestamp: document.timestamp_millis(),
                content: Some(document.content.to_string()),
                written_at: None,
            },
            document,
            stamped,
        }
    }

    #[test]
    fn equal_stamped_versions_are_in_sync_and_unstamped_ones_are_not() {
        let id = Uuid::new_v4();
        let d = doc(id, 5, json!({"a": 1}));
        let all = IndexSelection::default();
        let pair = Pair {
            id,
            elasticsearch: Some(es(d.clone(), true)),
            cassandra: Some(cassandra(d.clone(), true)),
        };
        assert_eq!(triage(&pair, &all), Triage::InSync);
        let pair = Pair {
            id,
            elasticsearch: Some(es(d.clone(), false)),
            cassandra: Some(cassandra(d.clone(), true)),
        };
        assert_eq!(triage(&pair, &all), Triage::Decide);
        let pair = Pair {
            id,
            elasticsearch: None,
            cassandra: None,
        };
        assert_eq!(triage(&pair, &all), Triage::Gone);
        let only = IndexSelection::new(["movies"]).unwrap();
        let pair = Pair {
            id,
            elasticsearch: None,
            cassandra: Some(cassandra(d, true)),
        };
        assert!(matches!(triage(&pair, &only), Triage::OutOfScope(_)));
    }

    #[test]
    fn the_winner_is_written_where_it_is_missing() {
        let id = Uuid::new_v4();
        let newer = doc(id, 9, json!({"v": 2}));
        let older = doc(id, 5, json!({"v": 1}));
        let pair = Pair {
            id,
            elasticsearch: Some(es(newer.clone(), true)),
            cassandra: Some(cassandra(older.clone(), true)),
        };
        let decision = decide(
            &pair,
            Some(newer.clone()),
            Some(older),
            Resolution::UseElasticsearch,
        )
        .unwrap();
        assert_eq!(decision.target, Some(newer.clone()));
        assert!(!decision.write_elasticsearch);
        assert!(decision.write_cassandra);
        // An unstamped version is rewritten even when equal, so its metadata lands.
        let pair = Pair {
            id,
            elasticsearch: Some(es(newer.clone(), false)),
            cassandra: None,
        };
        let decision = decide(
            &pair,
            Some(newer.clone()),
            None,
            Resolution::UseElasticsearch,
        )
        .unwrap();
        assert!(decision.write_elasticsearch && decision.write_cassandra);
    }

    #[test]
    fn resolutions_that_cannot_be_applied_are_errors() {
        let id = Uuid::new_v4();
        let d = doc(id, 1, json!({}));
        let pair = Pair {
            id,
            elasticsearch: None,
            cassandra: Some(cassandra(d.clone(), true)),
        };
        assert!(decide(&pair, None, Some(d.clone()), Resolution::UseElasticsearch).is_err());
        let other = doc(Uuid::new_v4(), 1, json!({}));
        assert!(
            decide(&pair, None, Some(d.clone()), Resolution::Write(other))
                .unwrap_err()
                .contains("another id")
        );
        let unchanged = decide(&pair, None, Some(d), Resolution::Unchanged).unwrap();
        assert_eq!(unchanged.target, None);
    }

    #[test]
    fn a_skip_on_either_side_leaves_the_id_alone() {
        let id = Uuid::new_v4();
        let d = doc(id, 1, json!({}));
        let pair = Pair {
            id,
            elasticsearch: Some(es(d.clone(), true)),
            cassandra: Some(cassandra(d.clone(), true)),
        };
        let skipped = apply_verdicts(
            &pair,
            Some(Ok(Verdict::Keep)),
            Some(Ok(Verdict::Skip {
                reason: "private".into(),
            })),
        );
        assert!(matches!(skipped, Filtered::Skip(reason) if reason.contains("private")));
        let mut changed = d.clone();
        changed.content = json!({"t": 1});
        let taken = apply_verdicts(
            &pair,
            Some(Ok(Verdict::Transform(changed.clone()))),
            Some(Ok(Verdict::Keep)),
        );
        assert_eq!(
            taken,
            Filtered::Take {
                elasticsearch: Some(changed),
                cassandra: Some(d)
            }
        );
    }
}
