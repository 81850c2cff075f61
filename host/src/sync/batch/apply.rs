//! Applying: every write of a batch at once on both stores, then the ledger for the ids whose
//! writes all applied, and the failures recorded for the others (decided again later).

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::Context;
use super::plan::{CassandraOp, EsOp, LedgerOp, Plan};
use crate::cassandra::CassandraVersion;
use crate::elasticsearch::{EsExpected, EsVersion};
use crate::store::{Applied, Side, WriteOutcome};
use crate::sync::SyncError;
use crate::sync::report::RoundReport;
use crate::sync::state::{Record, State, Synced};

/// What a batch changed that the round keeps track of.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Documents essync deleted from Elasticsearch, by index (its delete counters move).
    pub elasticsearch_deletes: BTreeMap<String, i64>,
    /// Operations Elasticsearch confirmed applying, each with a sequence number of its own, by
    /// the index that holds them (see [`crate::elasticsearch::feed`]'s own operations).
    pub elasticsearch_operations: BTreeMap<String, i64>,
}

/// Writes of one kind, and the number of the plan each came from.
struct Ops<T> {
    ops: Vec<T>,
    plans: Vec<usize>,
}

impl<T> Default for Ops<T> {
    fn default() -> Self {
        Self {
            ops: Vec::new(),
            plans: Vec::new(),
        }
    }
}

impl<T> Ops<T> {
    fn push(&mut self, plan: usize, op: T) {
        self.plans.push(plan);
        self.ops.push(op);
    }

    /// Each write with its plan's number.
    fn iter(&self) -> impl Iterator<Item = (&usize, &T)> {
        self.plans.iter().zip(&self.ops)
    }
}

