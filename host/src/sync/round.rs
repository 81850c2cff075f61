//! One batch of ids through a round: look up both versions, triage, filter, resolve, write,
//! record what failed.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::SyncError;
use super::decide::{self, Filtered, Pair, Triage};
use super::errors::ErrorLog;
use super::report::RoundReport;
use crate::Document;
use crate::cassandra::{CassandraExpected, CassandraStore, CassandraVersion, CassandraWrite};
use crate::elasticsearch::{ElasticsearchStore, EsExpected, EsVersion, EsWrite};
use crate::policy::{Candidate, Conflict, Policy, Version};
use crate::store::{Read, Side, Stored, WriteOutcome};

/// What a batch works with.
pub(crate) struct Context<'a> {
    pub elasticsearch: &'a ElasticsearchStore,
    pub cassandra: &'a CassandraStore,
    pub policy: &'a Policy,
    pub dry_run: bool,
    /// The round's start: stamps documents read without metadata.
    pub now: DateTime<Utc>,
}

/// Where a batch of ids comes from.
pub(crate) enum Source {
    /// A page of the Elasticsearch change feed.
    Elasticsearch(Vec<Read<EsVersion>>),
    /// A page of the Cassandra change feed.
    Cassandra(Vec<Read<CassandraVersion>>),
    /// Ids recorded as failed earlier, due for another attempt.
    Retry(Vec<Uuid>),
}

