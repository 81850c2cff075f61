//! Looking documents up by id, wherever they are, at a cost that follows the ids asked for: a
//! page of ids costs the same few requests whatever the number of indices and shards of the
//! cluster, and no index's settings shrink the requests made to the others.
//!
//! 1. `_mget` in the index where each id is expected (its hint): real-time, so a document
//!    written a moment ago is seen there;
//! 2. one search of the selection for every spelling of every id, without sources: it finds
//!    what the hints missed (no hint, a moved document, another spelling, custom routing) and
//!    every id that two documents hold;
//! 3. `_mget` of the sources of what only the search found, where it found them.
//!
//! An index whose `max_result_window` is smaller than the search asks for refuses its part of
//! the search. It is searched on its own, with pages it accepts, split further only when a
//! page comes back full: such an index costs a request of its own per page, and more only when
//! it holds the ids asked for.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use elasticsearch::http::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use super::client::Reply;
use super::indices::SELECTION_PARAMS;
use super::response::{self, MgetAnswer, MgetDoc, SearchAnswer, coverage, mget_doc};
use super::schema::Decision;
use super::{ElasticsearchError, ElasticsearchStore, EsVersion, check_index_name, convert, feed};
use crate::store::{BadDocument, Lookup, Read, Side};

/// The most ids one search or `_mget` asks for.
const IDS_PER_REQUEST: usize = 1000;

/// What a lookup found for one id.
pub(super) enum Located {
    /// One document (a search hit or an `_mget` doc).
    One(Box<response::Hit>),
    /// Several documents (`index/_id` of each).
    Many(Vec<String>),
    Absent,
    Unknown(String),
}

/// What the searches found for one id, and what they could not see.
#[derive(Default)]
struct Searched {
    hits: Vec<response::Hit>,
    /// Indices with a shard that did not answer (`None`: one the answer does not name).
    failed: BTreeSet<Option<String>>,
    timed_out: bool,
    /// A page came back full: more copies may exist.
    full: bool,
}

impl Searched {
    /// Why an id the search did not find may still exist: a timeout, a full page, or a shard
    /// that did not answer in the index where it is expected (in any index with `strict`, or
    /// when it is expected nowhere in particular).
    fn gap(&self, hint: Option<&String>, strict: bool) -> Option<String> {
        if self.timed_out {
            return Some("the search for it timed out".to_string());
        }
        if self.full {
            return Some("the search for it came back full".to_string());
        }
        let relevant = strict
            || hint.is_none()
            || self.failed.contains(&None)
            || self.failed.contains(&hint.cloned());
        (relevant && !self.failed.is_empty()).then(|| {
            let indices: Vec<String> = self.failed.iter().flatten().cloned().collect();
            format!(
                "the search for it missed shard(s) of {}",
                if indices.is_empty() {
                    "some index".to_string()
                } else {
                    indices.join(", ")
                }
            )
        })
    }
}

/// What one search request found, before it is told apart by id.
#[derive(Default)]
struct Found {
    hits: Vec<response::Hit>,
    failed: BTreeSet<Option<String>>,
    timed_out: bool,
    /// The ids whose page came back full.
    full: HashSet<Uuid>,
}

impl Found {
    fn absorb(&mut self, other: Found) {
        self.hits.extend(other.hits);
        self.failed.extend(other.failed);
        self.timed_out |= other.timed_out;
        self.full.extend(other.full);
    }
}

