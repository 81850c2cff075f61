//! The Elasticsearch store.
//!
//! - [`ElasticsearchStore::connect`] checks the cluster answers;
//! - [`ElasticsearchStore::insert_or_replace_document`] and
//!   [`ElasticsearchStore::get_documents`] are the seed's API (the latter is the change feed
//!   read from the very start);
//! - [`ElasticsearchStore::get_by_ids`], [`ElasticsearchStore::write_batch`] and the change feed
//!   ([`ElasticsearchStore::changes`]) are what the sync engine uses.
//!
//! Every index except system and hidden ones (`.`-prefixed) takes part, or those selected by
//! [`ElasticsearchConfig::indices`]. A document's `_id` is
//! its uuid, its index is its `index`, its `_source` is its content plus essync's metadata
//! ([`convert::METADATA_FIELD`]).

mod bulk;
mod client;
pub mod convert;
mod error;
mod feed;
mod indices;
mod schema;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use elasticsearch::http::Method;
use futures::Stream;
use serde_json::{Value, json};
use uuid::Uuid;

pub use bulk::{EsDelete, EsExpected, EsWrite};
pub use convert::{EsVersion, METADATA_FIELD};
pub use error::ElasticsearchError;
pub use feed::{ChangePlan, DeleteCounters, EsCheckpoint, IndexPosition, Page, ShardRange};
pub use indices::IndexSelection;
pub use schema::check_index_name;

use crate::Document;
use crate::document::now_millis;
use crate::store::{Applied, BadDocument, ChangePage, Lookup, Read, ReadError, Side, WriteOutcome};
use client::Http;
use feed::PageSizer;
use futures::StreamExt;
use indices::SELECTION_PARAMS;

/// How to reach Elasticsearch and how big requests may get.
#[derive(Debug, Clone)]
pub struct ElasticsearchConfig {
    /// One or more node URLs (`http://host:9200`); requests go round-robin.
    pub urls: Vec<String>,
    /// The indices that take part (all but system and hidden ones by default).
    pub indices: IndexSelection,
    /// Credentials, if the cluster needs them.
    pub credentials: Option<Credentials>,
    /// Accept any server certificate (for self-signed test clusters only).
    pub accept_invalid_certificates: bool,
    /// A PEM file of certificate authorities to trust beside the public web roots (a cluster
    /// with its own CA, as Elasticsearch makes at its first start).
    pub ca_file: Option<std::path::PathBuf>,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// The most documents a page of reads holds.
    pub page_size: usize,
    /// Pages are sized to stay near this many bytes.
    pub page_bytes: usize,
    /// The most operations in one bulk request.
    pub bulk_max_documents: usize,
    /// The most bytes in one bulk request.
    pub bulk_max_bytes: usize,
    /// Bulk requests in flight at once.
    pub bulk_in_flight: usize,
}

/// Credentials for Elasticsearch.
#[derive(Clone)]
pub enum Credentials {
    /// HTTP basic authentication.
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
    /// An API key.
    ApiKey {
        /// The key's id.
        id: String,
        /// The key itself.
        key: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::ApiKey { id, .. } => write!(f, "ApiKey({id}, ***)"),
        }
    }
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        Self {
            urls: vec!["http://127.0.0.1:9200".to_string()],
            indices: IndexSelection::default(),
            credentials: None,
            accept_invalid_certificates: false,
            ca_file: None,
            request_timeout: Duration::from_secs(60),
            page_size: 1000,
            page_bytes: 16 << 20,
            bulk_max_documents: 1000,
            bulk_max_bytes: 16 << 20,
            bulk_in_flight: 4,
        }
    }
}