/// Syncs one batch of ids.
pub(crate) async fn sync_batch(
    ctx: &Context<'_>,
    errors: &mut ErrorLog,
    report: &mut RoundReport,
    source: Source,
) -> Result<(), SyncError> {
    let session = ctx.cassandra.session();
    let mut es_reads: HashMap<Uuid, Read<EsVersion>>;
    let mut cassandra_reads: HashMap<Uuid, Read<CassandraVersion>>;
    let mut ids: Vec<Uuid> = Vec::new();
    match source {
        Source::Elasticsearch(reads) => {
            es_reads = by_id(ctx, errors, report, reads, &mut ids).await?;
            cassandra_reads = ctx.cassandra.get_by_ids(&ids).await?;
        }
        Source::Cassandra(reads) => {
            cassandra_reads = by_id(ctx, errors, report, reads, &mut ids).await?;
            es_reads = ctx
                .elasticsearch
                .get_by_ids(&hints(&ids, &cassandra_reads), ctx.now)
                .await?;
        }
        Source::Retry(retry) => {
            ids = retry;
            cassandra_reads = ctx.cassandra.get_by_ids(&ids).await?;
            es_reads = ctx
                .elasticsearch
                .get_by_ids(&hints(&ids, &cassandra_reads), ctx.now)
                .await?;
        }
    }

    // Triage: bad versions are recorded, equal ones need nothing, the rest go to the policy.
    let mut pairs = Vec::new();
    for id in ids {
        let es = es_reads.remove(&id);
        let cassandra = cassandra_reads.remove(&id);
        let mut bad = false;
        for read in [es.as_ref().map(as_bad), cassandra.as_ref().map(as_bad)]
            .into_iter()
            .flatten()
            .flatten()
        {
            errors.record_bad(session, read, ctx.now).await?;
            tracing::warn!("cannot sync {read}");
            bad = true;
        }
        if bad {
            report.errors += 1;
            continue;
        }
        let pair = Pair {
            id,
            elasticsearch: es.and_then(into_stored),
            cassandra: cassandra.and_then(into_stored),
        };
        match decide::triage(&pair, &ctx.elasticsearch.config().indices) {
            Triage::InSync => {
                report.in_sync += 1;
                errors.resolve(session, &id).await?;
            }
            Triage::Gone => {
                errors.resolve(session, &id).await?;
            }
            Triage::OutOfScope(reason) => {
                report.out_of_scope += 1;
                tracing::debug!(%id, "left alone: {reason}");
                errors.resolve(session, &id).await?;
            }
            Triage::Decide => pairs.push(pair),
        }
    }
    if pairs.is_empty() {
        return Ok(());
    }

    // Filter: every present version, with its side.
    let mut candidates = Vec::new();
    for pair in &pairs {
        if let Some(stored) = &pair.elasticsearch {
            candidates.push(Candidate {
                side: Side::Elasticsearch,
                version: Version::written(stored.document.clone()),
                deleted: false,
            });
        }
        if let Some(stored) = &pair.cassandra {
            candidates.push(Candidate {
                side: Side::Cassandra,
                version: Version::written(stored.document.clone()),
                deleted: false,
            });
        }
    }
    let mut verdicts = ctx.policy.filter(candidates).await.into_iter();
    let mut taken = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let es_verdict = pair.elasticsearch.as_ref().and_then(|_| verdicts.next());
        let cassandra_verdict = pair.cassandra.as_ref().and_then(|_| verdicts.next());
        match decide::apply_verdicts(&pair, es_verdict, cassandra_verdict) {
            Filtered::Skip(reason) => {
                report.filtered += 1;
                tracing::debug!(id = %pair.id, "filtered out: {reason}");
                errors.resolve(session, &pair.id).await?;
            }
            Filtered::Failed(reason) => {
                fail(ctx, errors, report, pair.id, "policy", &reason).await?;
            }
            Filtered::Take {
                elasticsearch,
                cassandra,
            } => taken.push((pair, elasticsearch, cassandra)),
        }
    }
    if taken.is_empty() {
        return Ok(());
    }

    // Resolve.
    let conflicts: Vec<Conflict> = taken
        .iter()
        .map(|(pair, elasticsearch, cassandra)| Conflict {
            id: pair.id,
            base: None,
            elasticsearch: elasticsearch.clone().map(Version::written),
            cassandra: cassandra.clone().map(Version::written),
        })
        .collect();
    let resolutions = ctx.policy.resolve(conflicts).await;
    let mut es_writes = Vec::new();
    let mut cassandra_writes = Vec::new();
    let mut pending: HashSet<Uuid> = HashSet::new();
    for ((pair, elasticsearch, cassandra), resolution) in taken.into_iter().zip(resolutions) {
        let id = pair.id;
        let resolution = match resolution {
            Ok(resolution) => resolution,
            Err(e) => {
                fail(
                    ctx,
                    errors,
                    report,
                    id,
                    "policy",
                    &format!("policy resolve: {e}"),
                )
                .await?;
                continue;
            }
        };
        if let (Some(e), Some(c)) = (&pair.elasticsearch, &pair.cassandra)
            && e.document != c.document
        {
            report.conflicts += 1;
        }
        let decision = match decide::decide(&pair, elasticsearch, cassandra, resolution) {
            Ok(decision) => decision,
            Err(reason) => {
                fail(ctx, errors, report, id, "policy", &reason).await?;
                continue;
            }
        };
        log_decision(&pair, &decision);
        let Some(target) = decision.target else {
            errors.resolve(session, &id).await?;
            continue;
        };
        if decision.write_elasticsearch {
            es_writes.push(EsWrite {
                document: target.clone(),
                expected: match &pair.elasticsearch {
                    Some(stored) => EsExpected::Version(stored.version.clone()),
                    None => EsExpected::Absent,
                },
            });
        }
        if decision.write_cassandra {
            cassandra_writes.push(CassandraWrite {
                document: target,
                expected: match &pair.cassandra {
                    Some(stored) => CassandraExpected::Row(stored.version.clone()),
                    None => CassandraExpected::Absent,
                },
            });
        }
        if decision.write_elasticsearch || decision.write_cassandra {
            pending.insert(id);
        } else {
            errors.resolve(session, &id).await?;
        }
    }

    // Write both sides at once.
    if ctx.dry_run {
        report.elasticsearch.written += es_writes.len() as u64;
        report.cassandra.written += cassandra_writes.len() as u64;
        return Ok(());
    }
    let (es_outcomes, cassandra_outcomes) = tokio::join!(
        async {
            if es_writes.is_empty() {
                Ok(Vec::new())
            } else {
                ctx.elasticsearch.write_batch(&es_writes).await
            }
        },
        async {
            if cassandra_writes.is_empty() {
                Ok(Vec::new())
            } else {
                ctx.cassandra.write_batch(&cassandra_writes).await
            }
        }
    );
    let outcomes = es_writes
        .iter()
        .map(|w| (Side::Elasticsearch, &w.document))
        .zip(es_outcomes?)
        .chain(
            cassandra_writes
                .iter()
                .map(|w| (Side::Cassandra, &w.document))
                .zip(cassandra_outcomes?),
        );
    let mut failed: HashSet<Uuid> = HashSet::new();
    for ((side, document), outcome) in outcomes {
        let id = document.id;
        match outcome {
            WriteOutcome::Inserted | WriteOutcome::Replaced => {
                report.side_mut(side).written += 1;
            }
            WriteOutcome::ChangedUnderneath | WriteOutcome::NewerAlreadyThere => {
                report.changed_underneath += 1;
                failed.insert(id);
                tracing::debug!(%id, "{side} changed while being written; decided again next round");
                errors
                    .record(
                        session,
                        Some(id),
                        &id.to_string(),
                        side.name(),
                        "changed while being written; decided again on the next attempt",
                        ctx.now,
                    )
                    .await?;
            }
            WriteOutcome::Rejected(reason) | WriteOutcome::Failed(reason) => {
                failed.insert(id);
                let reason = format!("{side} refused the write: {reason}");
                fail(ctx, errors, report, id, side.name(), &reason).await?;
            }
        }
    }
    for id in pending.difference(&failed) {
        errors.resolve(session, id).await?;
    }
    Ok(())
}