/// Writes the plans, then the ledger; records what failed.
pub(crate) async fn apply(
    ctx: &Context<'_>,
    state: &mut State,
    report: &mut RoundReport,
    mut plans: Vec<Plan>,
) -> Result<Effects, SyncError> {
    let session = ctx.cassandra.session();
    let mut effects = Effects::default();
    // The writes, taken out of their plans (the plans keep the ledger's part), each with the
    // number of its plan.
    let mut es_puts = Ops::default();
    let mut es_deletes = Ops::default();
    let mut cassandra_puts = Ops::default();
    let mut cassandra_deletes = Ops::default();
    for (n, plan) in plans.iter_mut().enumerate() {
        match plan.elasticsearch.take() {
            Some(EsOp::Put(write)) => es_puts.push(n, write),
            Some(EsOp::Delete(delete)) => es_deletes.push(n, delete),
            None => {}
        }
        match plan.cassandra.take() {
            Some(CassandraOp::Put(write)) => cassandra_puts.push(n, write),
            Some(CassandraOp::Delete(delete)) => cassandra_deletes.push(n, delete),
            None => {}
        }
    }
    if state.dry_run() {
        report.elasticsearch.written += es_puts.ops.len() as u64;
        report.elasticsearch.deleted += es_deletes.ops.len() as u64;
        report.cassandra.written += cassandra_puts.ops.len() as u64;
        report.cassandra.deleted += cassandra_deletes.ops.len() as u64;
        return Ok(effects);
    }

    // The ledger learns of the writes before they are made: a crash between them and their
    // confirmation leaves an intent, not a change credited to the wrong side.
    let intents: Vec<_> = plans
        .iter()
        .filter_map(|plan| plan.intent.map(|intent| (plan.id, intent)))
        .collect();
    let started = std::time::Instant::now();
    state.intend(session, &intents).await?;
    let intended = started.elapsed();
    let (es_put, es_delete, cassandra_put, cassandra_delete) = tokio::join!(
        async {
            if es_puts.ops.is_empty() {
                return Ok(Vec::new());
            }
            ctx.elasticsearch.write_batch(&es_puts.ops).await
        },
        async {
            if es_deletes.ops.is_empty() {
                return Ok(Vec::new());
            }
            ctx.elasticsearch.delete_batch(&es_deletes.ops).await
        },
        async {
            if cassandra_puts.ops.is_empty() {
                return Ok(Vec::new());
            }
            ctx.cassandra.write_batch(&cassandra_puts.ops).await
        },
        async {
            if cassandra_deletes.ops.is_empty() {
                return Ok(Vec::new());
            }
            ctx.cassandra.delete_batch(&cassandra_deletes.ops).await
        },
    );
    let written = started.elapsed();
    let (es_put, es_delete) = (es_put?, es_delete?);
    let (cassandra_put, cassandra_delete) = (cassandra_put?, cassandra_delete?);

    // Each plan's outcomes, per side.
    let mut es_results: HashMap<usize, Applied<EsVersion>> = HashMap::new();
    let mut cassandra_results: HashMap<usize, Applied<CassandraVersion>> = HashMap::new();
    for ((n, write), applied) in es_puts.iter().zip(es_put) {
        if applied.outcome.is_written() {
            report.elasticsearch.written += 1;
            // The index the answer names (an alias or a data stream resolves to it).
            if let Some(version) = &applied.version {
                *effects
                    .elasticsearch_operations
                    .entry(version.index.clone())
                    .or_default() += 1;
            }
            if let EsExpected::Version(old) = &write.expected
                && old.index != write.document.index
            {
                // A move deletes the old copy.
                *effects
                    .elasticsearch_deletes
                    .entry(old.index.clone())
                    .or_default() += 1;
            }
        }
        es_results.insert(*n, applied);
    }
    for ((n, delete), applied) in es_deletes.iter().zip(es_delete) {
        if applied.outcome.is_written() {
            report.elasticsearch.deleted += 1;
            *effects
                .elasticsearch_deletes
                .entry(delete.expected.index.clone())
                .or_default() += 1;
            *effects
                .elasticsearch_operations
                .entry(delete.expected.index.clone())
                .or_default() += 1;
        }
        es_results.insert(*n, applied);
    }
    for ((n, _), applied) in cassandra_puts.iter().zip(cassandra_put) {
        if applied.outcome.is_written() {
            report.cassandra.written += 1;
        }
        cassandra_results.insert(*n, applied);
    }
    for ((n, _), applied) in cassandra_deletes.iter().zip(cassandra_delete) {
        if applied.outcome.is_written() {
            report.cassandra.deleted += 1;
        }
        cassandra_results.insert(*n, applied);
    }

    let mut records = Vec::new();
    let mut refreshes: Vec<(Uuid, Synced)> = Vec::new();
    let mut forgotten = Vec::new();
    for (n, plan) in plans.into_iter().enumerate() {
        let id = plan.id;
        let es = es_results.remove(&n);
        let cassandra = cassandra_results.remove(&n);
        let failures: Vec<(Side, WriteOutcome)> = [
            (Side::Elasticsearch, es.as_ref().map(|a| &a.outcome)),
            (Side::Cassandra, cassandra.as_ref().map(|a| &a.outcome)),
        ]
        .into_iter()
        .filter_map(|(side, outcome)| {
            outcome
                .filter(|o| !o.is_written())
                .map(|o| (side, o.clone()))
        })
        .collect();
        if !failures.is_empty() {
            for (side, outcome) in failures {
                record_failure(ctx, state, report, id, side, outcome).await?;
            }
            // Decided again. The intent stays: where one side's write applied and the other's
            // did not (an application changed or deleted it meanwhile), it tells essync's
            // version from the application's change, which must win.
            continue;
        }
        match plan.ledger {
            LedgerOp::Keep => {}
            LedgerOp::Forget => forgotten.push(id),
            LedgerOp::Refresh(synced) => refreshes.push((id, synced)),
            LedgerOp::Record {
                digest,
                document,
                elasticsearch,
                cassandra_written_at,
            } => records.push(Record {
                digest,
                document,
                elasticsearch: es.and_then(|a| a.version).or(elasticsearch),
                cassandra_written_at: match cassandra {
                    Some(applied) => applied.version.and_then(|v| v.written_at),
                    None => cassandra_written_at,
                },
            }),
        }
        state.resolved(session, &id).await?;
    }
    state
        .write_ledger(session, &records, &refreshes, &forgotten)
        .await?;
    tracing::debug!(
        "applied: intents {:.3}s, writes {:.3}s, ledger {:.3}s",
        intended.as_secs_f64(),
        (written - intended).as_secs_f64(),
        (started.elapsed() - written).as_secs_f64()
    );
    Ok(effects)
}

async fn record_failure(
    ctx: &Context<'_>,
    state: &mut State,
    report: &mut RoundReport,
    id: Uuid,
    side: Side,
    outcome: WriteOutcome,
) -> Result<(), SyncError> {
    let session = ctx.cassandra.session();
    match outcome {
        WriteOutcome::ChangedUnderneath | WriteOutcome::NewerAlreadyThere => {
            report.changed_underneath += 1;
            tracing::debug!(%id, "{side} changed while being written; decided again next round");
            state
                .fail(
                    session,
                    id,
                    side.name(),
                    "changed while being written; decided again on the next attempt",
                    ctx.now,
                )
                .await?;
        }
        WriteOutcome::Rejected(reason) | WriteOutcome::Failed(reason) => {
            let reason = format!("{side} refused the write: {reason}");
            tracing::warn!(%id, "cannot sync: {reason}");
            state
                .fail(session, id, side.name(), &reason, ctx.now)
                .await?;
            report.errors += 1;
        }
        WriteOutcome::Inserted | WriteOutcome::Replaced | WriteOutcome::Deleted => {}
    }
    Ok(())
}
