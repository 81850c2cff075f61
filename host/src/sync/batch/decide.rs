//! Deciding: attribution first (who changed what), then the policy filters every change and
//! resolves the conflicts, and each id gets its plan. A change made on one side only is taken
//! here, without asking `resolve`: no policy can turn it into a revert.

use std::collections::HashMap;

use uuid::Uuid;

use super::attribute::{Attribution, Change, attribute};
use super::plan::{Outcome, Plan, plan};
use super::{Context, Examined};
use crate::Document;
use crate::policy::{Candidate, Conflict, PolicyError, Resolution, Verdict, Version};
use crate::store::Side;
use crate::sync::SyncError;
use crate::sync::report::RoundReport;
use crate::sync::state::State;

/// An id that needs the policy: a change to filter, or a conflict to resolve.
struct Pending {
    examined: Examined,
    attribution: Attribution,
    /// The versions that take part, per side (after the filter's transforms).
    elasticsearch: Option<Version>,
    cassandra: Option<Version>,
}

/// The plans of a batch; ids the policy filtered out or failed on are reported and recorded
/// here and get no plan.
pub(crate) async fn decide(
    ctx: &Context<'_>,
    state: &mut State,
    report: &mut RoundReport,
    examined: Vec<Examined>,
) -> Result<Vec<Plan>, SyncError> {
    let session = ctx.cassandra.session();
    let selection = &ctx.elasticsearch.config().indices;
    let mut plans = Vec::with_capacity(examined.len());
    let mut pending = Vec::new();
    for examined in examined {
        let outside = [
            examined
                .elasticsearch
                .as_ref()
                .map(|s| &s.stored.document.index),
            examined
                .cassandra
                .as_ref()
                .map(|s| &s.stored.document.index),
        ]
        .into_iter()
        .flatten()
        .find(|index| !selection.contains(index));
        if let Some(index) = outside {
            report.out_of_scope += 1;
            tracing::debug!(id = %examined.id, "left alone: index '{index}' is not among the synced indices ({selection})");
            state.resolved(session, &examined.id).await?;
            continue;
        }
        if let Some(reason) = rewritten_by_elasticsearch(ctx, &examined) {
            fail(ctx, state, report, examined.id, &reason).await?;
            continue;
        }
        let attribution = attribute(&examined);
        match attribution {
            Attribution::Nothing => {
                report.in_sync += 1;
                plans.push(plan(&examined, Outcome::Leave));
            }
            Attribution::InSync => {
                report.in_sync += 1;
                plans.push(plan(&examined, Outcome::Record));
            }
            Attribution::Forget => plans.push(plan(&examined, Outcome::Forget)),
            Attribution::Take(..) | Attribution::Conflict => {
                // The versions that take part: for a change or creation on one side, that side
                // alone; the other's is what a delete removed, or one side of a conflict.
                let takes_part = |side: Side| match attribution {
                    Attribution::Take(taken, Change::Deleted) => taken != side,
                    Attribution::Take(taken, _) => taken == side,
                    _ => true,
                };
                let version = |side: Side| match side {
                    Side::Elasticsearch => examined.elasticsearch.as_ref().map(|s| Version {
                        document: s.stored.document.clone(),
                        stamp: s.stamp,
                    }),
                    Side::Cassandra => examined.cassandra.as_ref().map(|s| Version {
                        document: s.stored.document.clone(),
                        stamp: s.stamp,
                    }),
                };
                pending.push(Pending {
                    elasticsearch: version(Side::Elasticsearch)
                        .filter(|_| takes_part(Side::Elasticsearch)),
                    cassandra: version(Side::Cassandra).filter(|_| takes_part(Side::Cassandra)),
                    examined,
                    attribution,
                });
            }
        }
    }
    if pending.is_empty() {
        return Ok(plans);
    }

    // The bases of the conflicts: what a policy merges from, and what a delete removed.
    let conflict_ids: Vec<Uuid> = pending
        .iter()
        .filter(|p| p.attribution == Attribution::Conflict && p.examined.ledger.is_some())
        .map(|p| p.examined.id)
        .collect();
    let mut bases: HashMap<Uuid, Document> = if conflict_ids.is_empty() {
        HashMap::new()
    } else {
        state.bases(session, &conflict_ids).await?
    };

    // Filter: every change that takes part, deletes included.
    let mut candidates = Vec::new();
    let mut owners = Vec::new();
    for (n, p) in pending.iter().enumerate() {
        let base = bases.get(&p.examined.id);
        for side in [Side::Elasticsearch, Side::Cassandra] {
            let Some(candidate) = candidate(p, side, base) else {
                continue;
            };
            candidates.push(candidate);
            owners.push((n, side));
        }
    }
    // What the answers need of each candidate (the candidates themselves go to the policy).
    let facts: Vec<_> = candidates
        .iter()
        .map(|c| (c.deleted, c.version.stamp))
        .collect();
    let verdicts = ctx.policy.filter(candidates).await;
    let mut refused: HashMap<usize, String> = HashMap::new();
    let mut skipped: HashMap<usize, String> = HashMap::new();
    for (((n, side), (deleted, stamp)), verdict) in owners.into_iter().zip(facts).zip(verdicts) {
        match verdict {
            Err(e) => {
                refused
                    .entry(n)
                    .or_insert_with(|| format!("policy filter on the {side} change: {e}"));
            }
            Ok(Verdict::Skip { reason }) => {
                skipped.entry(n).or_insert_with(|| {
                    let what = if deleted { "delete" } else { "change" };
                    format!("{side} {what} skipped: {reason}")
                });
            }
            Ok(Verdict::Keep) => {}
            Ok(Verdict::Transform(document)) => {
                let version = Some(Version { document, stamp });
                match side {
                    Side::Elasticsearch => pending[n].elasticsearch = version,
                    Side::Cassandra => pending[n].cassandra = version,
                }
            }
        }
    }

    let mut conflicts = Vec::new();
    let mut conflicted = Vec::new();
    for (n, p) in pending.into_iter().enumerate() {
        let id = p.examined.id;
        if let Some(reason) = refused.remove(&n) {
            fail(ctx, state, report, id, &reason).await?;
            continue;
        }
        if let Some(reason) = skipped.remove(&n) {
            report.filtered += 1;
            tracing::debug!(%id, "filtered out: {reason}");
            state.resolved(session, &id).await?;
            continue;
        }
        match p.attribution {
            Attribution::Take(_, Change::Deleted) => {
                log_decision(&p.examined, p.attribution, "deleted on the other side too");
                plans.push(plan(&p.examined, Outcome::Delete));
            }
            Attribution::Take(side, _) => {
                let version = match side {
                    Side::Elasticsearch => p.elasticsearch,
                    Side::Cassandra => p.cassandra,
                };
                match version {
                    Some(version) if !selection.contains(&version.document.index) => {
                        let reason = outside(&version.document, selection);
                        fail(ctx, state, report, id, &reason).await?
                    }
                    Some(version) => {
                        log_decision(&p.examined, p.attribution, "copied to the other side");
                        plans.push(plan(&p.examined, Outcome::Target(version.document)));
                    }
                    None => {
                        fail(ctx, state, report, id, "the changed version went missing").await?
                    }
                }
            }
            _ => {
                report.conflicts += 1;
                conflicts.push(Conflict {
                    id,
                    base: bases.remove(&id),
                    elasticsearch: p.elasticsearch.clone(),
                    cassandra: p.cassandra.clone(),
                });
                conflicted.push(p);
            }
        }
    }
    if conflicts.is_empty() {
        return Ok(plans);
    }

    let resolutions = ctx.policy.resolve(conflicts).await;
    for (p, resolution) in conflicted.into_iter().zip(resolutions) {
        let id = p.examined.id;
        match outcome(&p, resolution) {
            Ok(Outcome::Target(target)) if !selection.contains(&target.index) => {
                fail(ctx, state, report, id, &outside(&target, selection)).await?
            }
            Ok(outcome) => {
                log_decision(&p.examined, p.attribution, &describe(&outcome));
                plans.push(plan(&p.examined, outcome));
            }
            Err(reason) => fail(ctx, state, report, id, &reason).await?,
        }
    }
    Ok(plans)
}

