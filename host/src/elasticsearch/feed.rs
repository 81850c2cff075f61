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
//!
//! A part of the cluster that cannot be read fails only itself. A closed index, a shard with
//! no started primary, a page the shard refuses even at one document, an index essync does not
//! sync (see [`super::schema`]): each is skipped and reported ([`FeedFailure`]), its position
//! kept in the checkpoint, so it is read from there once it can be; the rest goes on. Only an
//! index that was deleted leaves the checkpoint. A search that did not reach its shard in full
//! never counts as an empty range.
//!
//! Pages are sized by bytes: from what the index's documents weighed in the answers this process
//! read (the first page of an index it never read holds one document: what an index holds on
//! disk says little, compressed as it is), never above the index's result window, and halved
//! when a circuit breaker or the result window refuses one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use elasticsearch::http::Method;
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::{Http, Reply};
use super::convert::{EsVersion, from_hit};
use super::indices::{IndexSelection, SELECTION_PARAMS};
use super::response::{
    METADATA_FILTER, MetadataAnswer, PageRefusal, STATS_FILTER, SearchAnswer, ShardState,
    StatsAnswer, index_states, refusal, shard_page,
};
use super::schema::{Decision, Indices};
use super::{ElasticsearchError, ElasticsearchStore, index_path};
use crate::store::{ChangePage, FeedFailure, Read};

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

    /// Keeps shard `range.shard` of index `range.index_uuid` exactly at `seq_no`: a part of the
    /// feed that was not read (further) this time.
    pub fn hold(&mut self, range: &ShardRange, seq_no: i64) {
        self.advance(range, seq_no);
        if let Some(position) = self.indices.get_mut(&range.index_uuid)
            && let Some(slot) = position.shards.get_mut(range.shard as usize)
        {
            *slot = seq_no;
        }
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
    /// The most documents one page of this index may hold (its result window).
    pub window: usize,
}