impl ElasticsearchConfig {
    /// The default configuration for the given URL(s).
    pub fn with_urls<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Self {
        Self {
            urls: urls.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// Documents in Elasticsearch, every index except system and hidden ones.
pub struct ElasticsearchStore {
    http: Http,
    config: ElasticsearchConfig,
    indices: schema::Indices,
}

impl ElasticsearchStore {
    /// Connects and checks that the cluster answers.
    pub async fn connect(config: ElasticsearchConfig) -> Result<Self, ElasticsearchError> {
        let http = Http::new(&config)?;
        let health = http.first_contact().await?;
        let status = health
            .body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        tracing::debug!(urls = ?config.urls, status, "connected to Elasticsearch");
        if status == "red" {
            tracing::warn!("the Elasticsearch cluster is red: some shards are unavailable");
        }
        if config.credentials.is_some() {
            http.check_privileges(&config.indices).await?;
        }
        Ok(Self {
            http,
            config,
            indices: schema::Indices::default(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ElasticsearchConfig {
        &self.config
    }

    /// Makes sure an index exists with essync's metadata mapping (it is created when missing);
    /// `shards` applies only to an index created now.
    pub async fn ensure_index(
        &self,
        name: &str,
        shards: Option<u32>,
    ) -> Result<(), ElasticsearchError> {
        self.indices
            .prepare(&self.http, name, shards)
            .await?
            .map_err(|reason| ElasticsearchError::Api {
                request: format!("PUT /{name}"),
                status: 400,
                reason,
            })
    }

    /// Writes a document unless Elasticsearch holds a newer version of it (a later timestamp),
    /// which is then left as it is ([`WriteOutcome::NewerAlreadyThere`]). A document without a
    /// timestamp is stamped with the current time; equal timestamps replace.
    ///
    /// Safe against concurrent writers: the write is a compare-and-set against the version
    /// read, retried when someone wrote in between.
    pub async fn insert_or_replace_document(
        &self,
        document: &Document,
    ) -> Result<WriteOutcome, ElasticsearchError> {
        let mut document = document.clone();
        let timestamp = *document.timestamp.get_or_insert_with(now_millis);
        for _ in 0..32 {
            let current = self
                .get_by_ids(&[(document.id, Some(document.index.clone()))], now_millis())
                .await?
                .remove(&document.id);
            let expected = match current {
                None | Some(Lookup::Absent) => EsExpected::Absent,
                Some(Lookup::Unknown(reason)) => {
                    return Ok(WriteOutcome::Failed(format!(
                        "Elasticsearch cannot say what it holds for {}: {reason}",
                        document.id
                    )));
                }
                Some(Lookup::Found(Read::Bad(bad))) => {
                    return Ok(WriteOutcome::Rejected(format!(
                        "the stored version cannot be read: {}",
                        bad.reason
                    )));
                }
                Some(Lookup::Found(Read::Document(stored))) => {
                    if stored.stamped && stored.document.timestamp > Some(timestamp) {
                        return Ok(WriteOutcome::NewerAlreadyThere);
                    }
                    EsExpected::Version(stored.version)
                }
            };
            let write = EsWrite {
                document: document.clone(),
                expected,
            };
            let applied = self.write_batch(std::slice::from_ref(&write)).await?;
            match applied.into_iter().next().map(|a| a.outcome) {
                Some(WriteOutcome::ChangedUnderneath) => continue,
                Some(outcome) => return Ok(outcome),
                None => break,
            }
        }
        Ok(WriteOutcome::Failed(
            "the document kept changing while it was written".to_string(),
        ))
    }

    /// Every document of every synced index, page by page with memory that does not grow with
    /// the number of documents. Each document present from start to end is returned exactly
    /// once; one written or changed during the read may be missed (the change feed sees it).
    /// A document that cannot be synced comes as [`ReadError::Bad`] and the stream goes on; a
    /// store failure ends it.
    pub fn get_documents(
        &self,
    ) -> impl Stream<Item = Result<Document, ReadError<ElasticsearchError>>> + '_ {
        // The change feed from the very start: every shard up to its current checkpoint.
        let pages = self
            .changes(&EsCheckpoint::default(), now_millis())
            .map(|page| page.map(|page| page.reads));
        crate::store::documents_of(pages)
    }

    /// The current version of each id, wherever it is: every id asked for gets an answer. The
    /// hint (the index where the id is expected) makes the lookup real-time there (`_mget`),
    /// seeing documents written but not yet refreshed; ids not found there are searched in
    /// every selected index after a refresh. An id found in more than one index is reported as
    /// a [`BadDocument`]. An id Elasticsearch cannot answer for (its index is closed, a shard is
    /// unavailable, a search missed shards) is [`Lookup::Unknown`]: never taken for absent.
    pub async fn get_by_ids(
        &self,
        wanted: &[(Uuid, Option<String>)],
        seen_at: DateTime<Utc>,
    ) -> Result<HashMap<Uuid, Lookup<Read<EsVersion>>>, ElasticsearchError> {
        let hits = self.lookup(wanted, true).await?;
        Ok(hits
            .into_iter()
            .map(|(id, hit)| {
                let lookup = match hit {
                    Hit::One(hit) => Lookup::Found(convert::from_hit(&hit, seen_at)),
                    Hit::Many(places) => Lookup::Found(Read::Bad(in_many_indices(id, &places))),
                    Hit::Absent => Lookup::Absent,
                    Hit::Unknown(reason) => Lookup::Unknown(reason),
                };
                (id, lookup)
            })
            .collect())
    }

    /// Where each id is, without reading the documents: the version found, absent, or unknown
    /// (as [`ElasticsearchStore::get_by_ids`] finds them).
    pub async fn locate(
        &self,
        wanted: &[(Uuid, Option<String>)],
    ) -> Result<HashMap<Uuid, Lookup<EsVersion>>, ElasticsearchError> {
        let hits = self.lookup(wanted, false).await?;
        Ok(hits
            .into_iter()
            .map(|(id, hit)| {
                let lookup = match hit {
                    Hit::One(hit) => match convert::version_of(&hit) {
                        Some(version) => Lookup::Found(version),
                        None => Lookup::Unknown("the answer carries no version".to_string()),
                    },
                    Hit::Many(places) => Lookup::Unknown(in_many_indices(id, &places).reason),
                    Hit::Absent => Lookup::Absent,
                    Hit::Unknown(reason) => Lookup::Unknown(reason),
                };
                (id, lookup)
            })
            .collect())
    }

    /// The raw hits of `wanted`: real-time in the hinted index, then a search of the selection.
    async fn lookup(
        &self,
        wanted: &[(Uuid, Option<String>)],
        source: bool,
    ) -> Result<HashMap<Uuid, Hit>, ElasticsearchError> {
        let mut found: HashMap<Uuid, Hit> = HashMap::with_capacity(wanted.len());
        let hinted: Vec<Value> = wanted
            .iter()
            .filter_map(|(id, index)| {
                let index = index.as_deref()?;
                check_index_name(index).ok()?;
                Some(json!({"_index": index, "_id": id.to_string()}))
            })
            .collect();
        let source_param = [("_source", if source { "true" } else { "false" })];
        for chunk in hinted.chunks(1000) {
            let answer = self
                .http
                .expect_ok(
                    Method::Post,
                    "/_mget",
                    &source_param,
                    Some(&json!({"docs": chunk})),
                )
                .await?;
            for doc in answer
                .body
                .get("docs")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let Some(id) = doc
                    .get("_id")
                    .and_then(Value::as_str)
                    .and_then(|id| Uuid::parse_str(id).ok())
                else {
                    continue;
                };
                if doc.get("found").and_then(Value::as_bool) == Some(true) {
                    found.insert(id, Hit::One(doc.clone()));
                } else if let Some(error) = doc.get("error") {
                    let kind = error.get("type").and_then(Value::as_str).unwrap_or("");
                    // A missing index holds nothing: the id may be elsewhere. Any other error
                    // (a closed index, a shard not available) leaves the id unknown.
                    if kind != "index_not_found_exception" {
                        found.insert(id, Hit::Unknown(client::error_reason(doc)));
                    }
                }
            }
        }

        let missing: Vec<String> = wanted
            .iter()
            .filter(|(id, _)| !found.contains_key(id))
            .map(|(id, _)| id.to_string())
            .collect();
        if !missing.is_empty() {
            // Searches see what was refreshed: refresh first, so a document written a moment
            // ago elsewhere is not taken for absent.
            self.http
                .expect_ok(
                    Method::Post,
                    &format!("/{}/_refresh", self.config.indices.path()),
                    &SELECTION_PARAMS,
                    None,
                )
                .await?;
        }
        for chunk in missing.chunks(1000) {
            let body = json!({
                "size": chunk.len() * 2 + 10,
                "seq_no_primary_term": true,
                "track_total_hits": false,
                "_source": source,
                "query": {"ids": {"values": chunk}},
            });
            let answer = self
                .http
                .expect_ok(
                    Method::Post,
                    &format!("/{}/_search", self.config.indices.path()),
                    &SELECTION_PARAMS,
                    Some(&body),
                )
                .await?;
            let mut by_id: HashMap<Uuid, Vec<Value>> = HashMap::new();
            for hit in answer
                .body
                .pointer("/hits/hits")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                if let Some(id) = hit
                    .get("_id")
                    .and_then(Value::as_str)
                    .and_then(|id| Uuid::parse_str(id).ok())
                {
                    by_id.entry(id).or_default().push(hit.clone());
                }
            }
            let failed_shards = answer
                .body
                .pointer("/_shards/failed")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let timed_out = answer.body.get("timed_out").and_then(Value::as_bool) == Some(true);
            for id in chunk.iter().filter_map(|id| Uuid::parse_str(id).ok()) {
                let hit = match by_id.remove(&id) {
                    Some(mut hits) if hits.len() == 1 => Hit::One(hits.remove(0)),
                    Some(hits) => Hit::Many(
                        hits.iter()
                            .map(|h| {
                                h.get("_index")
                                    .and_then(Value::as_str)
                                    .unwrap_or("?")
                                    .to_string()
                            })
                            .collect(),
                    ),
                    None if failed_shards > 0 || timed_out => Hit::Unknown(format!(
                        "the search for it missed {failed_shards} shard(s){}",
                        if timed_out { " and timed out" } else { "" }
                    )),
                    None => Hit::Absent,
                };
                found.insert(id, hit);
            }
        }
        Ok(found)
    }

    /// Writes a batch, each document a compare-and-set against the version expected; one
    /// outcome per write, in order, with the version each applied write left. Indices are
    /// created (with the metadata mapping) when missing. Fails as a whole only when
    /// Elasticsearch cannot be used at all.
    pub async fn write_batch(
        &self,
        writes: &[EsWrite],
    ) -> Result<Vec<Applied<EsVersion>>, ElasticsearchError> {
        let limits = self.bulk_limits();
        // Documents outside the selected indices are refused: they would never be read back.
        let (inside, outside): (Vec<usize>, Vec<usize>) = (0..writes.len())
            .partition(|&n| self.config.indices.contains(&writes[n].document.index));
        if outside.is_empty() {
            return bulk::write_batch(&self.http, &self.indices, limits, writes).await;
        }
        let selected: Vec<EsWrite> = inside.iter().map(|&n| writes[n].clone()).collect();
        let written = bulk::write_batch(&self.http, &self.indices, limits, &selected).await?;
        let mut outcomes =
            vec![Applied::outcome(WriteOutcome::Failed(String::new())); writes.len()];
        for (n, outcome) in inside.into_iter().zip(written) {
            outcomes[n] = outcome;
        }
        for n in outside {
            let index = &writes[n].document.index;
            outcomes[n] = Applied::outcome(WriteOutcome::Rejected(match check_index_name(index) {
                Err(reason) => reason,
                Ok(()) => format!(
                    "index '{index}' is not among the synced indices ({})",
                    self.config.indices
                ),
            }));
        }
        Ok(outcomes)
    }

    /// Deletes a batch, each a compare-and-set against the version expected (a document
    /// changed since it was read is left alone and reported as `ChangedUnderneath`); one
    /// outcome per delete, in order.
    pub async fn delete_batch(
        &self,
        deletes: &[EsDelete],
    ) -> Result<Vec<Applied<EsVersion>>, ElasticsearchError> {
        bulk::delete_batch(&self.http, self.bulk_limits(), deletes).await
    }

    fn bulk_limits(&self) -> bulk::BulkLimits {
        bulk::BulkLimits {
            max_documents: self.config.bulk_max_documents,
            max_bytes: self.config.bulk_max_bytes,
            in_flight: self.config.bulk_in_flight,
        }
    }

    /// Where every shard is now: the starting checkpoint of a sync that leaves existing
    /// documents alone.
    pub async fn current_positions(&self) -> Result<EsCheckpoint, ElasticsearchError> {
        feed::current_positions(&self.http, &self.config.indices).await
    }

    /// What changed since `from`: the shard ranges to read, and the checkpoint once they are
    /// read. Refreshes the indices concerned so everything in range is searchable.
    pub async fn plan_changes(
        &self,
        from: &EsCheckpoint,
    ) -> Result<ChangePlan, ElasticsearchError> {
        feed::plan(&self.http, &self.config.indices, from).await
    }

    /// What changed since `from`, page by page: each page carries the checkpoint that holds once
    /// it (and every page before it) is applied; the last page (possibly empty) carries the
    /// checkpoint of the whole plan. `seen_at` stamps documents that carry no metadata.
    pub fn changes<'a>(
        &'a self,
        from: &EsCheckpoint,
        seen_at: DateTime<Utc>,
    ) -> impl Stream<Item = Result<ChangePage<EsVersion, EsCheckpoint>, ElasticsearchError>> + use<'a>
    {
        struct State {
            checkpoint: EsCheckpoint,
            plan: Option<ChangePlan>,
            ranges: std::vec::IntoIter<ShardRange>,
            current: Option<(ShardRange, i64)>,
            sizer: PageSizer,
            finished: bool,
        }
        let state = State {
            checkpoint: from.clone(),
            plan: None,
            ranges: Vec::new().into_iter(),
            current: None,
            sizer: PageSizer::new(self.config.page_size, self.config.page_bytes),
            finished: false,
        };
        futures::stream::unfold(state, move |mut state| async move {
            if state.finished {
                return None;
            }
            if state.plan.is_none() {
                match self.plan_changes(&state.checkpoint).await {
                    Ok(plan) => {
                        state.checkpoint.counters = plan.target.counters.clone();
                        state.ranges = plan.ranges.clone().into_iter();
                        state.plan = Some(plan);
                    }
                    Err(e) => {
                        state.finished = true;
                        return Some((Err(e), state));
                    }
                }
            }
            let (range, after) = match state.current.take() {
                Some(current) => current,
                None => match state.ranges.next() {
                    Some(range) => {
                        let after = range.after;
                        (range, after)
                    }
                    None => {
                        state.finished = true;
                        let checkpoint = state
                            .plan
                            .as_ref()
                            .map(|p| p.target.clone())
                            .unwrap_or_else(|| state.checkpoint.clone());
                        let page = ChangePage {
                            reads: Vec::new(),
                            checkpoint,
                        };
                        return Some((Ok(page), state));
                    }
                },
            };
            match self
                .read_page(&range, after, &mut state.sizer, seen_at)
                .await
            {
                Ok(page) => {
                    state.checkpoint.advance(&range, page.position);
                    if !page.done {
                        state.current = Some((range, page.position));
                    }
                    let page = ChangePage {
                        reads: page.reads,
                        checkpoint: state.checkpoint.clone(),
                    };
                    Some((Ok(page), state))
                }
                Err(e) => {
                    state.finished = true;
                    Some((Err(e), state))
                }
            }
        })
    }

    /// Reads the next page of a range after sequence number `after`, sized by `sizer`;
    /// `seen_at` stamps documents that carry no metadata.
    async fn read_page(
        &self,
        range: &ShardRange,
        after: i64,
        sizer: &mut PageSizer,
        seen_at: DateTime<Utc>,
    ) -> Result<Page, ElasticsearchError> {
        let (page, bytes) =
            feed::read_page(&self.http, range, after, sizer.size(), seen_at).await?;
        sizer.observe(page.reads.len(), bytes);
        Ok(page)
    }

    /// How many documents the synced indices hold (as of their last refresh).
    pub async fn count_documents(&self) -> Result<u64, ElasticsearchError> {
        let answer = self
            .http
            .expect_ok(
                Method::Post,
                &format!("/{}/_count", self.config.indices.path()),
                &SELECTION_PARAMS,
                None,
            )
            .await?;
        Ok(answer
            .body
            .get("count")
            .and_then(Value::as_u64)
            .unwrap_or(0))
    }
}

/// What a lookup found for one id.
enum Hit {
    /// One document (a search hit or an `_mget` doc).
    One(Value),
    /// Documents in several indices (their names).
    Many(Vec<String>),
    Absent,
    Unknown(String),
}

/// An id found in several indices: essync needs one document per id.
fn in_many_indices(id: Uuid, places: &[String]) -> BadDocument {
    BadDocument {
        side: Side::Elasticsearch,
        id: Some(id),
        location: format!("*/{id}"),
        reason: format!(
            "the id is in {} indices ({}); essync needs one document per id",
            places.len(),
            places.join(", ")
        ),
    }
}

/// An index name as a URL path segment.
pub(crate) fn index_path(name: &str) -> String {
    let mut path = String::with_capacity(name.len());
    for byte in name.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b',' => {
                path.push(byte as char)
            }
            _ => path.push_str(&format!("%{byte:02X}")),
        }
    }
    path
}