/// Why a decided version cannot be written: its index is outside the synced ones. Neither side
/// is written (writing one only would leave the two apart for good).
fn outside(target: &Document, selection: &crate::elasticsearch::IndexSelection) -> String {
    format!(
        "the decided version belongs to index '{}', which is not among the synced indices \
         ({selection}); neither side is written",
        target.index
    )
}

/// Whether Elasticsearch holds something else than what essync wrote there (the ledger's
/// version, at essync's own sequence number, with other content): a final pipeline changed
/// it. Such an id is reported and left as it is on both sides: taking Elasticsearch's version
/// would delete on the other side what Elasticsearch did not keep, and writing again would
/// loop for ever.
fn rewritten_by_elasticsearch(ctx: &Context<'_>, examined: &Examined) -> Option<String> {
    let base = examined.ledger.as_ref()?.base.as_ref()?;
    let es = examined.elasticsearch.as_ref()?;
    let index = &es.stored.document.index;
    (base.elasticsearch.as_ref() == Some(&es.stored.version)
        && base.digest != es.stored.digest
        && ctx.elasticsearch.may_rewrite(index))
    .then(|| {
        format!(
            "Elasticsearch holds something else than essync wrote to index '{index}' (its final \
             pipeline rewrote it); left as it is on both sides"
        )
    })
}

