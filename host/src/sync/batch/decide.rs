//! Deciding: attribution first (who changed what), then the policy filters every change and
//! resolves the conflicts, and each id gets what both sides should hold ([`Outcome`]). A change
//! made on one side only is taken here, without asking `resolve`: no policy can turn it into a
//! revert. An id the policy keeps out, fails on, or moves out of the synced indices goes no
//! further: it is left to the settlement.

use uuid::Uuid;

use super::attribute::{Attribution, Change, attribute};
use super::plan::Outcome;
use super::{Context, Examined};
use crate::Document;
use crate::document::Digest;
use crate::elasticsearch::IndexSelection;
use crate::policy::{Candidate, Conflict, PolicyError, Resolution, Verdict, Version};
use crate::store::Side;
use crate::sync::SyncError;
use crate::sync::report::RoundReport;
use crate::sync::state::{Failure, Settlement, State};

/// An id and what both sides should hold.
pub(crate) type Decided = (Examined, Outcome);

/// An id that needs the policy: a change to filter, or a conflict to resolve.
struct Pending {
    examined: Examined,
    attribution: Attribution,
    /// The versions that take part, per side (after the filter's transforms).
    elasticsearch: Option<Version>,
    cassandra: Option<Version>,
    /// The digest of each side's version while it is exactly what that side holds (not
    /// transformed by the filter): a copy of it needs no digest of its own.
    exact: [Option<Digest>; 2],
    /// What the base held (its content only for a policy that merges).
    base: Option<Document>,
    /// Whether `base` carries the synced content (else its content is `{}`).
    base_content: bool,
    /// Why the filter keeps it out, or refused to say.
    held: Option<Held>,
}

/// Why the filter holds an id back.
enum Held {
    Skipped(String),
    Refused(String),
}

/// What both sides of each id should hold; the ids that go no further are settled.
pub(crate) async fn decide(
    ctx: &Context<'_>,
    state: &State,
    examined: Vec<Examined>,
    report: &mut RoundReport,
    settlement: &mut Settlement,
) -> Result<Vec<Decided>, SyncError> {
    let selection = &ctx.elasticsearch.config().indices;
    let mut decided = Vec::with_capacity(examined.len());
    let mut pending = Vec::new();
    for examined in examined {
        if let Some(index) = outside_index(&examined, selection) {
            report.out_of_scope += 1;
            tracing::debug!(id = %examined.id, "left alone: index '{index}' is not among the synced indices ({selection})");
            settlement.resolved.push(examined.id);
            continue;
        }
        if let Some(reason) = rewritten_by_elasticsearch(ctx, &examined) {
            fail(report, settlement, examined.id, reason);
            continue;
        }
        let attribution = attribute(&examined);
        match attribution {
            Attribution::Nothing => {
                report.in_sync += 1;
                decided.push((examined, Outcome::Leave));
            }
            Attribution::InSync => {
                report.in_sync += 1;
                decided.push((examined, Outcome::Record));
            }
            Attribution::Forget => decided.push((examined, Outcome::Forget)),
            Attribution::Take(..) | Attribution::Conflict => {
                pending.push(pending_of(examined, attribution))
            }
        }
    }
    if pending.is_empty() {
        return Ok(decided);
    }
    attach_bases(state, &mut pending).await?;
    filter(ctx, &mut pending).await;
    let mut conflicts = Vec::new();
    for mut p in pending {
        match p.held.take() {
            Some(Held::Refused(reason)) => fail(report, settlement, p.examined.id, reason),
            Some(Held::Skipped(reason)) => {
                if report.count_filtered(p.examined.id) {
                    tracing::debug!(id = %p.examined.id, "filtered out: {reason}");
                }
                settlement.resolved.push(p.examined.id);
            }
            None if p.attribution == Attribution::Conflict => conflicts.push(p),
            None => match take(p, selection) {
                Ok(one) => decided.push(one),
                Err((id, reason)) => fail(report, settlement, id, reason),
            },
        }
    }
    report.conflicts += conflicts.len() as u64;
    resolve(ctx, conflicts, selection, &mut decided, report, settlement).await;
    Ok(decided)
}

