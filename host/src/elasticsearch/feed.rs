//! The change feed: "what changed since checkpoint C", by per-shard sequence numbers.
//!
//! Every write to an Elasticsearch shard gets the next sequence number of that shard, whatever
//! timestamp the document carries and whichever client wrote it. A checkpoint is therefore the
//! last sequence number read, per shard of every index (keyed by index uuid, so an index deleted
//! and created again starts over). Reading the changes of a shard is a range query on
//! `_seq_no`, sorted by it and paged with `search_after`, on that shard only.
//!
//! The traps of timestamp polling do not apply:
//! - a write with an old timestamp (clock skew, a slow or backdating writer) gets a new
//!   sequence number like any other;
//! - writes not yet searchable: a round reads only up to each shard's *global checkpoint*,
//!   below which every operation has been processed by every in-sync copy, and refreshes the
//!   index before reading, so everything in range is visible;
//! - writes that land while the round reads get sequence numbers above that bound and are read
//!   by the next round;
//! - equal timestamps do not matter, and every sequence number is unique within its shard, so
//!   paging is exact.
//!
//! An idle round costs one `_stats` request: shards whose global checkpoint did not move are
//! not searched at all.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use elasticsearch::http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::client::Http;
use super::convert::{EsVersion, from_hit};
use super::indices::{IndexSelection, SELECTION_PARAMS};
use super::{ElasticsearchError, index_path};
use crate::store::Read;

/// How far the change feed has read: the last sequence number read, per shard of every index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EsCheckpoint {
    /// By index uuid.
    pub indices: BTreeMap<String, IndexPosition>,
    /// The delete counters of every index when the feed last planned, by index uuid: a search
    /// cannot see a deleted document, but these say where deletes happened.
    #[serde(default)]
    pub counters: BTreeMap<String, DeleteCounters>,
}

/// What `_stats` says of one index's deletes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteCounters {
    /// The index name.
    pub name: String,
    /// Delete operations applied by its primaries (`indexing.delete_total`). The counters start
    /// again from zero when a shard is reopened (a node restart, a close and open).
    pub deletes: i64,
    /// The primary term of each shard: it moves whenever a shard's primary is assigned again,
    /// which is when the counters start again.
    pub primary_terms: Vec<i64>,
}

/// How far one index has been read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPosition {
    /// The index name (for messages; the uuid is the identity).
    pub name: String,
    /// Per shard, the last sequence number read (-1: nothing yet).
    pub shards: Vec<i64>,
}

impl EsCheckpoint {
    /// Records that shard `shard` of index `uuid` has been read up to `seq_no`.
    pub fn advance(&mut self, range: &ShardRange, seq_no: i64) {
        let position = self
            .indices
            .entry(range.index_uuid.clone())
            .or_insert_with(|| IndexPosition {
                name: range.index.clone(),
                shards: Vec::new(),
            });
        let shard = range.shard as usize;
        if position.shards.len() <= shard {
            position.shards.resize(shard + 1, -1);
        }
        position.shards[shard] = position.shards[shard].max(seq_no);
    }

    /// The number of shards tracked.
    pub fn shard_count(&self) -> usize {
        self.indices.values().map(|i| i.shards.len()).sum()
    }
}

/// A range of one shard's sequence numbers to read: `(after, up_to]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange {
    /// The index name.
    pub index: String,
    /// The index uuid.
    pub index_uuid: String,
    /// The shard number.
    pub shard: u32,
    /// Read sequence numbers above this.
    pub after: i64,
    /// ... up to and including this one (the shard's global checkpoint when planned).
    pub up_to: i64,
}

impl ShardRange {
    /// How many sequence numbers the range spans (an upper bound on the documents in it).
    pub fn span(&self) -> u64 {
        (self.up_to - self.after).max(0) as u64
    }
}

/// What a round will read.
#[derive(Debug, Clone, Default)]
pub struct ChangePlan {
    /// Ranges with something new in them.
    pub ranges: Vec<ShardRange>,
    /// The checkpoint once every range is read: every current index at its planned bound.
    /// Indices that no longer exist are gone from it.
    pub target: EsCheckpoint,
}

