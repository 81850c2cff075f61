//! Gathering: for every id of a batch, its ledger entry and its version on each side. A version
//! read back exactly as essync left it (the ledger's `_seq_no`, or Cassandra write time) is
//! recognised without reading the other side: that side is unchanged, and a change on the other
//! side is its own feed's to find.

use std::collections::HashMap;

use chrono::Utc;
use uuid::Uuid;

use super::attribute::{observe_cassandra, observe_elasticsearch};
use super::{Context, Examined, Source};
use crate::cassandra::CassandraVersion;
use crate::elasticsearch::EsVersion;
use crate::store::{Lookup, Read, Side, Stored};
use crate::sync::SyncError;
use crate::sync::report::RoundReport;
use crate::sync::state::{LedgerEntry, State};

/// Every id of the batch that needs a decision, with all a decision needs.
pub(crate) async fn gather(
    ctx: &Context<'_>,
    state: &mut State,
    report: &mut RoundReport,
    source: Source,
) -> Result<Vec<Examined>, SyncError> {
    let session = ctx.cassandra.session();
    let mut es_found: HashMap<Uuid, Stored<EsVersion>> = HashMap::new();
    let mut cassandra_found: HashMap<Uuid, Stored<CassandraVersion>> = HashMap::new();
    let mut recognise_own = true;
    let (ids, read_side) = match source {
        Source::Elasticsearch(reads) => (
            keep_documents(ctx, state, report, reads, &mut es_found).await?,
            Some(Side::Elasticsearch),
        ),
        Source::Cassandra {
            reads,
            recognise_own: own,
        } => {
            recognise_own = own;
            (
                keep_documents(ctx, state, report, reads, &mut cassandra_found).await?,
                Some(Side::Cassandra),
            )
        }
        Source::Ids(mut ids) => {
            ids.sort();
            ids.dedup();
            (ids, None)
        }
    };
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut ledger = state.ledger(session, &ids).await?;

    // What essync wrote itself and nobody changed since needs nothing from the other side.
    let ids: Vec<Uuid> = ids
        .into_iter()
        .filter(|id| {
            let entry = ledger.get(id);
            let own = recognise_own
                && match read_side {
                    Some(Side::Elasticsearch) => own_elasticsearch_write(entry, es_found.get(id)),
                    Some(Side::Cassandra) => own_cassandra_write(entry, cassandra_found.get(id)),
                    None => false,
                };
            if own {
                report.unchanged += 1;
            }
            !own
        })
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }

    let cassandra_read_at = Utc::now();
    if read_side != Some(Side::Cassandra) {
        for (id, read) in ctx.cassandra.get_by_ids(&ids).await? {
            match read {
                Read::Document(stored) => {
                    cassandra_found.insert(id, stored);
                }
                Read::Bad(bad) => {
                    tracing::warn!("cannot sync {bad}");
                    state.fail_bad(session, &bad, ctx.now).await?;
                    report.errors += 1;
                }
            }
        }
    }
    let mut unknown = Vec::new();
    if read_side != Some(Side::Elasticsearch) {
        let hints: Vec<(Uuid, Option<String>)> = ids
            .iter()
            .map(|id| {
                let hint = cassandra_found
                    .get(id)
                    .map(|s| s.document.index.clone())
                    .or_else(|| {
                        ledger
                            .get(id)
                            .and_then(|e| e.base.as_ref())
                            .map(|b| b.index.clone())
                    });
                (*id, hint)
            })
            .collect();
        for (id, lookup) in ctx.elasticsearch.get_by_ids(&hints, ctx.now).await? {
            match lookup {
                Lookup::Found(Read::Document(stored)) => {
                    es_found.insert(id, stored);
                }
                Lookup::Found(Read::Bad(bad)) => {
                    tracing::warn!("cannot sync {bad}");
                    state.fail_bad(session, &bad, ctx.now).await?;
                    report.errors += 1;
                    unknown.push(id);
                }
                Lookup::Absent => {}
                Lookup::Unknown(reason) => {
                    // Never taken for a delete: the id waits until Elasticsearch can say.
                    let reason = format!("Elasticsearch cannot say what it holds: {reason}");
                    tracing::warn!(%id, "cannot sync yet: {reason}");
                    state
                        .fail(session, id, "elasticsearch", &reason, ctx.now)
                        .await?;
                    report.errors += 1;
                    unknown.push(id);
                }
            }
        }
    }

    let mut examined = Vec::with_capacity(ids.len());
    for id in ids {
        if unknown.contains(&id) {
            continue;
        }
        let entry = ledger.remove(&id);
        examined.push(Examined {
            id,
            elasticsearch: es_found
                .remove(&id)
                .map(|stored| observe_elasticsearch(stored, entry.as_ref(), ctx.now)),
            cassandra: cassandra_found
                .remove(&id)
                .map(|stored| observe_cassandra(stored, entry.as_ref(), ctx.now)),
            ledger: entry,
            cassandra_read_at,
        });
    }
    Ok(examined)
}

/// The documents of a page of reads by id (their ids, sorted, returned); a read that cannot be
/// synced is recorded as failed, with its reason.
async fn keep_documents<V>(
    ctx: &Context<'_>,
    state: &mut State,
    report: &mut RoundReport,
    reads: Vec<Read<V>>,
    found: &mut HashMap<Uuid, Stored<V>>,
) -> Result<Vec<Uuid>, SyncError> {
    let mut ids = Vec::with_capacity(reads.len());
    for read in reads {
        match read {
            Read::Document(stored) => {
                ids.push(stored.document.id);
                found.insert(stored.document.id, stored);
            }
            Read::Bad(bad) => {
                tracing::warn!("cannot sync {bad}");
                state
                    .fail_bad(ctx.cassandra.session(), &bad, ctx.now)
                    .await?;
                report.errors += 1;
            }
        }
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Whether an Elasticsearch version is the one essync last wrote or saw synced.
fn own_elasticsearch_write(entry: Option<&LedgerEntry>, read: Option<&Stored<EsVersion>>) -> bool {
    match (entry.and_then(LedgerEntry::confirmed), read) {
        (Some(base), Some(read)) => {
            base.digest == read.digest && base.elasticsearch.as_ref() == Some(&read.version)
        }
        _ => false,
    }
}

/// Whether a Cassandra row is the one essync last wrote or saw synced (same write time).
fn own_cassandra_write(
    entry: Option<&LedgerEntry>,
    read: Option<&Stored<CassandraVersion>>,
) -> bool {
    match (entry, read) {
        (Some(entry), Some(read)) => {
            entry
                .confirmed()
                .is_some_and(|base| base.digest == read.digest)
                && entry.holds_cassandra_write(read.version.written_at)
        }
        _ => false,
    }
}
