//! Gathering: for every id of a batch, its ledger entry and its version on each side. A version
//! read back exactly as essync left it (the ledger's `_seq_no`, or Cassandra write time) is
//! recognised without reading the other side: that side is unchanged, and a change on the other
//! side is its own feed's to find.
//!
//! A read that cannot be synced (bad data), and an id Elasticsearch cannot answer for, go no
//! further: they are left to the settlement as failures.

use chrono::Utc;
use uuid::Uuid;

use super::attribute::{observe_cassandra, observe_elasticsearch};
use super::{Context, Examined, KnownLedger, Source};
use crate::cassandra::CassandraVersion;
use crate::elasticsearch::EsVersion;
use crate::store::{Lookup, Read, Side, Stored};
use crate::sync::SyncError;
use crate::sync::report::RoundReport;
use crate::sync::state::{Failure, LedgerEntry, Settlement, State};

/// One id while it is gathered.
struct Gathering {
    id: Uuid,
    ledger: Option<LedgerEntry>,
    elasticsearch: Option<Stored<EsVersion>>,
    cassandra: Option<Stored<CassandraVersion>>,
}

/// Every id of the batch that needs a decision, with all a decision needs.
pub(crate) async fn gather(
    ctx: &Context<'_>,
    state: &State,
    source: Source,
    report: &mut RoundReport,
    settlement: &mut Settlement,
) -> Result<Vec<Examined>, SyncError> {
    let read_side = source.side();
    let recognise_own = source.recognises_own();
    let (mut items, known_ledger) = from_source(source, report, settlement);
    if items.is_empty() {
        return Ok(Vec::new());
    }
    attach_ledger(state, &mut items, known_ledger).await?;
    if recognise_own {
        items.retain(|item| {
            let own = match read_side {
                Some(Side::Elasticsearch) => own_elasticsearch_write(item),
                Some(Side::Cassandra) => own_cassandra_write(item),
                None => false,
            };
            report.unchanged += u64::from(own);
            !own
        });
    }
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let cassandra_read_at = Utc::now();
    if read_side != Some(Side::Cassandra) {
        read_cassandra(ctx, &mut items, report, settlement).await?;
    }
    if read_side != Some(Side::Elasticsearch) {
        read_elasticsearch(ctx, &mut items, report, settlement).await?;
    }
    Ok(items
        .into_iter()
        .map(|item| Examined {
            id: item.id,
            elasticsearch: item
                .elasticsearch
                .map(|stored| observe_elasticsearch(stored, item.ledger.as_ref(), ctx.now)),
            cassandra: item
                .cassandra
                .map(|stored| observe_cassandra(stored, item.ledger.as_ref(), ctx.now)),
            ledger: item.ledger,
            cassandra_read_at,
        })
        .collect())
}

/// `items` sorted by id, each id once: a page may read an id twice (a document changed while
/// it was paged), and the last read wins. The positions are sorted, not the items (each is
/// large, and a sort moves them many times): every item moves once.
fn sorted_by_id(items: Vec<Gathering>) -> Vec<Gathering> {
    let mut order: Vec<(Uuid, usize)> = items
        .iter()
        .enumerate()
        .map(|(at, item)| (item.id, at))
        .collect();
    order.sort_unstable();
    // Each id's last position: `kept` is the entry kept before `later`.
    order.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            *kept = *later;
        }
        same
    });
    let mut slots: Vec<Option<Gathering>> = items.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(_, at)| slots.get_mut(at).and_then(Option::take))
        .collect()
}

/// The ids of the source, each with the version read (a read that cannot be synced is a
/// failure), sorted by id, and the ledger entries the source already read, if it did.
fn from_source(
    source: Source,
    report: &mut RoundReport,
    settlement: &mut Settlement,
) -> (Vec<Gathering>, Option<KnownLedger>) {
    let mut items: Vec<Gathering> = Vec::new();
    let mut bad = |bad: crate::store::BadDocument| {
        tracing::warn!("cannot sync {bad}");
        settlement.failures.push(Failure::bad(&bad));
        report.errors += 1;
    };
    let empty = |id| Gathering {
        id,
        ledger: None,
        elasticsearch: None,
        cassandra: None,
    };
    let known = match source {
        Source::Elasticsearch(reads) => {
            for read in reads {
                match read {
                    Read::Document(stored) => items.push(Gathering {
                        elasticsearch: Some(stored),
                        ..empty(Uuid::nil())
                    }),
                    Read::Bad(b) => bad(b),
                }
            }
            None
        }
        Source::Cassandra { reads, ledger, .. } => {
            for read in reads {
                match read {
                    Read::Document(stored) => items.push(Gathering {
                        cassandra: Some(stored),
                        ..empty(Uuid::nil())
                    }),
                    Read::Bad(b) => bad(b),
                }
            }
            ledger
        }
        Source::Ids(ids) => {
            items.extend(ids.into_iter().map(empty));
            None
        }
    };
    for item in &mut items {
        if let Some(id) = item
            .elasticsearch
            .as_ref()
            .map(|s| s.document.id)
            .or_else(|| item.cassandra.as_ref().map(|s| s.document.id))
        {
            item.id = id;
        }
    }
    (sorted_by_id(items), known)
}