impl ElasticsearchStore {
    /// The current version of each id, wherever it is: every id asked for gets an answer. The
    /// hint (the index where the id is expected) makes the lookup real-time there (`_mget`),
    /// seeing documents written but not yet refreshed; the selection is searched too, after a
    /// refresh, in every spelling of the id, for what the hint missed and for other copies. An
    /// id held by more than one document (in two indices, or under two spellings) is reported
    /// as a [`BadDocument`]. An id Elasticsearch cannot answer for (its index is closed, essync
    /// does not sync it, a shard of the hinted index is unavailable, a search timed out) is
    /// [`Lookup::Unknown`]: never taken for absent. A shard failing in another index fails only
    /// itself: an id expected in a healthy index is not held up by it.
    pub async fn get_by_ids(
        &self,
        wanted: &[(Uuid, Option<String>)],
        seen_at: DateTime<Utc>,
    ) -> Result<HashMap<Uuid, Lookup<Read<EsVersion>>>, ElasticsearchError> {
        let located = self.lookup(wanted, true, false).await?;
        Ok(located
            .into_iter()
            .map(|(id, located)| {
                let lookup = match located {
                    Located::One(hit) => Lookup::Found(convert::from_hit(*hit, seen_at)),
                    Located::Many(places) => Lookup::Found(Read::Bad(in_many_indices(id, &places))),
                    Located::Absent => Lookup::Absent,
                    Located::Unknown(reason) => Lookup::Unknown(reason),
                };
                (id, lookup)
            })
            .collect())
    }

    /// Where each id is, without reading the documents: the version found, absent, or unknown
    /// (as [`ElasticsearchStore::get_by_ids`] finds them, except that a shard failing anywhere
    /// leaves every id not found unknown: an absence found here is taken for a delete).
    pub async fn locate(
        &self,
        wanted: &[(Uuid, Option<String>)],
    ) -> Result<HashMap<Uuid, Lookup<EsVersion>>, ElasticsearchError> {
        let located = self.lookup(wanted, false, true).await?;
        Ok(located
            .into_iter()
            .map(|(id, located)| {
                let lookup = match located {
                    Located::One(hit) => match convert::version_of(&hit) {
                        Some(version) => Lookup::Found(version),
                        None => Lookup::Unknown("the answer carries no version".to_string()),
                    },
                    Located::Many(places) => Lookup::Unknown(in_many_indices(id, &places).reason),
                    Located::Absent => Lookup::Absent,
                    Located::Unknown(reason) => Lookup::Unknown(reason),
                };
                (id, lookup)
            })
            .collect())
    }

    /// The documents of `wanted`: real-time in the hinted index, then a search of the selection
    /// in every spelling, then the sources of what only the search found. With `strict`, any
    /// shard failure leaves the ids not found unknown.
    async fn lookup(
        &self,
        wanted: &[(Uuid, Option<String>)],
        source: bool,
        strict: bool,
    ) -> Result<HashMap<Uuid, Located>, ElasticsearchError> {
        let hinted: Vec<Value> = wanted
            .iter()
            .filter_map(|(id, index)| {
                let index = index.as_deref()?;
                check_index_name(index).ok()?;
                Some(json!({"_index": index, "_id": id.to_string()}))
            })
            .collect();
        let (mut copies, mut unknown) = self.mget(&hinted, source).await?;
        let unrefreshed = if wanted
            .iter()
            .any(|(id, _)| !copies.contains_key(id) && !unknown.contains_key(id))
        {
            self.refresh_selection().await?
        } else {
            None
        };
        let ids: Vec<Uuid> = wanted.iter().map(|(id, _)| *id).collect();
        let mut searched = self.search_ids(&ids).await?;

        self.join_found_elsewhere(&mut searched, &mut copies, &mut unknown, source)
            .await?;
        let mut located: HashMap<Uuid, Located> = HashMap::with_capacity(wanted.len());
        for (id, hint) in wanted {
            let one = match unknown.remove(id) {
                Some(reason) => Located::Unknown(reason),
                None => locate_one(
                    copies.remove(id).unwrap_or_default(),
                    searched.get(id).and_then(|s| s.gap(hint.as_ref(), strict)),
                    unrefreshed.as_ref().filter(|_| strict),
                ),
            };
            located.insert(*id, one);
        }
        self.refuse_unsynced(&mut located).await?;
        Ok(located)
    }