/// A pending id: the versions that take part are, for a change or creation on one side, that
/// side alone; the other's is what a delete removed, or one side of a conflict. The documents
/// that take part move from `examined` into the pending id: the later stages read only the
/// versions and digests `examined` keeps of them.
fn pending_of(mut examined: Examined, attribution: Attribution) -> Pending {
    let takes_part = |side: Side| match attribution {
        Attribution::Take(taken, Change::Deleted) => taken != side,
        Attribution::Take(taken, _) => taken == side,
        _ => true,
    };
    let exact = [
        (examined.elasticsearch.as_ref()).and_then(|s| s.stored.exact.then_some(s.stored.digest)),
        (examined.cassandra.as_ref()).and_then(|s| s.stored.exact.then_some(s.stored.digest)),
    ];
    let elasticsearch = examined
        .elasticsearch
        .as_mut()
        .filter(|_| takes_part(Side::Elasticsearch))
        .map(|s| Version {
            document: take_document(&mut s.stored.document),
            stamp: s.stamp,
        });
    let cassandra = examined
        .cassandra
        .as_mut()
        .filter(|_| takes_part(Side::Cassandra))
        .map(|s| Version {
            document: take_document(&mut s.stored.document),
            stamp: s.stamp,
        });
    Pending {
        examined,
        attribution,
        elasticsearch,
        cassandra,
        exact,
        base: None,
        base_content: false,
        held: None,
    }
}

/// Moves a document out, leaving its id and nothing else (no allocation).
fn take_document(document: &mut Document) -> Document {
    let id = document.id;
    std::mem::replace(
        document,
        Document::with_id(id, String::new(), String::new(), serde_json::Value::Null),
    )
}

/// A side's digest and document: the document is in the pending id when the side takes part.
fn side_of<'p, V>(
    seen: Option<&'p super::Seen<V>>,
    taking: Option<&'p Version>,
) -> Option<(crate::document::Digest, &'p Document)> {
    let seen = seen?;
    let document = taking.map_or(&seen.stored.document, |v| &v.document);
    Some((seen.stored.digest, document))
}

/// The bases of the pending ids (what a delete removed, and what a conflict's policy sees),
/// with the synced content when the policy merges from it (otherwise an empty object, or the
/// content of an unchanged side, which holds the base).
async fn attach_bases(state: &State, pending: &mut [Pending]) -> Result<(), SyncError> {
    let wanted: Vec<(Uuid, crate::document::Digest)> = pending
        .iter()
        .filter(|p| p.attribution == Attribution::Conflict)
        .filter_map(|p| {
            let base = p.examined.ledger.as_ref()?.base.as_ref()?;
            Some((p.examined.id, base.digest))
        })
        .collect();
    let mut contents = state.bases(&wanted).await?;
    for p in pending {
        let Some(synced) = p.examined.ledger.as_ref().and_then(|e| e.base.as_ref()) else {
            continue;
        };
        // A side whose digest is the base's holds the base itself.
        let sides = [
            side_of(p.examined.elasticsearch.as_ref(), p.elasticsearch.as_ref()),
            side_of(p.examined.cassandra.as_ref(), p.cassandra.as_ref()),
        ];
        let unchanged_side = sides
            .into_iter()
            .flatten()
            .find(|(digest, _)| *digest == synced.digest)
            .map(|(_, document)| document.content.clone());
        let content = contents
            .remove(&p.examined.id)
            .map(crate::document::Content::from)
            .or(unchanged_side);
        p.base_content = content.is_some();
        let content = content.unwrap_or_else(|| serde_json::json!({}).into());
        let document = Document::with_id(p.examined.id, &synced.index, &synced.doc_type, content);
        p.base = chrono::DateTime::from_timestamp_millis(synced.timestamp).map(|t| document.at(t));
    }
    Ok(())
}

