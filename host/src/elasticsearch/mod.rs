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
//!
//! What real clusters hold is taken into account: an `_id` may spell its uuid in upper case,
//! braced or without hyphens (writes go back under that `_id`), a document may carry custom
//! routing (writes carry it too), two documents may hold one id (reported, never synced), an
//! index may not keep `_source` whole or rewrite documents in a pipeline (see `schema`), a
//! shard or an index may be unavailable (see `feed`). Every answer is read through typed
//! structs (`response`).

mod bulk;
mod client;
pub mod convert;
mod error;
mod feed;
mod indices;
mod lookup;
mod response;
mod schema;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use elasticsearch::http::Method;
use futures::Stream;
use serde_json::Value;

pub use bulk::{EsDelete, EsExpected, EsWrite};
pub use convert::{EsVersion, METADATA_FIELD, spellings};
pub use error::ElasticsearchError;
pub use feed::{ChangePlan, DeleteCounters, EsCheckpoint, IndexPosition, Page, ShardRange};
pub use indices::IndexSelection;
pub use schema::check_index_name;

use crate::Document;
use crate::document::now_millis;
use crate::store::{Applied, ChangePage, Lookup, Read, ReadError, WriteOutcome};
use client::Http;
use futures::StreamExt;
use indices::SELECTION_PARAMS;
use schema::Decision;

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
    /// Ask for gzip-compressed answers (off: answers come uncompressed, which costs both sides
    /// less CPU than the network it saves near the cluster).
    pub gzip: bool,
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
    /// How long a decision about an index (does Elasticsearch keep what essync writes there,
    /// is essync's mapping in place) holds before it is checked again.
    pub index_recheck: Duration,
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
            gzip: false,
            ca_file: None,
            request_timeout: Duration::from_secs(60),
            page_size: 1000,
            page_bytes: 16 << 20,
            bulk_max_documents: 1000,
            bulk_max_bytes: 16 << 20,
            bulk_in_flight: 4,
            index_recheck: Duration::from_secs(60),
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
    red: bool,
    /// What one document of each index weighed in the last page read from it: the next
    /// round's first page is sized from it.
    weights: std::sync::Mutex<HashMap<String, usize>>,
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
        // Only the synced indices' shards concern essync: a red index outside them is not
        // worth a warning (and one inside fails only itself).
        let red = status == "red" && {
            let path = format!("/_cluster/health/{}", config.indices.path());
            let query = [("allow_no_indices", "true"), ("expand_wildcards", "open")];
            match http.expect_ok(Method::Get, &path, &query, None).await {
                Ok(synced) => synced.body.get("status").and_then(Value::as_str) == Some("red"),
                Err(_) => true,
            }
        };
        if config.credentials.is_some() {
            http.check_privileges(&config.indices).await?;
        }
        Ok(Self {
            http,
            indices: schema::Indices::new(config.index_recheck),
            config,
            red,
            weights: Default::default(),
        })
    }

    /// Whether some of the synced indices had unavailable primary shards when essync
    /// connected (the caller warns once everything has started: a failure to start stays one
    /// line).
    pub fn red_at_start(&self) -> bool {
        self.red
    }

    /// The configuration in use.
    pub fn config(&self) -> &ElasticsearchConfig {
        &self.config
    }

    /// The requests sent to Elasticsearch so far, by API (`search`, `mget`, `bulk`, ...).
    pub fn requests(&self) -> &crate::store::RequestCounts {
        self.http.requests()
    }

    /// Makes sure an index exists with essync's metadata mapping (it is created when missing);
    /// `shards` applies only to an index created now.
    pub async fn ensure_index(
        &self,
        name: &str,
        shards: Option<u32>,
    ) -> Result<(), ElasticsearchError> {
        match self.indices.prepare(&self.http, name, shards).await? {
            Decision::Sync(_) => Ok(()),
            Decision::Refuse(reason) => Err(ElasticsearchError::Api {
                request: format!("PUT /{name}"),
                status: 400,
                reason,
            }),
        }
    }

    /// Whether Elasticsearch may rewrite what essync writes to `index` (a final pipeline that
    /// kept essync's probe document as it was, but may change others): a version read back
    /// with essync's own sequence number but other content was rewritten by Elasticsearch.
    pub fn may_rewrite(&self, index: &str) -> bool {
        self.indices.known(index).is_some_and(|d| d.may_rewrite())
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
                digest: None,
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
    /// store failure ends it, and so does a part of the cluster that cannot be read (a closed
    /// index, an unavailable shard): the listing would not be complete.
    pub fn get_documents(
        &self,
    ) -> impl Stream<Item = Result<Document, ReadError<ElasticsearchError>>> + '_ {
        // The change feed from the very start: every shard up to its current checkpoint.
        let pages = self
            .changes(&EsCheckpoint::default(), now_millis())
            .map(|page| {
                let page = page?;
                match page.failed.into_iter().next() {
                    Some(failure) => Err(ElasticsearchError::Unreadable {
                        location: failure.location,
                        reason: failure.reason,
                    }),
                    None => Ok(page.reads),
                }
            });
        crate::store::documents_of(pages)
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

    /// What changed since `from`, page by page: each page carries the checkpoint that holds once
    /// it (and every page before it) is applied; the last page (possibly empty) carries the
    /// checkpoint of the whole plan. `seen_at` stamps documents that carry no metadata.
    pub fn changes<'a>(
        &'a self,
        from: &EsCheckpoint,
        seen_at: DateTime<Utc>,
    ) -> impl Stream<Item = Result<ChangePage<EsVersion, EsCheckpoint>, ElasticsearchError>> + use<'a>
    {
        self.changes_holding(from, seen_at, BTreeSet::new(), BTreeMap::new())
    }

    /// [`ElasticsearchStore::changes`], leaving the parts in `held` unread (locations of earlier
    /// failures, `INDEX` or `INDEX, shard N`, waiting for their next attempt): their positions
    /// are kept. A part that cannot be read (a closed index, an unavailable shard, a page
    /// refused even at one document, an index essync does not sync) is skipped the same way and
    /// reported in the pages' `failed`; the rest of the feed goes on. `own_writes` counts, by
    /// index, the operations essync applied since `from` was planned: an index that holds no
    /// others is not read (see [`feed::only_own_operations`]).
    pub fn changes_holding<'a>(
        &'a self,
        from: &EsCheckpoint,
        seen_at: DateTime<Utc>,
        held: BTreeSet<String>,
        own_writes: BTreeMap<String, i64>,
    ) -> impl Stream<Item = Result<ChangePage<EsVersion, EsCheckpoint>, ElasticsearchError>> + use<'a>
    {
        feed::ChangeFeed::new(self, from, seen_at, held, own_writes).pages()
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

    /// How many indices the selection holds, and how many documents they hold: one `_stats`
    /// request, for what a first start says it will touch.
    pub async fn selection_size(&self) -> Result<SelectionSize, ElasticsearchError> {
        let answer: response::SizeAnswer = self
            .http
            .expect(
                Method::Get,
                &format!("/{}/_stats/docs", self.config.indices.path()),
                &[
                    SELECTION_PARAMS[0],
                    SELECTION_PARAMS[1],
                    SELECTION_PARAMS[2],
                    ("filter_path", response::SIZE_FILTER),
                ],
                None,
            )
            .await?;
        Ok(SelectionSize {
            indices: answer.indices.len(),
            documents: answer
                .indices
                .values()
                .filter_map(|index| index.primaries.as_ref()?.docs.as_ref()?.count)
                .sum(),
        })
    }
}

/// How much the selection of indices holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectionSize {
    /// Open indices selected.
    pub indices: usize,
    /// Documents in them (primaries, deleted ones excluded).
    pub documents: u64,
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