/// Each item's ledger entry: from the entries the source read beside it (the sweep reads the
/// ledger's token range with the table's), or read by id for the ids it does not cover.
async fn attach_ledger(
    state: &State,
    items: &mut [Gathering],
    known: Option<KnownLedger>,
) -> Result<(), SyncError> {
    let known = known.unwrap_or_default();
    let unknown: Vec<Uuid> = items
        .iter()
        .map(|item| item.id)
        .filter(|id| !known.covered.contains(id))
        .collect();
    let mut entries = known.entries;
    if !unknown.is_empty() {
        entries.extend(state.ledger(&unknown).await?);
    }
    for item in items {
        item.ledger = entries.remove(&item.id);
    }
    Ok(())
}

/// The Cassandra rows of the items.
async fn read_cassandra(
    ctx: &Context<'_>,
    items: &mut Vec<Gathering>,
    report: &mut RoundReport,
    settlement: &mut Settlement,
) -> Result<(), SyncError> {
    let ids: Vec<Uuid> = items.iter().map(|item| item.id).collect();
    let mut found = ctx.cassandra.get_by_ids(&ids).await?;
    items.retain_mut(|item| match found.remove(&item.id) {
        None => true,
        Some(Read::Document(stored)) => {
            item.cassandra = Some(stored);
            true
        }
        Some(Read::Bad(bad)) => {
            tracing::warn!("cannot sync {bad}");
            settlement.failures.push(Failure::bad(&bad));
            report.errors += 1;
            false
        }
    });
    Ok(())
}

/// The Elasticsearch documents of the items, each looked up where its Cassandra row or its
/// ledger entry says it is. An id Elasticsearch cannot answer for is never taken for a delete:
/// it waits, recorded as failed, until Elasticsearch can say.
async fn read_elasticsearch(
    ctx: &Context<'_>,
    items: &mut Vec<Gathering>,
    report: &mut RoundReport,
    settlement: &mut Settlement,
) -> Result<(), SyncError> {
    let hints: Vec<(Uuid, Option<String>)> = items
        .iter()
        .map(|item| {
            let hint = item
                .cassandra
                .as_ref()
                .map(|s| s.document.index.clone())
                .or_else(|| {
                    let base = item.ledger.as_ref()?.base.as_ref()?;
                    Some(base.index.clone())
                });
            (item.id, hint)
        })
        .collect();
    let mut found = ctx.elasticsearch.get_by_ids(&hints, ctx.now).await?;
    items.retain_mut(|item| match found.remove(&item.id) {
        None | Some(Lookup::Absent) => true,
        Some(Lookup::Found(Read::Document(stored))) => {
            item.elasticsearch = Some(stored);
            true
        }
        Some(Lookup::Found(Read::Bad(bad))) => {
            tracing::warn!("cannot sync {bad}");
            settlement.failures.push(Failure::bad(&bad));
            report.errors += 1;
            false
        }
        Some(Lookup::Unknown(reason)) => {
            let reason = format!("Elasticsearch cannot say what it holds: {reason}");
            tracing::warn!(id = %item.id, "cannot sync yet: {reason}");
            settlement
                .failures
                .push(Failure::of(item.id, "elasticsearch", reason));
            report.errors += 1;
            false
        }
    });
    Ok(())
}

/// Whether an Elasticsearch version is the one essync last wrote or saw synced.
fn own_elasticsearch_write(item: &Gathering) -> bool {
    match (
        item.ledger.as_ref().and_then(LedgerEntry::confirmed),
        &item.elasticsearch,
    ) {
        (Some(base), Some(read)) => {
            base.digest == read.digest && base.elasticsearch.as_ref() == Some(&read.version)
        }
        _ => false,
    }
}

/// Whether a Cassandra row is the one essync last wrote or saw synced (same write time).
fn own_cassandra_write(item: &Gathering) -> bool {
    match (&item.ledger, &item.cassandra) {
        (Some(entry), Some(read)) => {
            entry
                .confirmed()
                .is_some_and(|base| base.digest == read.digest)
                && entry.holds_cassandra_write(read.version.written_at)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Document;
    use serde_json::json;

    /// A read of `id` from Elasticsearch, told apart by `n`.
    fn read(id: u128, n: i64) -> Gathering {
        let document = Document::with_id(Uuid::from_u128(id), "books", "book", json!({ "n": n }));
        Gathering {
            id: document.id,
            ledger: None,
            elasticsearch: Some(crate::sync::batch::read_from_elasticsearch(document)),
            cassandra: None,
        }
    }

    fn n(item: &Gathering) -> Option<i64> {
        let stored = item.elasticsearch.as_ref()?;
        stored.document.content.value()["n"].as_i64()
    }

    #[test]
    fn items_come_sorted_by_id_each_once_with_its_last_read() {
        let items = vec![
            read(3, 1),
            read(1, 2),
            read(3, 3),
            read(2, 4),
            read(1, 5),
            read(3, 6),
        ];
        let sorted = sorted_by_id(items);
        let seen: Vec<(u128, Option<i64>)> = sorted
            .iter()
            .map(|item| (item.id.as_u128(), n(item)))
            .collect();
        assert_eq!(seen, vec![(1, Some(5)), (2, Some(4)), (3, Some(6))]);
        assert!(sorted_by_id(Vec::new()).is_empty());
    }
}