/// Asks the policy's filter about every change that takes part (deletes included), in one call,
/// and keeps each answer with its id: a transform replaces the side's version, a skip or a
/// refusal holds the id back. The versions go to the policy and come back, not copied.
async fn filter(ctx: &Context<'_>, pending: &mut [Pending]) {
    // What a delete removed is copied first: it may be the other side's version.
    let mut asked: Vec<(usize, Candidate)> = Vec::new();
    for (n, p) in pending.iter().enumerate() {
        asked.extend(deleted(p, Side::Elasticsearch).map(|c| (n, c)));
        asked.extend(deleted(p, Side::Cassandra).map(|c| (n, c)));
    }
    for (n, p) in pending.iter_mut().enumerate() {
        asked.extend(changed(p, Side::Elasticsearch).map(|c| (n, c)));
        asked.extend(changed(p, Side::Cassandra).map(|c| (n, c)));
    }
    let (owners, candidates): (Vec<usize>, Vec<Candidate>) = asked.into_iter().unzip();
    let facts: Vec<(Side, bool, crate::policy::Stamp)> = candidates
        .iter()
        .map(|c| (c.side, c.deleted, c.version.stamp))
        .collect();
    let (returned, verdicts) = ctx.policy.filter_returning(candidates).await;
    for (candidate, &n) in returned.into_iter().zip(&owners) {
        if !candidate.deleted {
            *pending[n].version_mut(candidate.side) = Some(candidate.version);
        }
    }
    for (verdict, (&n, (side, deleted, stamp))) in
        verdicts.into_iter().zip(owners.iter().zip(facts))
    {
        let p = &mut pending[n];
        let held = match verdict {
            Err(e) => Held::Refused(format!("policy filter on the {side} change: {e}")),
            Ok(Verdict::Skip { reason }) => {
                let what = if deleted { "delete" } else { "change" };
                Held::Skipped(format!("{side} {what} skipped: {reason}"))
            }
            Ok(Verdict::Keep) => continue,
            Ok(Verdict::Transform(document)) => {
                *p.version_mut(side) = Some(Version { document, stamp });
                p.exact[side_index(side)] = None;
                continue;
            }
        };
        // The first reason to hold the id back is the one reported.
        p.held.get_or_insert(held);
    }
}

/// Where a side's entry is in [`Pending::exact`].
fn side_index(side: Side) -> usize {
    match side {
        Side::Elasticsearch => 0,
        Side::Cassandra => 1,
    }
}

impl Pending {
    fn version_mut(&mut self, side: Side) -> &mut Option<Version> {
        match side {
            Side::Elasticsearch => &mut self.elasticsearch,
            Side::Cassandra => &mut self.cassandra,
        }
    }
}

/// The change `side` made to a pending id, if it made one that takes part.
fn change_of(p: &Pending, side: Side) -> Option<Change> {
    let version = match side {
        Side::Elasticsearch => &p.elasticsearch,
        Side::Cassandra => &p.cassandra,
    };
    match p.attribution {
        Attribution::Take(taken, change) if taken == side => Some(change),
        Attribution::Take(..) => None,
        _ => Some(match version {
            Some(_) => Change::Changed,
            None => Change::Deleted,
        }),
    }
}

/// The candidate of a delete `side` made: what was deleted, the base, which the unchanged other
/// side still holds (a copy).
fn deleted(p: &Pending, side: Side) -> Option<Candidate> {
    if change_of(p, side)? != Change::Deleted {
        return None;
    }
    let other = match side {
        Side::Elasticsearch => &p.cassandra,
        Side::Cassandra => &p.elasticsearch,
    };
    let deleted = p
        .base
        .clone()
        .or_else(|| other.as_ref().map(|v| v.document.clone()))?;
    Some(Candidate {
        side,
        version: Version::written(deleted),
        deleted: true,
    })
}

/// The candidate of a change or creation `side` made: its version, moved out of the pending id
/// (the filter puts it back).
fn changed(p: &mut Pending, side: Side) -> Option<Candidate> {
    if change_of(p, side)? == Change::Deleted {
        return None;
    }
    let version = p.version_mut(side).take()?;
    Some(Candidate {
        side,
        version,
        deleted: false,
    })
}

/// The outcome of a change taken from one side (not a conflict).
fn take(p: Pending, selection: &IndexSelection) -> Result<Decided, (Uuid, String)> {
    let id = p.examined.id;
    let side = match p.attribution {
        Attribution::Take(_, Change::Deleted) => {
            log_decision(&p.examined, p.attribution, "deleted on the other side too");
            return Ok((p.examined, Outcome::Delete));
        }
        Attribution::Take(side, _) => side,
        _ => return Err((id, "not a change of one side".to_string())),
    };
    let exact = p.exact[side_index(side)];
    let version = match side {
        Side::Elasticsearch => p.elasticsearch,
        Side::Cassandra => p.cassandra,
    };
    match version {
        Some(version) if !selection.contains(&version.document.index) => {
            Err((id, outside(&version.document, selection)))
        }
        Some(version) => {
            log_decision(&p.examined, p.attribution, "copied to the other side");
            let outcome = match exact {
                Some(digest) => Outcome::Copy(version.document, digest),
                None => Outcome::Target(version.document),
            };
            Ok((p.examined, outcome))
        }
        None => Err((id, "the changed version went missing".to_string())),
    }
}