/// What a round will read.
#[derive(Debug, Clone, Default)]
pub struct ChangePlan {
    /// Ranges with something new in them.
    pub ranges: Vec<ShardRange>,
    /// The checkpoint once every range is read: every current index at its planned bound.
    /// Indices that no longer exist are gone from it; the positions of the parts that cannot be
    /// read now are kept as they were.
    pub target: EsCheckpoint,
    /// The parts that cannot be read now, and why.
    pub failed: Vec<FeedFailure>,
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

/// Whether every operation an index holds beyond the feed's positions is one of essync's own
/// writes, so that there is nothing to read: `shards` are the index's started primaries now,
/// `from` the checkpoint (positions, and the primary terms of the last plan), `own` the
/// operations essync applied to the index since the last plan (writes and deletes whose answer
/// said they applied, each of which took one sequence number).
///
/// Sequence numbers are dense: the operations in a shard's range are exactly `global
/// checkpoint - position`. Each of essync's operations since the last plan is in one of the
/// ranges: it took its number after that plan read the bounds, and it was processed before this
/// one (no operation is in flight: every shard's highest number is its global checkpoint). So
/// the ranges hold `own` operations plus any other writer's, and equal counts mean none. Every
/// doubt counts as "read it": a shard missing, moved (another primary term), not known to the
/// checkpoint or with operations in flight; an operation essync is not sure applied is not in
/// `own`, which can only make the ranges hold more.
pub(crate) fn only_own_operations(shards: &[&ShardState], from: &EsCheckpoint, own: i64) -> bool {
    let Some(first) = shards.first() else {
        return false;
    };
    let (Some(position), Some(counters)) = (
        from.indices.get(&first.uuid),
        from.counters.get(&first.uuid),
    ) else {
        return false;
    };
    if own <= 0 || shards.len() != position.shards.len() {
        return false;
    }
    let mut span = 0i64;
    for (n, shard) in shards.iter().enumerate() {
        let after = position.shards[n];
        if shard.shard as usize != n
            || shard.uuid != first.uuid
            || shard.max_seq_no != shard.global_checkpoint
            || counters.primary_terms.get(n) != Some(&shard.primary_term)
            || shard.global_checkpoint < after
        {
            return false;
        }
        span += shard.global_checkpoint - after;
    }
    span == own
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

/// The started primary of every shard of every synced (open) index.
async fn shard_states(
    http: &Http,
    selection: &IndexSelection,
) -> Result<Vec<ShardState>, ElasticsearchError> {
    let path = format!("/{}/_stats/docs,indexing,store", selection.path());
    let answer: StatsAnswer = http
        .expect(
            Method::Get,
            &path,
            &[
                ("level", "shards"),
                SELECTION_PARAMS[0],
                SELECTION_PARAMS[1],
                SELECTION_PARAMS[2],
                ("filter_path", STATS_FILTER),
            ],
            None,
        )
        .await?;
    Ok(super::response::shard_states(answer))
}

/// Where a whole index is, in failures and held positions.
pub(crate) fn index_location(index: &str) -> String {
    index.to_string()
}

/// Where one shard is, in failures and held positions.
pub(crate) fn shard_location(index: &str, shard: u32) -> String {
    format!("{index}, shard {shard}")
}

/// Whether a shard is held back (its index, or the shard itself).
fn is_held(held: &BTreeSet<String>, index: &str, shard: u32) -> bool {
    held.contains(&index_location(index)) || held.contains(&shard_location(index, shard))
}

/// Whether each of `names` exists, by uuid, and whether it is open.
async fn index_metadata(
    http: &Http,
    names: &[&str],
) -> Result<BTreeMap<String, (String, bool)>, ElasticsearchError> {
    let mut states = BTreeMap::new();
    for chunk in names.chunks(40) {
        let path = format!(
            "/_cluster/state/metadata/{}",
            chunk
                .iter()
                .map(|n| index_path(n))
                .collect::<Vec<_>>()
                .join(",")
        );
        let answer: MetadataAnswer = http
            .expect(
                Method::Get,
                &path,
                &[
                    ("ignore_unavailable", "true"),
                    ("allow_no_indices", "true"),
                    ("expand_wildcards", "open,closed"),
                    ("filter_path", METADATA_FILTER),
                ],
                None,
            )
            .await?;
        states.extend(index_states(answer));
    }
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
            window: usize::MAX,
        };
        checkpoint.advance(&range, state.global_checkpoint);
    }
    Ok(checkpoint)
}

/// Plans the reads from `from` up to now, and refreshes the indices that have something new so
/// that all of it is searchable. Indices not in `from` are read from their start. The parts in
/// `held` (locations of failures waiting for their next attempt) are not read; neither are the
/// parts that cannot be read now (reported in the plan): their positions are kept.
pub(crate) async fn plan(
    http: &Http,
    indices: &Indices,
    selection: &IndexSelection,
    from: &EsCheckpoint,
    held: &BTreeSet<String>,
    own_writes: &BTreeMap<String, i64>,
) -> Result<ChangePlan, ElasticsearchError> {
    let mut plan = ChangePlan::default();
    let states = shard_states(http, selection).await?;
    plan.target.counters = counters_of(&states);
    let mut news: Vec<&str> = states
        .iter()
        .filter(|s| s.global_checkpoint > position(from, &s.uuid, s.shard))
        .map(|s| s.index.as_str())
        .collect();
    news.dedup();
    let decisions = indices.decide(http, &news).await?;
    let mut by_index: BTreeMap<&str, Vec<&ShardState>> = BTreeMap::new();
    for state in &states {
        by_index.entry(state.uuid.as_str()).or_default().push(state);
    }
    let mut planner = Planner {
        from,
        held,
        own_writes,
        by_index,
        plan: &mut plan,
        refused: BTreeSet::new(),
        own_only: BTreeSet::new(),
    };
    for state in &states {
        planner.shard(state, decisions.get(&state.index));
    }
    hold_unreported(http, from, held, &states, &mut plan).await?;
    refresh_ranges(http, &mut plan).await?;
    Ok(plan)
}