/// A page's reads by id (their ids, sorted, into `ids`); a read without a uuid id is recorded
/// as failed at once, since nothing else can be done with it.
async fn by_id<V>(
    ctx: &Context<'_>,
    errors: &mut ErrorLog,
    report: &mut RoundReport,
    reads: Vec<Read<V>>,
    ids: &mut Vec<Uuid>,
) -> Result<HashMap<Uuid, Read<V>>, SyncError> {
    let mut found = HashMap::with_capacity(reads.len());
    for read in reads {
        match id_of(&read) {
            Some(id) => {
                ids.push(id);
                found.insert(id, read);
            }
            None => record_bad(ctx, errors, report, &read).await?,
        }
    }
    ids.sort();
    ids.dedup();
    Ok(found)
}

fn id_of<V>(read: &Read<V>) -> Option<Uuid> {
    match read {
        Read::Document(stored) => Some(stored.document.id),
        Read::Bad(bad) => bad.id,
    }
}

fn as_bad<V>(read: &Read<V>) -> Option<&crate::store::BadDocument> {
    match read {
        Read::Bad(bad) => Some(bad),
        Read::Document(_) => None,
    }
}

fn into_stored<V>(read: Read<V>) -> Option<Stored<V>> {
    match read {
        Read::Document(stored) => Some(stored),
        Read::Bad(_) => None,
    }
}

/// Ids with the Elasticsearch index their Cassandra version names, for real-time lookups.
fn hints(
    ids: &[Uuid],
    cassandra: &HashMap<Uuid, Read<CassandraVersion>>,
) -> Vec<(Uuid, Option<String>)> {
    ids.iter()
        .map(|id| {
            let index = match cassandra.get(id) {
                Some(Read::Document(stored)) => Some(stored.document.index.clone()),
                _ => None,
            };
            (*id, index)
        })
        .collect()
}

async fn record_bad<V>(
    ctx: &Context<'_>,
    errors: &mut ErrorLog,
    report: &mut RoundReport,
    read: &Read<V>,
) -> Result<(), SyncError> {
    if let Read::Bad(bad) = read {
        tracing::warn!("cannot sync {bad}");
        errors
            .record_bad(ctx.cassandra.session(), bad, ctx.now)
            .await?;
        report.errors += 1;
    }
    Ok(())
}

async fn fail(
    ctx: &Context<'_>,
    errors: &mut ErrorLog,
    report: &mut RoundReport,
    id: Uuid,
    side: &str,
    reason: &str,
) -> Result<(), SyncError> {
    tracing::warn!(%id, "cannot sync: {reason}");
    errors
        .record(
            ctx.cassandra.session(),
            Some(id),
            &id.to_string(),
            side,
            reason,
            ctx.now,
        )
        .await?;
    report.errors += 1;
    Ok(())
}

fn log_decision(pair: &Pair, decision: &decide::Decision) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let show = |d: Option<&Document>| match d {
        Some(d) => d
            .timestamp
            .map(crate::document::format_timestamp)
            .unwrap_or_else(|| "no timestamp".into()),
        None => "absent".to_string(),
    };
    let mut writes = Vec::new();
    if decision.write_elasticsearch {
        writes.push("elasticsearch");
    }
    if decision.write_cassandra {
        writes.push("cassandra");
    }
    tracing::debug!(
        "{}: es {} / cassandra {} -> {} wins, writing {}",
        pair.id,
        show(pair.elasticsearch.as_ref().map(|s| &s.document)),
        show(pair.cassandra.as_ref().map(|s| &s.document)),
        decision.winner,
        if writes.is_empty() {
            "nothing".to_string()
        } else {
            writes.join(" and ")
        },
    );
}