    /// What only the search found joins what the hints found; its source (when wanted) is read
    /// real-time where the search found it.
    async fn join_found_elsewhere(
        &self,
        searched: &mut HashMap<Uuid, Searched>,
        copies: &mut HashMap<Uuid, Vec<response::Hit>>,
        unknown: &mut HashMap<Uuid, String>,
        source: bool,
    ) -> Result<(), ElasticsearchError> {
        let mut elsewhere = Vec::new();
        for (id, search) in searched.iter_mut() {
            let known = copies.get(id).map(Vec::as_slice).unwrap_or_default();
            let new: Vec<response::Hit> = std::mem::take(&mut search.hits)
                .into_iter()
                .filter(|hit| !known.iter().any(|h| h.index == hit.index && h.id == hit.id))
                .collect();
            if source {
                elsewhere.extend(new.into_iter().map(|hit| (*id, hit)));
            } else if !new.is_empty() {
                copies.entry(*id).or_default().extend(new);
            }
        }
        if elsewhere.is_empty() {
            return Ok(());
        }
        let requests: Vec<Value> = elsewhere
            .iter()
            .map(|(_, hit)| {
                let mut doc = json!({"_index": hit.index, "_id": hit.id});
                if let Some(routing) = &hit.routing {
                    doc["routing"] = json!(routing);
                }
                doc
            })
            .collect();
        let (found, failed) = self.mget(&requests, true).await?;
        for (id, hits) in found {
            copies.entry(id).or_default().extend(hits);
        }
        unknown.extend(failed);
        Ok(())
    }