/// Where `from` left a shard (-1: nothing read yet).
fn position(from: &EsCheckpoint, uuid: &str, shard: u32) -> i64 {
    from.indices
        .get(uuid)
        .and_then(|position| position.shards.get(shard as usize))
        .copied()
        .unwrap_or(-1)
}

/// Plans shard by shard.
struct Planner<'p> {
    from: &'p EsCheckpoint,
    held: &'p BTreeSet<String>,
    own_writes: &'p BTreeMap<String, i64>,
    /// The shards of each index, by its uuid.
    by_index: BTreeMap<&'p str, Vec<&'p ShardState>>,
    plan: &'p mut ChangePlan,
    /// Indices essync does not sync, reported once each.
    refused: BTreeSet<String>,
    /// Indices that hold only essync's own writes since the last plan, logged once each.
    own_only: BTreeSet<String>,
}

impl Planner<'_> {
    /// What to do with one shard: hold it (held back, or its index refused), skip it (nothing
    /// new, or only essync's own writes), or read its new range.
    fn shard(&mut self, state: &ShardState, decision: Option<&Decision>) {
        let after = position(self.from, &state.uuid, state.shard);
        let range = ShardRange {
            index: state.index.clone(),
            index_uuid: state.uuid.clone(),
            shard: state.shard,
            after,
            up_to: state.global_checkpoint,
            window: decision.map(Decision::window).unwrap_or(usize::MAX),
        };
        if is_held(self.held, &state.index, state.shard) {
            self.plan.target.hold(&range, after);
            return;
        }
        if state.global_checkpoint > after
            && let Some(reason) = decision.and_then(Decision::refusal)
        {
            if self.refused.insert(state.index.clone()) {
                self.plan.failed.push(FeedFailure {
                    location: index_location(&state.index),
                    reason: reason.to_string(),
                });
            }
            self.plan.target.hold(&range, after);
            return;
        }
        // The target keeps the later of the two: a shard never goes back.
        self.plan
            .target
            .advance(&range, after.max(state.global_checkpoint));
        if state.global_checkpoint <= after || self.only_own(state, decision) {
            return;
        }
        self.plan.ranges.push(range);
    }

    /// Whether the shard's index holds only essync's own writes since the last plan (and
    /// Elasticsearch keeps them as written): it is not read back.
    fn only_own(&mut self, state: &ShardState, decision: Option<&Decision>) -> bool {
        let kept = decision.is_some_and(|d| d.refusal().is_none() && !d.may_rewrite());
        let own = self.own_writes.get(&state.index).copied().unwrap_or(0);
        let shards = self.by_index.get(state.uuid.as_str());
        if !kept || !shards.is_some_and(|shards| only_own_operations(shards, self.from, own)) {
            return false;
        }
        if self.own_only.insert(state.index.clone()) {
            tracing::debug!(
                "{}: its {own} operation(s) since the last round are all essync's own writes; not read back",
                state.index
            );
        }
        true
    }
}

