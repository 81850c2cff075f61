//! One page of the write-time sweep, read beside the ledger in the same token order:
//!
//! - a row written since the sweep's threshold is read and synced, unless its write time is
//!   the one essync's own write left (the ledger says so); in a reconciliation pass every row
//!   is synced, but for those essync wrote during that pass;
//! - an id in the ledger but no longer in the table was deleted in Cassandra;
//! - an id of an index suspected of deletes in Elasticsearch (see [`super::deletes`]) is looked
//!   up there; if it is gone, it was deleted in Elasticsearch.
//!
//! The ledger entries read beside the rows are given to the rows' batches
//! ([`KnownLedger`]), which need not read them again.

use std::collections::{BTreeMap, HashSet};

use uuid::Uuid;

use super::SyncError;
use super::batch::KnownLedger;
use super::state::LedgerEntry;
use crate::cassandra::{CassandraVersion, ScanPage, TokenPosition, TokenRange};
use crate::elasticsearch::ElasticsearchStore;
use crate::store::{Lookup, Read};

/// What a sweep page asks the round to sync.
pub(crate) struct Swept {
    /// Whole rows to sync (a reconciliation pass reads them with the page).
    pub reads: Vec<Read<CassandraVersion>>,
    /// Ids of rows written since the threshold, to read and sync.
    pub changed: Vec<Uuid>,
    /// Ids deleted in Cassandra, or gone from a suspect index of Elasticsearch.
    pub deleted: Vec<Uuid>,
    /// Rows recognised as essync's own writes of this reconciliation pass.
    pub own: u64,
    /// The ids the table holds at the page's tokens.
    pub in_table: HashSet<Uuid>,
    /// The ledger entries of the rows the page covers.
    pub known: KnownLedger,
}

/// The token range of the ledger that lies beside a page: from where the page started to just
/// before its last token (the table may hold more rows at that token, which the next page
/// reads), or to the end of the ring on the last page.
pub(crate) fn ledger_range(
    start: Option<&TokenPosition>,
    page: &ScanPage,
    range: TokenRange,
) -> (i64, i64) {
    let from = start.map(|p| p.token).unwrap_or(range.first);
    let to = match page.rows.last() {
        _ if page.done => range.last,
        Some(last) => last.token.saturating_sub(1),
        None => from.saturating_sub(1),
    };
    (from, to)
}

/// Splits a page (its rows taken) into what to sync, given the ledger entries beside it.
pub(crate) fn split(
    start: Option<&TokenPosition>,
    page: &mut ScanPage,
    ledger: Vec<(i64, LedgerEntry)>,
    to: i64,
    since: Option<i64>,
    reconciliation_started: Option<i64>,
) -> Swept {
    let in_table: HashSet<Uuid> = page
        .rows
        .iter()
        .map(|row| row.id)
        .chain(start.into_iter().flat_map(|p| p.ids.iter().copied()))
        .collect();
    let deleted: Vec<Uuid> = ledger
        .iter()
        .map(|(_, entry)| entry.id)
        .filter(|id| !in_table.contains(id))
        .collect();
    let known = KnownLedger {
        covered: page
            .rows
            .iter()
            .filter(|row| row.token <= to)
            .map(|row| row.id)
            .collect(),
        entries: ledger
            .into_iter()
            .map(|(_, entry)| (entry.id, entry))
            .collect(),
    };
    let mut swept = Swept {
        reads: Vec::new(),
        changed: Vec::new(),
        deleted,
        own: 0,
        in_table,
        known,
    };
    for row in std::mem::take(&mut page.rows) {
        let own = swept
            .known
            .entries
            .get(&row.id)
            .is_some_and(|e| e.holds_cassandra_write(row.written_at));
        match (since, row.read) {
            // A reconciliation looks at every row beside its Elasticsearch version, essync's
            // own earlier writes included: that is how it repairs whatever slipped through.
            // Rows essync wrote during this reconciliation were just decided with both sides
            // in view; a change since is the next rounds' to find, as after any write.
            (None, read) => {
                let this_pass = row
                    .written_at
                    .zip(reconciliation_started)
                    .is_some_and(|(w, s)| w >= s);
                if this_pass && own {
                    swept.own += 1;
                } else if let Some(read) = read {
                    swept.reads.push(read);
                }
            }
            (Some(since), _) => {
                if !own && row.written_at.is_some_and(|written| written >= since) {
                    swept.changed.push(row.id);
                }
            }
        }
    }
    swept
}

/// The ids of the ledger entries of suspect indices (`suspects`, by name) whose rows are
/// still in the table but whose documents Elasticsearch no longer holds: deleted there.
pub(crate) async fn gone_from_elasticsearch(
    elasticsearch: &ElasticsearchStore,
    swept: &Swept,
    suspects: &BTreeMap<String, u64>,
) -> Result<Vec<Uuid>, SyncError> {
    if suspects.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: Vec<(Uuid, Option<String>)> = swept
        .known
        .entries
        .values()
        .filter(|entry| swept.in_table.contains(&entry.id))
        .filter_map(|entry| {
            let index = &entry.base.as_ref()?.index;
            suspects
                .contains_key(index)
                .then(|| (entry.id, Some(index.clone())))
        })
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    Ok(elasticsearch
        .locate(&wanted)
        .await?
        .into_iter()
        .filter(|(_, lookup)| *lookup == Lookup::Absent)
        .map(|(id, _)| id)
        .collect())
}
