//! Settling: what a batch's writes did becomes the round's counts, what it keeps track of in
//! Elasticsearch, the failures to try again, and the ledger's records. Pure, tested without
//! stores; the state writes it all at once ([`crate::sync::state::State::settle`]).

use std::collections::BTreeMap;

use super::apply::{EsWrite, Written};
use super::plan::{CassandraOp, EsOp, LedgerOp};
use crate::store::{Side, WriteOutcome};
use crate::sync::report::RoundReport;
use crate::sync::state::{Failure, Record, Settlement};

/// What a batch changed that the round keeps track of.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    /// Documents essync deleted from Elasticsearch, by index (its delete counters move).
    pub elasticsearch_deletes: BTreeMap<String, i64>,
    /// Operations Elasticsearch confirmed applying, each with a sequence number of its own, by
    /// the index that holds them (see [`crate::elasticsearch::feed`]'s own operations).
    pub elasticsearch_operations: BTreeMap<String, i64>,
}

/// Settles what each plan's writes did. An id whose writes all applied gets its ledger change
/// and is in sync; one whose write did not apply is recorded for another attempt, its intent
/// left in place: where one side's write applied and the other's did not (an application
/// changed or deleted it meanwhile), it tells essync's version from the application's change,
/// which must win. A dry run counts the writes it would have made.
pub(crate) fn settle(
    written: Vec<Written>,
    dry_run: bool,
    report: &mut RoundReport,
    settlement: &mut Settlement,
) -> Effects {
    let mut effects = Effects::default();
    for w in written {
        if dry_run {
            count_planned(&w, report);
            continue;
        }
        let es = count_elasticsearch(&w, report, &mut effects);
        let cassandra = w.cassandra.as_ref().map(|applied| {
            match applied.outcome {
                WriteOutcome::Deleted => report.cassandra.deleted += 1,
                ref outcome if outcome.is_written() => report.cassandra.written += 1,
                _ => {}
            }
            &applied.outcome
        });
        let failures: Vec<(Side, &WriteOutcome)> =
            [(Side::Elasticsearch, es), (Side::Cassandra, cassandra)]
                .into_iter()
                .filter_map(|(side, outcome)| {
                    Some((side, outcome?)).filter(|(_, o)| !o.is_written())
                })
                .collect();
        let id = w.plan.id;
        if !failures.is_empty() {
            for (side, outcome) in failures {
                fail(report, settlement, id, side, outcome);
            }
            continue;
        }
        ledger(w, settlement);
        settlement.resolved.push(id);
    }
    effects
}

/// Counts an applied Elasticsearch write and what it changes in the index's counters; returns
/// its outcome.
fn count_elasticsearch<'w>(
    w: &'w Written,
    report: &mut RoundReport,
    effects: &mut Effects,
) -> Option<&'w WriteOutcome> {
    let (write, applied) = w.elasticsearch.as_ref()?;
    if !applied.outcome.is_written() {
        return Some(&applied.outcome);
    }
    let count = |map: &mut BTreeMap<String, i64>, index: &str| {
        *map.entry(index.to_string()).or_default() += 1;
    };
    match write {
        EsWrite::Put { moved_from } => {
            report.elasticsearch.written += 1;
            // The index the answer names (an alias or a data stream resolves to it).
            if let Some(version) = &applied.version {
                count(&mut effects.elasticsearch_operations, &version.index);
            }
            // A move deletes the old copy.
            if let Some(old) = moved_from {
                count(&mut effects.elasticsearch_deletes, old);
            }
        }
        EsWrite::Delete { index } => {
            report.elasticsearch.deleted += 1;
            count(&mut effects.elasticsearch_deletes, index);
            count(&mut effects.elasticsearch_operations, index);
        }
    }
    Some(&applied.outcome)
}

/// The writes a dry run would have made.
fn count_planned(w: &Written, report: &mut RoundReport) {
    match &w.plan.elasticsearch {
        Some(EsOp::Put(_)) => report.elasticsearch.written += 1,
        Some(EsOp::Delete(_)) => report.elasticsearch.deleted += 1,
        None => {}
    }
    match &w.plan.cassandra {
        Some(CassandraOp::Put(_)) => report.cassandra.written += 1,
        Some(CassandraOp::Delete(_)) => report.cassandra.deleted += 1,
        None => {}
    }
}

/// The ledger's change for an id whose writes all applied: where each side now holds the
/// synced version is what the writes left, or what the plan found.
fn ledger(w: Written, settlement: &mut Settlement) {
    let id = w.plan.id;
    match w.plan.ledger {
        LedgerOp::Keep => {}
        LedgerOp::Forget => settlement.forgotten.push(id),
        LedgerOp::Refresh(synced) => settlement.refreshes.push((id, synced)),
        LedgerOp::Record {
            version,
            elasticsearch,
            cassandra_written_at,
        } => settlement.records.push(Record {
            id,
            clears_intent: w.plan.intent.is_some(),
            version,
            elasticsearch: w
                .elasticsearch
                .and_then(|(_, applied)| applied.version)
                .or(elasticsearch),
            cassandra_written_at: match w.cassandra {
                Some(applied) => applied.version.and_then(|v| v.written_at),
                None => cassandra_written_at,
            },
        }),
    }
}