/// What the stats left out keeps its position: shards with no started primary, and indices
/// that are closed or have no shard available. Only a deleted index is forgotten.
async fn hold_unreported(
    http: &Http,
    from: &EsCheckpoint,
    held: &BTreeSet<String>,
    states: &[ShardState],
    plan: &mut ChangePlan,
) -> Result<(), ElasticsearchError> {
    let reported: BTreeSet<(&str, u32)> =
        states.iter().map(|s| (s.uuid.as_str(), s.shard)).collect();
    let listed: BTreeSet<&str> = states.iter().map(|s| s.uuid.as_str()).collect();
    let mut absent = Vec::new();
    for (uuid, position) in &from.indices {
        if !listed.contains(uuid.as_str()) {
            absent.push((uuid, position));
            continue;
        }
        for (shard, &seq_no) in position.shards.iter().enumerate() {
            let shard = shard as u32;
            if reported.contains(&(uuid.as_str(), shard)) {
                continue;
            }
            plan.target
                .hold(&held_range(uuid, &position.name, shard, seq_no), seq_no);
            if !is_held(held, &position.name, shard) {
                plan.failed.push(FeedFailure {
                    location: shard_location(&position.name, shard),
                    reason: "the shard has no started primary (it is unavailable)".to_string(),
                });
            }
        }
    }
    if absent.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = absent.iter().map(|(_, p)| p.name.as_str()).collect();
    let existing = index_metadata(http, &names).await?;
    for (uuid, position) in absent {
        let Some((name, open)) = existing.get(uuid) else {
            continue;
        };
        for (shard, &seq_no) in position.shards.iter().enumerate() {
            plan.target
                .hold(&held_range(uuid, name, shard as u32, seq_no), seq_no);
        }
        if !held.contains(&index_location(name)) {
            plan.failed.push(FeedFailure {
                location: index_location(name),
                reason: if *open {
                    "no shard of the index is available (it is red)".to_string()
                } else {
                    "the index is closed".to_string()
                },
            });
        }
    }
    Ok(())
}

/// Everything in range must be searchable before it is read: a range of an index whose refresh
/// did not reach every shard is not read this time.
async fn refresh_ranges(http: &Http, plan: &mut ChangePlan) -> Result<(), ElasticsearchError> {
    let mut to_refresh: Vec<String> = plan.ranges.iter().map(|r| r.index.clone()).collect();
    to_refresh.dedup();
    let mut unrefreshed: BTreeMap<String, String> = BTreeMap::new();
    for names in to_refresh.chunks(40) {
        if let Err(reason) = refresh(http, names).await? {
            for name in names {
                if let Err(reason) = refresh(http, std::slice::from_ref(name)).await? {
                    unrefreshed.insert(name.clone(), reason);
                }
            }
            if names.len() == 1 {
                unrefreshed.insert(names[0].clone(), reason);
            }
        }
    }
    if unrefreshed.is_empty() {
        return Ok(());
    }
    for range in std::mem::take(&mut plan.ranges) {
        match unrefreshed.get(&range.index) {
            Some(reason) => {
                plan.target.hold(&range, range.after);
                plan.failed.push(FeedFailure {
                    location: shard_location(&range.index, range.shard),
                    reason: format!("the index could not be refreshed: {reason}"),
                });
            }
            None => plan.ranges.push(range),
        }
    }
    Ok(())
}

/// The range of a held position (for [`EsCheckpoint::hold`]).
fn held_range(uuid: &str, name: &str, shard: u32, seq_no: i64) -> ShardRange {
    ShardRange {
        index: name.to_string(),
        index_uuid: uuid.to_string(),
        shard,
        after: seq_no,
        up_to: seq_no,
        window: usize::MAX,
    }
}

/// How long a refresh may take: one that waits on a shard with no started primary must not
/// hold up the round.
pub(crate) const REFRESH_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Refreshes indices; `Err` when some shard of them did not refresh (in time).
async fn refresh(http: &Http, names: &[String]) -> Result<Result<(), String>, ElasticsearchError> {
    let path = format!(
        "/{}/_refresh",
        names
            .iter()
            .map(|n| index_path(n))
            .collect::<Vec<_>>()
            .join(",")
    );
    http.refresh(&path, &SELECTION_PARAMS, REFRESH_WITHIN).await
}