/// The candidate of one side of a pending id, if that side made a change that takes part.
fn candidate(p: &Pending, side: Side, base: Option<&Document>) -> Option<Candidate> {
    let (version, other) = match side {
        Side::Elasticsearch => (&p.elasticsearch, &p.cassandra),
        Side::Cassandra => (&p.cassandra, &p.elasticsearch),
    };
    let change = match p.attribution {
        Attribution::Take(taken, change) if taken == side => change,
        Attribution::Take(..) => return None,
        _ => match version {
            Some(_) => Change::Changed,
            None => Change::Deleted,
        },
    };
    match (change, version) {
        (Change::Deleted, _) => {
            // What was deleted: the base, which the unchanged other side still holds.
            let deleted = base
                .cloned()
                .or_else(|| other.as_ref().map(|v| v.document.clone()))?;
            Some(Candidate {
                side,
                version: Version::written(deleted),
                deleted: true,
            })
        }
        (_, Some(version)) => Some(Candidate {
            side,
            version: version.clone(),
            deleted: false,
        }),
        (_, None) => None,
    }
}

/// What a conflict's resolution means for both sides.
fn outcome(p: &Pending, resolution: Result<Resolution, PolicyError>) -> Result<Outcome, String> {
    let resolution = resolution.map_err(|e| format!("policy resolve: {e}"))?;
    let target = match resolution {
        Resolution::Unchanged => return Ok(Outcome::Leave),
        Resolution::Delete => return Ok(Outcome::Delete),
        Resolution::UseElasticsearch => p
            .elasticsearch
            .as_ref()
            .map(|v| v.document.clone())
            .ok_or("the policy chose the Elasticsearch version, which does not exist")?,
        Resolution::UseCassandra => p
            .cassandra
            .as_ref()
            .map(|v| v.document.clone())
            .ok_or("the policy chose the Cassandra version, which does not exist")?,
        Resolution::Write(document) => document,
    };
    if target.id != p.examined.id {
        return Err(format!(
            "the policy's document has another id ({}) than the conflict's",
            target.id
        ));
    }
    if target.timestamp.is_none() {
        return Err("the policy's document has no timestamp".to_string());
    }
    Ok(Outcome::Target(target))
}

async fn fail(
    ctx: &Context<'_>,
    state: &mut State,
    report: &mut RoundReport,
    id: Uuid,
    reason: &str,
) -> Result<(), SyncError> {
    tracing::warn!(%id, "cannot sync: {reason}");
    state
        .fail(ctx.cassandra.session(), id, "policy", reason, ctx.now)
        .await?;
    report.errors += 1;
    Ok(())
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Leave => "left as they are".to_string(),
        Outcome::Record => "recorded as synced".to_string(),
        Outcome::Forget => "forgotten".to_string(),
        Outcome::Delete => "deleted on both sides".to_string(),
        Outcome::Target(d) => format!(
            "both get the version of {}",
            d.timestamp
                .map(crate::document::format_timestamp)
                .unwrap_or_default()
        ),
    }
}

fn log_decision(examined: &Examined, attribution: Attribution, what: &str) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let kind = match attribution {
        Attribution::Take(side, Change::Deleted) => format!("deleted in {side}"),
        Attribution::Take(side, Change::Created) => format!("created in {side}"),
        Attribution::Take(side, _) => format!("changed in {side}"),
        Attribution::Conflict => "changed on both sides".to_string(),
        other => format!("{other:?}"),
    };
    tracing::debug!("{}: {kind}: {what}", examined.id);
}