/// One page of a shard range.
#[derive(Debug)]
pub struct Page {
    /// What was read, in sequence-number order.
    pub reads: Vec<Read<EsVersion>>,
    /// The range has been read up to this sequence number.
    pub position: i64,
    /// Whether the range is finished.
    pub done: bool,
}

/// One shard's state, from `_stats`.
#[derive(Debug)]
struct ShardState {
    index: String,
    uuid: String,
    shard: u32,
    global_checkpoint: i64,
    deletes: i64,
    primary_term: i64,
}

/// The delete counters of every index, from its shards' states.
fn counters_of(states: &[ShardState]) -> BTreeMap<String, DeleteCounters> {
    let mut counters: BTreeMap<String, DeleteCounters> = BTreeMap::new();
    for state in states {
        let index = counters
            .entry(state.uuid.clone())
            .or_insert_with(|| DeleteCounters {
                name: state.index.clone(),
                deletes: 0,
                primary_terms: Vec::new(),
            });
        index.deletes += state.deletes;
        let shard = state.shard as usize;
        if index.primary_terms.len() <= shard {
            index.primary_terms.resize(shard + 1, 0);
        }
        index.primary_terms[shard] = state.primary_term;
    }
    counters
}

/// The current global checkpoint of every primary shard of every synced index.
async fn shard_states(
    http: &Http,
    selection: &IndexSelection,
) -> Result<Vec<ShardState>, ElasticsearchError> {
    let path = format!("/{}/_stats/docs,indexing", selection.path());
    let answer = http
        .expect_ok(
            Method::Get,
            &path,
            &[
                ("level", "shards"),
                SELECTION_PARAMS[0],
                SELECTION_PARAMS[1],
                SELECTION_PARAMS[2],
            ],
            None,
        )
        .await?;
    let mut states = Vec::new();
    let Some(indices) = answer.body.get("indices").and_then(Value::as_object) else {
        return Ok(states);
    };
    for (name, index) in indices {
        let Some(uuid) = index.get("uuid").and_then(Value::as_str) else {
            continue;
        };
        let Some(shards) = index.get("shards").and_then(Value::as_object) else {
            continue;
        };
        for (number, copies) in shards {
            let Ok(shard) = number.parse::<u32>() else {
                continue;
            };
            let primary = copies.as_array().and_then(|copies| {
                copies.iter().find(|copy| {
                    copy.pointer("/routing/primary").and_then(Value::as_bool) == Some(true)
                })
            });
            let Some(global_checkpoint) = primary
                .and_then(|p| p.pointer("/seq_no/global_checkpoint"))
                .and_then(Value::as_i64)
            else {
                tracing::warn!(index = %name, shard, "no started primary for this shard; its changes wait for the next round");
                continue;
            };
            let deletes = primary
                .and_then(|p| p.pointer("/indexing/delete_total"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let primary_term = primary
                .and_then(|p| p.pointer("/retention_leases/primary_term"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            states.push(ShardState {
                index: name.clone(),
                uuid: uuid.to_string(),
                shard,
                global_checkpoint,
                deletes,
                primary_term,
            });
        }
    }
    states.sort_by(|a, b| (&a.index, a.shard).cmp(&(&b.index, b.shard)));
    Ok(states)
}

/// Where every shard is now: the checkpoint of a sync that starts without reading what exists.
pub(crate) async fn current_positions(
    http: &Http,
    selection: &IndexSelection,
) -> Result<EsCheckpoint, ElasticsearchError> {
    let mut checkpoint = EsCheckpoint::default();
    let states = shard_states(http, selection).await?;
    checkpoint.counters = counters_of(&states);
    for state in states {
        let range = ShardRange {
            index: state.index,
            index_uuid: state.uuid,
            shard: state.shard,
            after: -1,
            up_to: state.global_checkpoint,
        };
        checkpoint.advance(&range, state.global_checkpoint);
    }
    Ok(checkpoint)
}

/// Plans the reads from `from` up to now, and refreshes the indices that have something new so
/// that all of it is searchable. Indices not in `from` are read from their start.
pub(crate) async fn plan(
    http: &Http,
    selection: &IndexSelection,
    from: &EsCheckpoint,
) -> Result<ChangePlan, ElasticsearchError> {
    let mut plan = ChangePlan::default();
    let states = shard_states(http, selection).await?;
    plan.target.counters = counters_of(&states);
    for state in states {
        let after = from
            .indices
            .get(&state.uuid)
            .and_then(|position| position.shards.get(state.shard as usize))
            .copied()
            .unwrap_or(-1);
        let range = ShardRange {
            index: state.index,
            index_uuid: state.uuid,
            shard: state.shard,
            after,
            up_to: state.global_checkpoint,
        };
        // The target keeps the later of the two: a shard never goes back.
        plan.target
            .advance(&range, after.max(state.global_checkpoint));
        if state.global_checkpoint > after {
            plan.ranges.push(range);
        }
    }
    let mut to_refresh: Vec<&str> = plan.ranges.iter().map(|r| r.index.as_str()).collect();
    to_refresh.dedup();
    // A few dozen names per request keeps the URL short.
    for names in to_refresh.chunks(40) {
        let path = format!(
            "/{}/_refresh",
            names
                .iter()
                .map(|n| index_path(n))
                .collect::<Vec<_>>()
                .join(",")
        );
        http.expect_ok(Method::Post, &path, &SELECTION_PARAMS, None)
            .await?;
    }
    Ok(plan)
}

/// Reads one page of a range, after sequence number `after`.
pub(crate) async fn read_page(
    http: &Http,
    range: &ShardRange,
    after: i64,
    size: usize,
    seen_at: DateTime<Utc>,
) -> Result<(Page, usize), ElasticsearchError> {
    let path = format!("/{}/_search", index_path(&range.index));
    let preference = format!("_shards:{}", range.shard);
    let body = json!({
        "size": size,
        "seq_no_primary_term": true,
        "track_total_hits": false,
        "query": {"range": {"_seq_no": {"gt": after, "lte": range.up_to}}},
        "sort": [{"_seq_no": "asc"}],
    });
    let answer = http
        .expect_ok(
            Method::Post,
            &path,
            &[("preference", &preference), ("ignore_unavailable", "true")],
            Some(&body),
        )
        .await?;
    let hits = answer
        .body
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut reads = Vec::with_capacity(hits.len());
    let mut position = after;
    for hit in hits {
        if let Some(seq_no) = hit.get("_seq_no").and_then(Value::as_i64) {
            position = position.max(seq_no);
        }
        reads.push(from_hit(hit, seen_at));
    }
    let done = hits.len() < size;
    if done {
        position = range.up_to;
    }
    Ok((
        Page {
            reads,
            position,
            done,
        },
        answer.bytes,
    ))
}

/// Page sizes that follow the documents' size: pages stay near a byte budget whether
/// documents are 100 bytes or 1 MB, so memory stays flat.
#[derive(Debug, Clone)]
pub(crate) struct PageSizer {
    size: usize,
    max: usize,
    budget_bytes: usize,
}

impl PageSizer {
    pub fn new(max: usize, budget_bytes: usize) -> Self {
        Self {
            size: max.clamp(1, 100),
            max: max.max(1),
            budget_bytes: budget_bytes.max(1),
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Adjusts the next page's size after a page of `count` documents and `bytes` bytes.
    pub fn observe(&mut self, count: usize, bytes: usize) {
        if count == 0 {
            return;
        }
        let per_document = (bytes / count).max(1);
        let fitting = (self.budget_bytes / per_document).max(1);
        self.size = fitting.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_follow_document_size() {
        let mut sizer = PageSizer::new(1000, 8 << 20);
        sizer.observe(100, 100 * 1_000);
        assert_eq!(sizer.size(), 1000);
        sizer.observe(100, 100 * 1_000_000);
        assert_eq!(sizer.size(), 8);
        sizer.observe(1, 50_000_000);
        assert_eq!(sizer.size(), 1);
    }

    #[test]
    fn checkpoints_never_go_back() {
        let range = ShardRange {
            index: "i".into(),
            index_uuid: "u".into(),
            shard: 2,
            after: -1,
            up_to: 9,
        };
        let mut checkpoint = EsCheckpoint::default();
        checkpoint.advance(&range, 5);
        checkpoint.advance(&range, 3);
        assert_eq!(checkpoint.indices["u"].shards, vec![-1, -1, 5]);
        assert_eq!(checkpoint.shard_count(), 3);
    }
}