    /// A document of an index essync does not sync cannot be said to be there or not.
    async fn refuse_unsynced(
        &self,
        located: &mut HashMap<Uuid, Located>,
    ) -> Result<(), ElasticsearchError> {
        let mut names: Vec<String> = located
            .values()
            .filter_map(|hit| match hit {
                Located::One(hit) => Some(hit.index.clone()),
                _ => None,
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let decisions = self.indices.decide(&self.http, &names).await?;
        for hit in located.values_mut() {
            if let Located::One(one) = hit
                && let Some(reason) = decisions.get(&one.index).and_then(Decision::refusal)
            {
                *hit = Located::Unknown(reason.to_string());
            }
        }
        Ok(())
    }

    /// Real-time reads of the documents `docs` name (`_index`, `_id` and perhaps `routing`), in
    /// requests of [`IDS_PER_REQUEST`]: what was found, by id, and the ids Elasticsearch cannot
    /// answer for, with why. A document that is missing is in neither.
    async fn mget(
        &self,
        docs: &[Value],
        source: bool,
    ) -> Result<(HashMap<Uuid, Vec<response::Hit>>, HashMap<Uuid, String>), ElasticsearchError>
    {
        let mut found: HashMap<Uuid, Vec<response::Hit>> = HashMap::with_capacity(docs.len());
        let mut unknown = HashMap::new();
        let source_param = [("_source", if source { "true" } else { "false" })];
        for chunk in docs.chunks(IDS_PER_REQUEST) {
            let answer: MgetAnswer = self
                .http
                .expect(
                    Method::Post,
                    "/_mget",
                    &source_param,
                    Some(&json!({"docs": chunk})),
                )
                .await?;
            for doc in answer.docs {
                let Ok(id) = uuid::Uuid::parse_str(&doc.id) else {
                    continue;
                };
                match mget_doc(doc) {
                    MgetDoc::Found(hit) => found.entry(id).or_default().push(*hit),
                    MgetDoc::Missing => {}
                    MgetDoc::Unknown(reason) => {
                        unknown.insert(id, reason);
                    }
                }
            }
        }
        Ok((found, unknown))
    }

    /// Searches see what was refreshed: refresh first, so a document written a moment ago
    /// elsewhere is not taken for absent. A refresh held up by an unavailable shard says why
    /// (what was not found is then unknown where an absence would count as a delete).
    async fn refresh_selection(&self) -> Result<Option<String>, ElasticsearchError> {
        let refreshed = self
            .http
            .refresh(
                &format!("/{}/_refresh", self.config.indices.path()),
                &SELECTION_PARAMS,
                feed::REFRESH_WITHIN,
            )
            .await?;
        Ok(refreshed.err().inspect(|reason| {
            tracing::debug!("refreshing the synced indices: {reason}");
        }))
    }

    /// The ids of a page of reads that more than one document holds (in two indices, or under
    /// two spellings) become [`BadDocument`]s: essync needs one document per id.
    pub(super) async fn flag_copies(
        &self,
        reads: Vec<Read<EsVersion>>,
    ) -> Result<Vec<Read<EsVersion>>, ElasticsearchError> {
        let ids: Vec<Uuid> = reads
            .iter()
            .filter_map(|read| match read {
                Read::Document(stored) => Some(stored.document.id),
                Read::Bad(_) => None,
            })
            .collect();
        if ids.is_empty() {
            return Ok(reads);
        }
        let searched = self.search_ids(&ids).await?;
        Ok(reads
            .into_iter()
            .map(|read| {
                let Read::Document(stored) = &read else {
                    return read;
                };
                let id = stored.document.id;
                let mut places: Vec<String> = searched
                    .get(&id)
                    .map(|s| {
                        s.hits
                            .iter()
                            .map(|h| format!("{}/{}", h.index, h.id))
                            .collect()
                    })
                    .unwrap_or_default();
                let own = format!("{}/{}", stored.version.index, stored.version.id_of(id));
                if !places.contains(&own) {
                    places.push(own);
                }
                if places.len() > 1 {
                    places.sort();
                    Read::Bad(in_many_indices(id, &places))
                } else {
                    read
                }
            })
            .collect())
    }

    /// Every document of the selection whose `_id` spells one of `ids` (without its source),
    /// by id, with what the search could not see: one search of the selection per
    /// [`IDS_PER_REQUEST`] ids, and one of each index whose result window is too small for it.
    async fn search_ids(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Searched>, ElasticsearchError> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut searched = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_REQUEST) {
            // Each id may have a few copies; a page that comes back full may miss some.
            let size = chunk.len() * 2 + 10;
            let narrow = self
                .indices
                .narrower_than(&self.http, &self.config.indices, size)
                .await?;
            let mut found = self.search_selection(chunk, size, &narrow).await?;
            for (index, window) in &narrow {
                found.absorb(self.search_narrow(index, *window, chunk).await?);
            }
            let mut by_id: HashMap<Uuid, Vec<response::Hit>> = HashMap::new();
            for hit in found.hits {
                if let Ok(id) = Uuid::parse_str(&hit.id) {
                    by_id.entry(id).or_default().push(hit);
                }
            }
            for id in chunk {
                searched.insert(
                    *id,
                    Searched {
                        hits: by_id.remove(id).unwrap_or_default(),
                        failed: found.failed.clone(),
                        timed_out: found.timed_out,
                        full: found.full.contains(id),
                    },
                );
            }
        }
        Ok(searched)
    }

    /// One search of the whole selection for `ids`. The indices whose window is smaller than
    /// `size` refuse their part; their failures are not gaps (they are searched on their own).
    async fn search_selection(
        &self,
        ids: &[Uuid],
        size: usize,
        narrow: &BTreeMap<String, usize>,
    ) -> Result<Found, ElasticsearchError> {
        let path = format!("/{}/_search", self.config.indices.path());
        let mut found = match self
            .search_spellings(&path, &SELECTION_PARAMS, ids, size)
            .await?
        {
            Reply::Ok { value, .. } => found_in(value, ids, size),
            // Every shard refused, each index for its own reason.
            Reply::Refused { error, .. }
                if error.says("Result window is too large") && !error.failed_shards.is_empty() =>
            {
                Found {
                    failed: error
                        .failed_shards
                        .iter()
                        .map(|f| f.index.clone())
                        .collect(),
                    ..Found::default()
                }
            }
            Reply::Refused { status, error } => {
                return Err(ElasticsearchError::Api {
                    request: format!("POST {path}"),
                    status,
                    reason: error.describe(),
                });
            }
        };
        // A window narrower than the search that essync did not know of: read again next time.
        if found
            .failed
            .iter()
            .any(|index| !index.as_deref().is_some_and(|i| narrow.contains_key(i)))
        {
            self.indices.forget_windows();
        }
        found
            .failed
            .retain(|index| !index.as_deref().is_some_and(|i| narrow.contains_key(i)));
        Ok(found)
    }

    /// Searches one index whose result window is smaller than a search of all `ids` asks for:
    /// pages it accepts, each split in two when it comes back full.
    async fn search_narrow(
        &self,
        index: &str,
        window: usize,
        ids: &[Uuid],
    ) -> Result<Found, ElasticsearchError> {
        let path = format!("/{}/_search", super::index_path(index));
        let params = [SELECTION_PARAMS[0], SELECTION_PARAMS[1]];
        let mut found = Found::default();
        let mut groups = vec![ids.to_vec()];
        while let Some(group) = groups.pop() {
            let size = (group.len() * 2 + 10).min(window).max(1);
            let answer = match self.search_spellings(&path, &params, &group, size).await? {
                Reply::Ok { value, .. } => found_in(value, &group, size),
                Reply::Refused { error, .. } => {
                    // Its window changed since it was read: a gap until it is read again.
                    if error.says("Result window is too large") {
                        self.indices.forget_windows();
                    }
                    tracing::debug!(index, "searching it for ids: {}", error.describe());
                    Found {
                        failed: BTreeSet::from([Some(index.to_string())]),
                        ..Found::default()
                    }
                }
            };
            if !answer.full.is_empty() && group.len() > 1 {
                let (a, b) = group.split_at(group.len() / 2);
                groups.push(a.to_vec());
                groups.push(b.to_vec());
                continue;
            }
            found.absorb(answer);
        }
        Ok(found)
    }

    /// A search of `path` for every spelling of `ids`, at most `size` hits, without sources.
    async fn search_spellings(
        &self,
        path: &str,
        params: &[(&str, &str)],
        ids: &[Uuid],
        size: usize,
    ) -> Result<Reply<SearchAnswer>, ElasticsearchError> {
        let values: Vec<String> = ids.iter().flat_map(|id| convert::spellings(*id)).collect();
        let body = json!({
            "size": size,
            "seq_no_primary_term": true,
            "track_total_hits": false,
            "_source": false,
            "query": {"ids": {"values": values}},
        });
        self.http
            .request(Method::Post, path, params, Some(&body))
            .await
    }
}

/// What was found of one id: one document, several (an id held twice), none (absent, or
/// unknown when the searches had a gap, or when the selection could not be refreshed and an
/// absence would count as a delete).
fn locate_one(
    mut hits: Vec<response::Hit>,
    gap: Option<String>,
    unrefreshed: Option<&String>,
) -> Located {
    match hits.len() {
        0 => match (gap, unrefreshed) {
            (Some(reason), _) => Located::Unknown(reason),
            (None, Some(reason)) => Located::Unknown(reason.clone()),
            (None, None) => Located::Absent,
        },
        1 => Located::One(Box::new(hits.remove(0))),
        _ => Located::Many(
            hits.iter()
                .map(|h| format!("{}/{}", h.index, h.id))
                .collect(),
        ),
    }
}

/// A search's answer for `ids`: its hits and gaps; every id is on a full page when the answer
/// holds `size` hits.
fn found_in(answer: SearchAnswer, ids: &[Uuid], size: usize) -> Found {
    let coverage = coverage(answer);
    let full = if coverage.hits.len() >= size {
        ids.iter().copied().collect()
    } else {
        HashSet::new()
    };
    Found {
        hits: coverage.hits,
        failed: coverage.failed,
        timed_out: coverage.timed_out,
        full,
    }
}

/// An id held by several documents (`index/_id` of each): essync needs one document per id.
fn in_many_indices(id: Uuid, places: &[String]) -> BadDocument {
    BadDocument {
        side: Side::Elasticsearch,
        id: Some(id),
        location: format!("*/{id}"),
        reason: format!(
            "the id is held by {} documents ({}); essync needs one document per id",
            places.len(),
            places.join(", ")
        ),
    }
}