/// Reads one page of a range, after sequence number `after`, with its size in bytes; or why
/// the shard did not give it.
pub(crate) async fn read_page(
    http: &Http,
    range: &ShardRange,
    after: i64,
    size: usize,
    seen_at: DateTime<Utc>,
) -> Result<Result<(Page, usize), PageRefusal>, ElasticsearchError> {
    let path = format!("/{}/_search", index_path(&range.index));
    let preference = format!("_shards:{}", range.shard);
    let body = json!({
        "size": size,
        "seq_no_primary_term": true,
        "track_total_hits": false,
        "query": {"range": {"_seq_no": {"gt": after, "lte": range.up_to}}},
        "sort": [{"_seq_no": "asc"}],
    });
    let (answer, bytes) = match http
        .request::<SearchAnswer>(
            Method::Post,
            &path,
            &[("preference", &preference), ("ignore_unavailable", "true")],
            Some(&body),
        )
        .await?
    {
        Reply::Refused { error, .. } => return Ok(Err(refusal(&error))),
        Reply::Ok { value, bytes } => (value, bytes),
    };
    let hits = match shard_page(answer) {
        Ok(hits) => hits,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let done = hits.len() < size;
    let mut position = after;
    for hit in &hits {
        if let Some(seq_no) = hit.seq_no {
            position = position.max(seq_no);
        }
    }
    // Documents and their digests are made on a blocking thread, beside the page being synced.
    let reads = tokio::task::spawn_blocking(move || {
        hits.into_iter()
            .map(|hit| from_hit(hit, seen_at))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ElasticsearchError::Protocol {
        request: format!("POST {path}"),
        reason: format!("the page could not be read: {e}"),
    })?;
    if done {
        position = range.up_to;
    }
    Ok(Ok((
        Page {
            reads,
            position,
            done,
        },
        bytes,
    )))
}

/// The change feed of one round: the plan, then each planned shard range page by page. A part
/// that cannot be read is given up for this round with its position kept, and reported in the
/// next page's `failed`.
pub(crate) struct ChangeFeed<'a> {
    store: &'a ElasticsearchStore,
    seen_at: DateTime<Utc>,
    checkpoint: EsCheckpoint,
    plan: Option<ChangePlan>,
    ranges: std::vec::IntoIter<ShardRange>,
    current: Option<(ShardRange, i64)>,
    sizers: HashMap<String, PageSizer>,
    /// Failures not reported in a page yet.
    failed: Vec<FeedFailure>,
    /// Ranges given up this round, and how far they were read.
    given_up: Vec<(ShardRange, i64)>,
    held: BTreeSet<String>,
    own_writes: BTreeMap<String, i64>,
    finished: bool,
}

impl<'a> ChangeFeed<'a> {
    /// The feed from `from`, leaving the parts in `held` unread, `own_writes` being the
    /// operations essync applied by index since `from` was planned.
    pub fn new(
        store: &'a ElasticsearchStore,
        from: &EsCheckpoint,
        seen_at: DateTime<Utc>,
        held: BTreeSet<String>,
        own_writes: BTreeMap<String, i64>,
    ) -> Self {
        Self {
            store,
            seen_at,
            checkpoint: from.clone(),
            plan: None,
            ranges: Vec::new().into_iter(),
            current: None,
            sizers: HashMap::new(),
            failed: Vec::new(),
            given_up: Vec::new(),
            held,
            own_writes,
            finished: false,
        }
    }

    /// The pages, as a stream; the last one (possibly empty) carries the plan's checkpoint.
    pub fn pages(
        self,
    ) -> impl Stream<Item = Result<ChangePage<EsVersion, EsCheckpoint>, ElasticsearchError>> + 'a
    {
        futures::stream::unfold(self, |mut feed| async move {
            let page = feed.next_page().await?;
            Some((page, feed))
        })
    }

    async fn next_page(
        &mut self,
    ) -> Option<Result<ChangePage<EsVersion, EsCheckpoint>, ElasticsearchError>> {
        if self.finished {
            return None;
        }
        let read = async {
            if self.plan.is_none() {
                self.plan_round().await?;
            }
            loop {
                let Some((range, after)) = self.next_range() else {
                    return Ok(self.last_page());
                };
                if let Some(page) = self.read(range, after).await? {
                    return Ok(page);
                }
            }
        };
        let page = read.await;
        self.finished |= page.is_err();
        Some(page)
    }

    /// Plans the round's reads.
    async fn plan_round(&mut self) -> Result<(), ElasticsearchError> {
        let store = self.store;
        let plan = plan(
            &store.http,
            &store.indices,
            &store.config.indices,
            &self.checkpoint,
            &self.held,
            &self.own_writes,
        )
        .await?;
        self.checkpoint.counters = plan.target.counters.clone();
        self.ranges = plan.ranges.clone().into_iter();
        self.failed.extend(plan.failed.iter().cloned());
        self.plan = Some(plan);
        Ok(())
    }

    /// The range to read next, and where in it.
    fn next_range(&mut self) -> Option<(ShardRange, i64)> {
        self.current.take().or_else(|| {
            let range = self.ranges.next()?;
            let after = range.after;
            Some((range, after))
        })
    }

    /// The last page: no reads, the checkpoint of the whole plan (with what was given up held
    /// where it was).
    fn last_page(&mut self) -> ChangePage<EsVersion, EsCheckpoint> {
        self.finished = true;
        let mut checkpoint = self
            .plan
            .as_ref()
            .map(|p| p.target.clone())
            .unwrap_or_else(|| self.checkpoint.clone());
        for (range, position) in &self.given_up {
            checkpoint.hold(range, *position);
        }
        ChangePage {
            reads: Vec::new(),
            checkpoint,
            failed: std::mem::take(&mut self.failed),
        }
    }

    /// Reads the next page of `range` after `after`: the page, or `None` when the range
    /// refused it (it is then read again in smaller pages, or given up).
    async fn read(
        &mut self,
        range: ShardRange,
        after: i64,
    ) -> Result<Option<ChangePage<EsVersion, EsCheckpoint>>, ElasticsearchError> {
        let store = self.store;
        let sizer = self.sizers.entry(range.index.clone()).or_insert_with(|| {
            let weight = store
                .weights
                .lock()
                .ok()
                .and_then(|w| w.get(&range.index).copied());
            PageSizer::new(
                store.config.page_size,
                store.config.page_bytes,
                range.window,
                weight,
            )
        });
        let (page, bytes) =
            match read_page(&store.http, &range, after, sizer.size(), self.seen_at).await? {
                Ok(read) => read,
                Err(refusal) => {
                    self.refused(range, after, refusal);
                    return Ok(None);
                }
            };
        if let Some(weight) = sizer.observe(page.reads.len(), bytes)
            && let Ok(mut weights) = store.weights.lock()
        {
            weights.insert(range.index.clone(), weight);
        }
        self.checkpoint.advance(&range, page.position);
        if !page.done {
            self.current = Some((range, page.position));
        }
        let reads = store.flag_copies(page.reads).await?;
        Ok(Some(ChangePage {
            reads,
            checkpoint: self.checkpoint.clone(),
            failed: std::mem::take(&mut self.failed),
        }))
    }

    /// A range that refused a page: read again in a page half as large, or given up for the
    /// round (its position kept) when even one document is refused or the shard cannot be read.
    fn refused(&mut self, range: ShardRange, after: i64, refusal: PageRefusal) {
        let shrunk = match self.sizers.get_mut(&range.index) {
            Some(sizer) if matches!(refusal, PageRefusal::TooLarge(_)) => {
                sizer.shrink().then(|| sizer.size())
            }
            _ => None,
        };
        match refusal {
            PageRefusal::TooLarge(reason) => match shrunk {
                Some(size) => {
                    tracing::debug!(
                        index = %range.index,
                        shard = range.shard,
                        "page refused ({reason}); asking for {size} documents",
                    );
                    self.current = Some((range, after));
                }
                None => {
                    self.failed.push(FeedFailure {
                        location: shard_location(&range.index, range.shard),
                        reason: format!("even a page of one document is refused: {reason}"),
                    });
                    self.given_up.push((range, after));
                }
            },
            // Deleted since the plan: nothing left to read there.
            PageRefusal::Gone => {}
            PageRefusal::Unavailable(reason) => {
                self.failed.push(FeedFailure {
                    location: shard_location(&range.index, range.shard),
                    reason,
                });
                self.given_up.push((range, after));
            }
        }
    }
}

/// Page sizes that follow the documents' size: pages stay near a byte budget whether
/// documents are 100 bytes or 10 MB, so memory stays flat, and never exceed what the index
/// accepts.
#[derive(Debug, Clone)]
pub(crate) struct PageSizer {
    size: usize,
    /// The most documents a page may hold: the configured maximum, the index's result window,
    /// or less after a refusal.
    cap: usize,
    budget_bytes: usize,
}

impl PageSizer {
    /// A sizer for pages of at most `max` documents and about `budget_bytes`, in an index
    /// whose result window is `window` and whose documents weighed `weight` bytes each in the
    /// answers read last (`None`: none read yet).
    pub fn new(max: usize, budget_bytes: usize, window: usize, weight: Option<usize>) -> Self {
        let cap = max.min(window).max(1);
        let budget_bytes = budget_bytes.max(1);
        // Of an index whose documents' size is not known yet, the first page holds one
        // document, and the next ones follow from what it weighed.
        let first = weight.map_or(1, |weight| budget_bytes / weight.max(1));
        Self {
            size: first.clamp(1, cap),
            cap,
            budget_bytes,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Adjusts the next page's size after a page of `count` documents and `bytes` bytes;
    /// returns what one document weighed (`None` for an empty page).
    pub fn observe(&mut self, count: usize, bytes: usize) -> Option<usize> {
        if count == 0 {
            return None;
        }
        let per_document = (bytes / count).max(1);
        let fitting = (self.budget_bytes / per_document).max(1);
        self.size = fitting.min(self.cap);
        Some(per_document)
    }

    /// Halves the page after a refusal (and keeps later pages at most that big). Returns
    /// false when the page was one document already.
    pub fn shrink(&mut self) -> bool {
        if self.size <= 1 {
            return false;
        }
        self.size /= 2;
        self.cap = self.size;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two shards now at global checkpoints `at`, the checkpoint at positions `from` with the
    /// primary terms of the last plan.
    fn index(at: [i64; 2], from: [i64; 2]) -> (Vec<ShardState>, EsCheckpoint) {
        let shards = (0..2)
            .map(|n| ShardState {
                index: "books".into(),
                uuid: "u1".into(),
                shard: n as u32,
                global_checkpoint: at[n],
                max_seq_no: at[n],
                deletes: 0,
                primary_term: 1,
                documents: 0,
                bytes: 0,
            })
            .collect();
        let mut checkpoint = EsCheckpoint::default();
        checkpoint.indices.insert(
            "u1".into(),
            IndexPosition {
                name: "books".into(),
                shards: from.to_vec(),
            },
        );
        checkpoint.counters.insert(
            "u1".into(),
            DeleteCounters {
                name: "books".into(),
                deletes: 0,
                primary_terms: vec![1, 1],
            },
        );
        (shards, checkpoint)
    }

    fn only_own(shards: &[ShardState], from: &EsCheckpoint, own: i64) -> bool {
        let shards: Vec<&ShardState> = shards.iter().collect();
        only_own_operations(&shards, from, own)
    }

    #[test]
    fn an_index_is_not_read_back_only_when_it_holds_essyncs_operations_and_no_others() {
        // 3 + 2 operations since the positions, and essync applied 5: nothing else to read.
        let (shards, from) = index([13, 7], [10, 5]);
        assert!(only_own(&shards, &from, 5));
        // One more operation than essync's: someone else wrote.
        assert!(!only_own(&shards, &from, 4));
        // Fewer than essync's: something is off (a shard lags, a count is wrong): read.
        assert!(!only_own(&shards, &from, 6));
        // Nothing of essync's: read whatever is there.
        assert!(!only_own(&shards, &from, 0));
    }

    #[test]
    fn every_doubt_means_reading() {
        let (shards, from) = index([13, 7], [10, 5]);
        // An operation in flight on a shard.
        let mut busy = shards.clone();
        busy[1].max_seq_no = 8;
        assert!(!only_own(&busy, &from, 5));
        // A shard missing from the stats (no started primary).
        assert!(!only_own(&shards[..1], &from, 3));
        // A new primary since the last plan.
        let mut moved = shards.clone();
        moved[0].primary_term = 2;
        assert!(!only_own(&moved, &from, 5));
        // An index the checkpoint does not know (or knows under another uuid).
        let mut other = shards.clone();
        for shard in &mut other {
            shard.uuid = "u2".into();
        }
        assert!(!only_own(&other, &from, 5));
        // A shard behind its position (the stats went back).
        let (behind, from_ahead) = index([13, 4], [10, 5]);
        assert!(!only_own(&behind, &from_ahead, 2));
        // Stats that do not give the highest sequence number.
        let mut unknown = shards.clone();
        unknown[0].max_seq_no = i64::MAX;
        assert!(!only_own(&unknown, &from, 5));
    }

    #[test]
    fn page_sizes_follow_document_size() {
        let mut sizer = PageSizer::new(1000, 8 << 20, usize::MAX, None);
        assert_eq!(sizer.size(), 1, "an unknown size starts at one document");
        sizer.observe(100, 100 * 1_000);
        assert_eq!(sizer.size(), 1000);
        sizer.observe(100, 100 * 1_000_000);
        assert_eq!(sizer.size(), 8);
        sizer.observe(1, 50_000_000);
        assert_eq!(sizer.size(), 1);
    }

    #[test]
    fn the_first_page_is_sized_by_the_weight_read_before_and_never_above_the_window() {
        // 1 MB documents: a 16 MB budget starts at 16 documents, not 1000.
        assert_eq!(
            PageSizer::new(1000, 16 << 20, usize::MAX, Some(1 << 20)).size(),
            16
        );
        // Small documents, an index whose result window is 10.
        let mut sizer = PageSizer::new(1000, 16 << 20, 10, Some(100));
        assert_eq!(sizer.size(), 10);
        sizer.observe(10, 1_000);
        assert_eq!(sizer.size(), 10);
    }

    #[test]
    fn refused_pages_shrink_down_to_one_document() {
        let mut sizer = PageSizer::new(1000, 16 << 20, usize::MAX, Some(100));
        assert_eq!(sizer.size(), 1000);
        assert!(sizer.shrink());
        assert_eq!(sizer.size(), 500);
        sizer.observe(10, 100);
        assert_eq!(sizer.size(), 500, "a refusal caps later pages");
        while sizer.shrink() {}
        assert_eq!(sizer.size(), 1);
        assert!(!sizer.shrink());
    }

    #[test]
    fn checkpoints_never_go_back_unless_held() {
        let range = ShardRange {
            index: "i".into(),
            index_uuid: "u".into(),
            shard: 2,
            after: -1,
            up_to: 9,
            window: usize::MAX,
        };
        let mut checkpoint = EsCheckpoint::default();
        checkpoint.advance(&range, 5);
        checkpoint.advance(&range, 3);
        assert_eq!(checkpoint.indices["u"].shards, vec![-1, -1, 5]);
        assert_eq!(checkpoint.shard_count(), 3);
        checkpoint.hold(&range, 3);
        assert_eq!(checkpoint.indices["u"].shards, vec![-1, -1, 3]);
    }
}