/// Asks the policy to resolve the conflicts, in one call; each answer becomes its id's outcome.
async fn resolve(
    ctx: &Context<'_>,
    conflicts: Vec<Pending>,
    selection: &IndexSelection,
    decided: &mut Vec<Decided>,
    report: &mut RoundReport,
    settlement: &mut Settlement,
) {
    if conflicts.is_empty() {
        return;
    }
    let asked = conflicts
        .iter()
        .map(|p| Conflict {
            id: p.examined.id,
            base: p.base.clone(),
            base_content: p.base_content,
            elasticsearch: p.elasticsearch.clone(),
            cassandra: p.cassandra.clone(),
        })
        .collect();
    let resolutions = ctx.policy.resolve(asked).await;
    for (p, resolution) in conflicts.into_iter().zip(resolutions) {
        let id = p.examined.id;
        // What the policy answered, in words, only for the debug log.
        let answer = resolution
            .as_ref()
            .ok()
            .filter(|_| tracing::enabled!(tracing::Level::DEBUG))
            .map(|r| answered(&p, r));
        match outcome(&p, resolution) {
            Ok(Outcome::Target(target)) if !selection.contains(&target.index) => {
                fail(report, settlement, id, outside(&target, selection))
            }
            Ok(outcome) => {
                log_decision(&p.examined, p.attribution, &answer.unwrap_or_default());
                decided.push((p.examined, outcome));
            }
            Err(reason) => fail(report, settlement, id, reason),
        }
    }
}

/// The index of a side's version that is outside the synced indices, if any: such an id is
/// left alone (a row of another index's application, say).
fn outside_index<'e>(examined: &'e Examined, selection: &IndexSelection) -> Option<&'e String> {
    [
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
    .find(|index| !selection.contains(index))
}

/// Why a decided version cannot be written: its index is outside the synced indices. Neither side
/// is written (writing one only would leave the two apart for good).
fn outside(target: &Document, selection: &IndexSelection) -> String {
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

/// An id that cannot be synced now: reported, and recorded for a later attempt.
fn fail(report: &mut RoundReport, settlement: &mut Settlement, id: Uuid, reason: String) {
    tracing::warn!(%id, "cannot sync: {reason}");
    settlement.failures.push(Failure::of(id, "policy", reason));
    report.errors += 1;
}

/// What the policy answered for a conflict, and what it means: which side won, over what.
fn answered(p: &Pending, resolution: &Resolution) -> String {
    let es = version_of(p.elasticsearch.as_ref());
    let cassandra = version_of(p.cassandra.as_ref());
    match resolution {
        Resolution::Unchanged => {
            format!(
                "the policy answered unchanged: both left as they are (Elasticsearch {es}, Cassandra {cassandra})"
            )
        }
        Resolution::Delete => format!(
            "the policy answered delete: deleted on both sides (Elasticsearch {es}, Cassandra {cassandra})"
        ),
        Resolution::UseElasticsearch => format!(
            "the policy answered use-elasticsearch: Elasticsearch wins, both get its version \
             ({es}) over Cassandra's ({cassandra})"
        ),
        Resolution::UseCassandra => format!(
            "the policy answered use-cassandra: Cassandra wins, both get its version \
             ({cassandra}) over Elasticsearch's ({es})"
        ),
        Resolution::Write(d) => format!(
            "the policy answered write: both get the policy's own version ({}) over \
             Elasticsearch's ({es}) and Cassandra's ({cassandra})",
            timestamp_of(d)
        ),
    }
}

/// A side's version in a log line: its timestamp, or that the side deleted it.
fn version_of(version: Option<&Version>) -> String {
    version.map_or_else(
        || "deleted".to_string(),
        |v| format!("of {}", timestamp_of(&v.document)),
    )
}

fn timestamp_of(document: &Document) -> String {
    document
        .timestamp
        .map(crate::document::format_timestamp)
        .unwrap_or_else(|| "no timestamp".to_string())
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