/// A write that did not apply: a version changed underneath is decided again on the next
/// attempt; a refused one is an error, reported with its reason.
fn fail(
    report: &mut RoundReport,
    settlement: &mut Settlement,
    id: uuid::Uuid,
    side: Side,
    outcome: &WriteOutcome,
) {
    let reason = match outcome {
        WriteOutcome::ChangedUnderneath | WriteOutcome::NewerAlreadyThere => {
            report.changed_underneath += 1;
            tracing::debug!(%id, "{side} changed while being written; decided again next round");
            "changed while being written; decided again on the next attempt".to_string()
        }
        WriteOutcome::Rejected(reason) | WriteOutcome::Failed(reason) => {
            let reason = format!("{side} refused the write: {reason}");
            tracing::warn!(%id, "cannot sync: {reason}");
            report.errors += 1;
            reason
        }
        WriteOutcome::Inserted | WriteOutcome::Replaced | WriteOutcome::Deleted => return,
    };
    settlement
        .failures
        .push(Failure::of(id, side.name(), reason));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Document;
    use crate::cassandra::CassandraVersion;
    use crate::document::Digest;
    use crate::elasticsearch::EsVersion;
    use crate::store::Applied;
    use crate::sync::batch::plan::Plan;
    use crate::sync::state::Intent;
    use serde_json::json;
    use uuid::Uuid;

    fn document(n: u128) -> Document {
        Document::with_id(Uuid::from_u128(n), "books", "book", json!({"n": 1}))
            .at(chrono::DateTime::from_timestamp_millis(5).expect("time"))
    }

    /// A plan that copied `document` to both sides over earlier versions.
    fn written(n: u128, es: WriteOutcome, cassandra: WriteOutcome) -> Written {
        let document = document(n);
        let applied_es = Applied {
            version: es.is_written().then(|| EsVersion::new("books", 7, 1)),
            outcome: es,
        };
        let applied_cassandra = Applied {
            version: cassandra.is_written().then(|| CassandraVersion {
                index: Some("books".into()),
                doc_type: Some("book".into()),
                timestamp: Some(5),
                content: None,
                written_at: Some(99),
                ttl: None,
            }),
            outcome: cassandra,
        };
        Written {
            plan: Plan {
                id: document.id,
                elasticsearch: None,
                cassandra: None,
                intent: Some(Intent {
                    target: document.digest(),
                    elasticsearch: Some(Digest([1; 16])),
                    cassandra: None,
                }),
                ledger: LedgerOp::Record {
                    version: crate::sync::state::SyncedVersion::of(
                        &document,
                        document.digest(),
                        false,
                    ),
                    elasticsearch: None,
                    cassandra_written_at: None,
                },
            },
            elasticsearch: Some((
                EsWrite::Put {
                    moved_from: Some("old".into()),
                },
                applied_es,
            )),
            cassandra: Some(applied_cassandra),
        }
    }

    #[test]
    fn writes_that_all_applied_are_recorded_with_where_each_side_holds_them() {
        let mut report = RoundReport::default();
        let mut settlement = Settlement::default();
        let effects = settle(
            vec![written(1, WriteOutcome::Replaced, WriteOutcome::Inserted)],
            false,
            &mut report,
            &mut settlement,
        );
        assert_eq!(
            (report.elasticsearch.written, report.cassandra.written),
            (1, 1)
        );
        assert_eq!(settlement.resolved, vec![Uuid::from_u128(1)]);
        let record = &settlement.records[0];
        assert!(record.clears_intent);
        assert_eq!(record.elasticsearch.as_ref().map(|v| v.seq_no), Some(7));
        assert_eq!(record.cassandra_written_at, Some(99));
        assert_eq!(effects.elasticsearch_operations.get("books"), Some(&1));
        assert_eq!(effects.elasticsearch_deletes.get("old"), Some(&1), "a move");
        assert!(settlement.failures.is_empty());
    }

    #[test]
    fn a_write_that_did_not_apply_is_tried_again_and_records_nothing() {
        let mut report = RoundReport::default();
        let mut settlement = Settlement::default();
        settle(
            vec![
                written(1, WriteOutcome::Replaced, WriteOutcome::ChangedUnderneath),
                written(
                    2,
                    WriteOutcome::Rejected("mapping".into()),
                    WriteOutcome::Inserted,
                ),
            ],
            false,
            &mut report,
            &mut settlement,
        );
        assert!(settlement.records.is_empty() && settlement.resolved.is_empty());
        assert_eq!((report.changed_underneath, report.errors), (1, 1));
        let failures: Vec<(Option<Uuid>, &str)> = settlement
            .failures
            .iter()
            .map(|f| (f.id, f.side.as_str()))
            .collect();
        assert_eq!(
            failures,
            vec![
                (Some(Uuid::from_u128(1)), "cassandra"),
                (Some(Uuid::from_u128(2)), "elasticsearch")
            ]
        );
        // What did apply is counted.
        assert_eq!(
            (report.elasticsearch.written, report.cassandra.written),
            (1, 1)
        );
    }

    #[test]
    fn a_dry_run_counts_the_writes_it_would_make_and_settles_nothing() {
        let mut report = RoundReport::default();
        let mut settlement = Settlement::default();
        let mut w = written(1, WriteOutcome::Replaced, WriteOutcome::Inserted);
        w.plan.elasticsearch = Some(EsOp::Delete(crate::elasticsearch::EsDelete {
            id: Uuid::from_u128(1),
            expected: EsVersion::new("books", 1, 1),
        }));
        settle(vec![w], true, &mut report, &mut settlement);
        assert_eq!(report.elasticsearch.deleted, 1);
        assert!(settlement.records.is_empty() && settlement.resolved.is_empty());
    }
}
