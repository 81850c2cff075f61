//! Elasticsearch's answers, typed, and what each one means for essync.
//!
//! Every answer essync reads (`_bulk`, `_mget`, `_search`, `_stats`, the index settings and
//! mappings, the cluster's index metadata, `_simulate`) is a serde struct here, and each comes
//! with a pure function from answer to outcome: which write applied, which document is there,
//! whether a page is complete, which shard can be read. The status mapping is tested on answers
//! recorded from a real server (`fixtures/`), without one.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

use crate::store::WriteOutcome;

/// An error as Elasticsearch reports it: a whole answer's `error`, a bulk item's, an `_mget`
/// doc's, or the reason of a shard failure.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct ErrorCause {
    /// Elasticsearch's error type (`index_closed_exception`, ...).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Its message (some errors carry none).
    #[serde(default)]
    pub reason: Option<String>,
    /// What caused it.
    #[serde(default)]
    pub caused_by: Option<Box<ErrorCause>>,
    /// The shard failures of a search that failed as a whole.
    #[serde(default)]
    pub failed_shards: Vec<ShardFailure>,
}

impl ErrorCause {
    /// The `error` of an answer: an object, or a plain string in some answers.
    pub fn of(error: Option<&Value>) -> ErrorCause {
        match error {
            Some(Value::String(text)) => ErrorCause {
                kind: "error".to_string(),
                reason: Some(text.clone()),
                ..ErrorCause::default()
            },
            Some(value @ Value::Object(_)) => {
                serde_json::from_value(value.clone()).unwrap_or_else(|_| ErrorCause {
                    kind: "error".to_string(),
                    reason: Some(value.to_string()),
                    ..ErrorCause::default()
                })
            }
            _ => ErrorCause {
                kind: "error".to_string(),
                reason: Some("no error details".to_string()),
                ..ErrorCause::default()
            },
        }
    }

    /// `type: reason (cause)`, for messages.
    pub fn describe(&self) -> String {
        let reason = self.reason.as_deref().unwrap_or("no reason given");
        let cause = self.caused_by.as_ref().and_then(|c| c.reason.as_deref());
        let shard = self
            .failed_shards
            .iter()
            .find_map(|f| f.reason.as_ref())
            .map(ErrorCause::describe);
        match (cause, shard) {
            (Some(cause), _) if cause != reason => format!("{}: {reason} ({cause})", self.kind),
            (_, Some(shard)) if !shard.contains(reason) => {
                format!("{}: {reason} ({shard})", self.kind)
            }
            _ => format!("{}: {reason}", self.kind),
        }
    }

    /// Whether this error, a cause of it, or one of its shard failures is of `kind`.
    pub fn involves(&self, kind: &str) -> bool {
        self.kind == kind
            || self.caused_by.as_ref().is_some_and(|c| c.involves(kind))
            || self
                .failed_shards
                .iter()
                .filter_map(|f| f.reason.as_ref())
                .any(|r| r.involves(kind))
    }

    /// Whether any message of this error (its causes and shard failures included) contains
    /// `text`.
    pub fn says(&self, text: &str) -> bool {
        self.reason.as_deref().is_some_and(|r| r.contains(text))
            || self.caused_by.as_ref().is_some_and(|c| c.says(text))
            || self
                .failed_shards
                .iter()
                .filter_map(|f| f.reason.as_ref())
                .any(|r| r.says(text))
    }
}

// ----------------------------------------------------------------------------------------
// _bulk

/// The answer to `_bulk`.
#[derive(Debug, Deserialize)]
pub(crate) struct BulkAnswer {
    /// One item per operation, in order.
    #[serde(default)]
    pub items: Vec<BulkItem>,
}

/// One item of a bulk answer: keyed by the operation's kind.
#[derive(Debug, Deserialize)]
pub(crate) struct BulkItem {
    index: Option<BulkResult>,
    create: Option<BulkResult>,
    delete: Option<BulkResult>,
    update: Option<BulkResult>,
}

impl BulkItem {
    /// The result, whatever the operation.
    pub fn result(&self) -> Option<&BulkResult> {
        self.index
            .as_ref()
            .or(self.create.as_ref())
            .or(self.delete.as_ref())
            .or(self.update.as_ref())
    }
}

/// What one bulk operation did.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BulkResult {
    #[serde(rename = "_index", default)]
    pub index: String,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub result: Option<String>,
    #[serde(rename = "_seq_no", default)]
    pub seq_no: Option<i64>,
    #[serde(rename = "_primary_term", default)]
    pub primary_term: Option<i64>,
    #[serde(default)]
    pub error: Option<ErrorCause>,
}

/// What a bulk item means for its write. `primary` is false for the clean-up operation of a
/// move (the delete of the old copy), whose success or absence says nothing new: `None` then.
/// On success, the sequence number and primary term written.
pub(crate) fn bulk_item_outcome(
    result: &BulkResult,
    primary: bool,
) -> Option<(WriteOutcome, Option<(i64, i64)>)> {
    let reason = || {
        result
            .error
            .as_ref()
            .map(ErrorCause::describe)
            .unwrap_or_else(|| format!("HTTP {}", result.status))
    };
    let error_is = |kinds: &[&str]| {
        result
            .error
            .as_ref()
            .is_some_and(|e| kinds.iter().any(|k| e.involves(k)))
    };
    let outcome = match result.status {
        200..=299 if primary => match result.result.as_deref() {
            Some("created") => WriteOutcome::Inserted,
            Some("deleted") => WriteOutcome::Deleted,
            _ => WriteOutcome::Replaced,
        },
        // The old copy of a moved document is gone (or was already): the move is complete.
        200..=299 | 404 if !primary => return None,
        // A compare-and-set that found another version, or none: changed since it was read.
        404 | 409 => WriteOutcome::ChangedUnderneath,
        // Overloaded, or a part of the cluster not available now: worth another attempt.
        429 | 500..=599 => WriteOutcome::Failed(reason()),
        _ if error_is(&[
            "index_closed_exception",
            "cluster_block_exception",
            "unavailable_shards_exception",
            "no_shard_available_action_exception",
        ]) =>
        {
            WriteOutcome::Failed(reason())
        }
        _ => WriteOutcome::Rejected(reason()),
    };
    let version = match outcome {
        WriteOutcome::Inserted | WriteOutcome::Replaced => result.seq_no.zip(result.primary_term),
        _ => None,
    };
    Some((outcome, version))
}

// ----------------------------------------------------------------------------------------
// Documents: _mget docs and search hits

/// A document as `_mget` or a search returns it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Hit {
    #[serde(rename = "_index", default)]
    pub index: String,
    #[serde(rename = "_id", default)]
    pub id: String,
    #[serde(rename = "_seq_no", default)]
    pub seq_no: Option<i64>,
    #[serde(rename = "_primary_term", default)]
    pub primary_term: Option<i64>,
    #[serde(rename = "_routing", default)]
    pub routing: Option<String>,
    #[serde(rename = "_source", default)]
    pub source: Option<Box<serde_json::value::RawValue>>,
    /// `_mget` only: whether the document is there.
    #[serde(default)]
    pub found: Option<bool>,
    /// `_mget` only: why this document could not be looked up.
    #[serde(default)]
    pub error: Option<ErrorCause>,
}

/// The answer to `_mget`.
#[derive(Debug, Deserialize)]
pub(crate) struct MgetAnswer {
    #[serde(default)]
    pub docs: Vec<Hit>,
}

/// What an `_mget` doc says.
#[derive(Debug, Clone)]
pub(crate) enum MgetDoc {
    /// The document is there.
    Found(Box<Hit>),
    /// Not in this index (it may be in another one).
    Missing,
    /// Elasticsearch cannot say (a closed index, an unavailable shard): never taken for absent.
    Unknown(String),
}

/// What one `_mget` doc says about its document.
pub(crate) fn mget_doc(doc: Hit) -> MgetDoc {
    if doc.found == Some(true) {
        return MgetDoc::Found(Box::new(doc));
    }
    match &doc.error {
        // A missing index holds nothing: the id may be elsewhere.
        Some(error) if error.involves("index_not_found_exception") => MgetDoc::Missing,
        Some(error) => MgetDoc::Unknown(error.describe()),
        None if doc.found == Some(false) => MgetDoc::Missing,
        None => MgetDoc::Unknown("the answer says neither found nor missing".to_string()),
    }
}

// ----------------------------------------------------------------------------------------
// _search

/// The answer to `_search`.
#[derive(Debug, Deserialize)]
pub(crate) struct SearchAnswer {
    #[serde(default)]
    pub timed_out: bool,
    #[serde(rename = "_shards", default)]
    pub shards: Option<ShardsInfo>,
    #[serde(default)]
    pub hits: Option<Hits>,
}

/// How many shards a search reached.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ShardsInfo {
    #[serde(default)]
    pub total: u32,
    #[serde(default)]
    pub successful: u32,
    #[serde(default)]
    pub failed: u32,
    #[serde(default)]
    pub failures: Vec<ShardFailure>,
}

/// One shard a search could not read.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct ShardFailure {
    #[serde(default)]
    pub shard: Option<i64>,
    #[serde(default)]
    pub index: Option<String>,
    #[serde(default)]
    pub reason: Option<ErrorCause>,
}

/// The hits of a search.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Hits {
    #[serde(default)]
    pub hits: Vec<Hit>,
}

/// Why a page of one shard's changes was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PageRefusal {
    /// The page is too big for the index (its result window) or for the node's memory (a
    /// circuit breaker): a smaller page may pass.
    TooLarge(String),
    /// The index is gone (deleted since the round planned): nothing left to read there.
    Gone,
    /// The shard cannot be read now (a closed index, an unavailable shard, a failure on it):
    /// its position is kept and it is tried again later.
    Unavailable(String),
}

/// What a search of one shard's changes read: its hits only when the shard answered in full.
pub(crate) fn shard_page(answer: SearchAnswer) -> Result<Vec<Hit>, PageRefusal> {
    let shards = answer.shards.unwrap_or_default();
    if let Some(failure) = shards.failures.first() {
        let cause = failure.reason.clone().unwrap_or_default();
        return Err(refusal(&cause));
    }
    if shards.total == 0 {
        // `ignore_unavailable` turns a closed (or just deleted) index into an empty answer
        // over no shard: that is not an empty range.
        return Err(PageRefusal::Unavailable(
            "no shard answered (the index is closed or was deleted)".to_string(),
        ));
    }
    if shards.failed > 0 || shards.successful < shards.total {
        return Err(PageRefusal::Unavailable(format!(
            "{} of {} shard(s) answered",
            shards.successful, shards.total
        )));
    }
    if answer.timed_out {
        return Err(PageRefusal::Unavailable(
            "the search timed out before the shard answered in full".to_string(),
        ));
    }
    Ok(answer.hits.unwrap_or_default().hits)
}

/// What an error (a refused search, or one shard's failure) means for a page.
pub(crate) fn refusal(error: &ErrorCause) -> PageRefusal {
    if error.involves("circuit_breaking_exception")
        || error.says("Result window is too large")
        || error.involves("too_many_nested_clauses")
    {
        PageRefusal::TooLarge(error.describe())
    } else if error.involves("index_not_found_exception") {
        PageRefusal::Gone
    } else {
        PageRefusal::Unavailable(error.describe())
    }
}

/// What a search over many indices says: its hits, the indices some shard of which did not
/// answer (`None` in the set: a failure that names no index), and whether it timed out.
pub(crate) struct Coverage {
    pub hits: Vec<Hit>,
    pub failed: BTreeSet<Option<String>>,
    pub timed_out: bool,
}

/// The hits and the gaps of a search over many indices.
pub(crate) fn coverage(answer: SearchAnswer) -> Coverage {
    let shards = answer.shards.unwrap_or_default();
    let mut failed: BTreeSet<Option<String>> =
        shards.failures.iter().map(|f| f.index.clone()).collect();
    // Elasticsearch groups the failures of one index that have one cause: only a failure
    // count with no failure listed at all leaves the failed index unnamed.
    if shards.failed > 0 && shards.failures.is_empty() {
        failed.insert(None);
    }
    Coverage {
        hits: answer.hits.unwrap_or_default().hits,
        failed,
        timed_out: answer.timed_out,
    }
}

// ----------------------------------------------------------------------------------------
// _stats

/// The answer to `_stats?level=shards`.
#[derive(Debug, Deserialize)]
pub(crate) struct StatsAnswer {
    #[serde(default)]
    pub indices: BTreeMap<String, IndexStats>,
}

/// One index's statistics.
#[derive(Debug, Deserialize)]
pub(crate) struct IndexStats {
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub shards: BTreeMap<String, Vec<ShardCopy>>,
}

/// One copy of a shard.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ShardCopy {
    #[serde(default)]
    pub routing: Option<CopyRouting>,
    #[serde(default)]
    pub seq_no: Option<SeqNoStats>,
    #[serde(default)]
    pub indexing: Option<IndexingStats>,
    #[serde(default)]
    pub retention_leases: Option<RetentionLeases>,
    #[serde(default)]
    pub docs: Option<DocStats>,
    #[serde(default)]
    pub store: Option<StoreStats>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CopyRouting {
    #[serde(default)]
    pub primary: bool,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SeqNoStats {
    #[serde(default)]
    pub global_checkpoint: Option<i64>,
    #[serde(default)]
    pub max_seq_no: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct IndexingStats {
    #[serde(default)]
    pub delete_total: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RetentionLeases {
    #[serde(default)]
    pub primary_term: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DocStats {
    #[serde(default)]
    pub count: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct StoreStats {
    #[serde(default)]
    pub size_in_bytes: Option<u64>,
}

/// One primary shard's state, from `_stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardState {
    pub index: String,
    pub uuid: String,
    pub shard: u32,
    pub global_checkpoint: i64,
    /// The highest sequence number given out (above the global checkpoint while operations
    /// are in flight; `i64::MAX` when the stats do not say).
    pub max_seq_no: i64,
    pub deletes: i64,
    pub primary_term: i64,
    pub documents: u64,
    pub bytes: u64,
}

/// The started primary of every shard `_stats` reports, sorted by index and shard. A shard
/// whose primary is not started does not appear (nor does an index none of whose primaries
/// is): the caller keeps their positions.
pub(crate) fn shard_states(answer: StatsAnswer) -> Vec<ShardState> {
    let mut states = Vec::new();
    for (name, index) in answer.indices {
        let Some(uuid) = index.uuid else { continue };
        for (number, copies) in index.shards {
            let Ok(shard) = number.parse::<u32>() else {
                continue;
            };
            let Some(primary) = copies
                .iter()
                .find(|c| c.routing.as_ref().is_some_and(|r| r.primary))
            else {
                continue;
            };
            let Some(global_checkpoint) = primary.seq_no.as_ref().and_then(|s| s.global_checkpoint)
            else {
                continue;
            };
            states.push(ShardState {
                index: name.clone(),
                uuid: uuid.clone(),
                shard,
                global_checkpoint,
                max_seq_no: primary
                    .seq_no
                    .as_ref()
                    .and_then(|s| s.max_seq_no)
                    .unwrap_or(i64::MAX),
                deletes: primary
                    .indexing
                    .as_ref()
                    .and_then(|i| i.delete_total)
                    .unwrap_or(0),
                primary_term: primary
                    .retention_leases
                    .as_ref()
                    .and_then(|r| r.primary_term)
                    .unwrap_or(0),
                documents: primary.docs.as_ref().and_then(|d| d.count).unwrap_or(0),
                bytes: primary
                    .store
                    .as_ref()
                    .and_then(|s| s.size_in_bytes)
                    .unwrap_or(0),
            });
        }
    }
    states.sort_by(|a, b| (&a.index, a.shard).cmp(&(&b.index, b.shard)));
    states
}

/// The `filter_path` that keeps of `_stats` only what [`shard_states`] reads.
pub(crate) const STATS_FILTER: &str = "indices.*.uuid,indices.*.shards.*.routing.primary,\
indices.*.shards.*.seq_no.global_checkpoint,indices.*.shards.*.seq_no.max_seq_no,\
indices.*.shards.*.indexing.delete_total,\
indices.*.shards.*.retention_leases.primary_term,indices.*.shards.*.docs.count,\
indices.*.shards.*.store.size_in_bytes";

/// The answer to `_stats/docs` filtered by [`SIZE_FILTER`]: each index's primary documents.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SizeAnswer {
    #[serde(default)]
    pub indices: BTreeMap<String, IndexSize>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct IndexSize {
    #[serde(default)]
    pub primaries: Option<IndexSizePrimaries>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct IndexSizePrimaries {
    #[serde(default)]
    pub docs: Option<DocStats>,
}

/// The `filter_path` that keeps of `_stats/docs` only what [`SizeAnswer`] reads.
pub(crate) const SIZE_FILTER: &str = "indices.*.primaries.docs.count";

// ----------------------------------------------------------------------------------------
// Index metadata: open or closed

/// The answer to `_cluster/state/metadata/INDICES`.
#[derive(Debug, Deserialize)]
pub(crate) struct MetadataAnswer {
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Metadata {
    #[serde(default)]
    pub indices: BTreeMap<String, IndexMetadata>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct IndexMetadata {
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub settings: Option<SettingsBody>,
}

/// The `filter_path` that keeps of the metadata only what [`index_states`] reads.
pub(crate) const METADATA_FILTER: &str =
    "metadata.indices.*.state,metadata.indices.*.settings.index.uuid";

/// Every index the metadata lists, by uuid: its name and whether it is open.
pub(crate) fn index_states(answer: MetadataAnswer) -> BTreeMap<String, (String, bool)> {
    answer
        .metadata
        .unwrap_or_default()
        .indices
        .into_iter()
        .filter_map(|(name, index)| {
            let uuid = index.settings?.index?.uuid?;
            let open = index.state.as_deref() != Some("close");
            Some((uuid, (name, open)))
        })
        .collect()
}

// ----------------------------------------------------------------------------------------
// Settings and mappings: does Elasticsearch keep what essync writes?

/// The answer to `INDICES/_settings`, by index name.
pub(crate) type SettingsAnswer = BTreeMap<String, IndexSettingsEntry>;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct IndexSettingsEntry {
    #[serde(default)]
    pub settings: Option<SettingsBody>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SettingsBody {
    #[serde(default)]
    pub index: Option<IndexSettings>,
}

/// The index settings essync looks at (Elasticsearch writes every value as a string).
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct IndexSettings {
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub default_pipeline: Option<String>,
    #[serde(default)]
    pub final_pipeline: Option<String>,
    #[serde(default)]
    pub max_result_window: Option<Value>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub mapping: Option<MappingSettings>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct MappingSettings {
    #[serde(default)]
    pub source: Option<SourceSettings>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct SourceSettings {
    #[serde(default)]
    pub mode: Option<String>,
}

/// The `filter_path` that keeps of the settings only what [`fidelity`] reads.
pub(crate) const SETTINGS_FILTER: &str = "*.settings.index.uuid,*.settings.index.default_pipeline,\
*.settings.index.final_pipeline,*.settings.index.max_result_window,*.settings.index.mode,\
*.settings.index.mapping.source.mode";

/// The answer to `INDICES/_mapping`, by index name.
pub(crate) type MappingAnswer = BTreeMap<String, IndexMappingEntry>;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct IndexMappingEntry {
    #[serde(default)]
    pub mappings: Option<Mappings>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Mappings {
    #[serde(rename = "_source", default)]
    pub source: Option<SourceMapping>,
}

/// An index's `_source` mapping.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct SourceMapping {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub includes: Vec<String>,
    #[serde(default)]
    pub excludes: Vec<String>,
    #[serde(default)]
    pub mode: Option<String>,
}

/// The `filter_path` that keeps of the mappings only what [`fidelity`] reads.
pub(crate) const MAPPING_FILTER: &str = "*.mappings._source";

/// What essync knows of one index, from its settings and mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fidelity {
    /// Why essync cannot sync the index faithfully, if it cannot.
    pub refusal: Option<String>,
    /// The pipeline applied to writes that name none (essync's writes bypass it).
    pub default_pipeline: Option<String>,
    /// The pipeline applied to every write, which no client can bypass.
    pub final_pipeline: Option<String>,
    /// The largest page a search may ask for.
    pub max_result_window: usize,
}

/// Elasticsearch's default `index.max_result_window`.
pub(crate) const DEFAULT_RESULT_WINDOW: usize = 10_000;

/// Whether Elasticsearch keeps what essync writes to an index, as its settings and mapping
/// say: `_source` whole (not disabled, not filtered by `includes`/`excludes`, not synthetic),
/// and which pipelines may rewrite documents.
pub(crate) fn fidelity(settings: &IndexSettings, source: Option<&SourceMapping>) -> Fidelity {
    let pipeline = |p: &Option<String>| p.clone().filter(|p| !p.is_empty() && p != "_none");
    let setting_mode = settings
        .mapping
        .as_ref()
        .and_then(|m| m.source.as_ref())
        .and_then(|s| s.mode.clone());
    let mapping_mode = source.and_then(|s| s.mode.clone());
    let mode = setting_mode.or(mapping_mode).unwrap_or_else(|| {
        match settings.mode.as_deref() {
            // These index modes rebuild `_source` unless told to store it.
            Some("logsdb" | "time_series") => "synthetic".to_string(),
            _ => "stored".to_string(),
        }
    });
    let refusal = if source.and_then(|s| s.enabled) == Some(false) || mode == "disabled" {
        Some(
            "its mapping disables _source, so Elasticsearch cannot give its documents back"
                .to_string(),
        )
    } else if mode == "synthetic" {
        Some(
            "it rebuilds _source from the indexed fields (synthetic source), which re-spells \
             numbers and reorders arrays"
                .to_string(),
        )
    } else if let Some(source) = source.filter(|s| !s.includes.is_empty() || !s.excludes.is_empty())
    {
        let mut parts = Vec::new();
        if !source.includes.is_empty() {
            parts.push(format!("includes: {}", source.includes.join(", ")));
        }
        if !source.excludes.is_empty() {
            parts.push(format!("excludes: {}", source.excludes.join(", ")));
        }
        Some(format!(
            "its mapping keeps only part of each document in _source ({}); the rest would be \
             lost on the way back",
            parts.join("; ")
        ))
    } else {
        None
    };
    let max_result_window = match &settings.max_result_window {
        Some(Value::String(text)) => text.parse().ok(),
        Some(Value::Number(n)) => n.as_u64().map(|n| n as usize),
        _ => None,
    }
    .unwrap_or(DEFAULT_RESULT_WINDOW)
    .max(1);
    Fidelity {
        refusal,
        default_pipeline: pipeline(&settings.default_pipeline),
        final_pipeline: pipeline(&settings.final_pipeline),
        max_result_window,
    }
}

/// The answer to `_ingest/pipeline/NAME/_simulate`.
#[derive(Debug, Deserialize)]
pub(crate) struct SimulateAnswer {
    #[serde(default)]
    pub docs: Vec<SimulatedDoc>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SimulatedDoc {
    #[serde(default)]
    pub doc: Option<SimulatedSource>,
    #[serde(default)]
    pub error: Option<ErrorCause>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SimulatedSource {
    #[serde(rename = "_source", default)]
    pub source: Option<Value>,
    #[serde(rename = "_index", default)]
    pub index: Option<String>,
}

/// Whether a pipeline, run on `probe` (as essync would write it to `index`), leaves it as it
/// is: `Err` says how it does not.
pub(crate) fn pipeline_keeps(
    answer: SimulateAnswer,
    index: &str,
    probe: &Value,
) -> Result<(), String> {
    let Some(doc) = answer.docs.into_iter().next() else {
        return Err("answers nothing to a simulation".to_string());
    };
    if let Some(error) = doc.error {
        return Err(format!(
            "fails on essync's documents ({})",
            error.describe()
        ));
    }
    let Some(result) = doc.doc else {
        return Err("drops essync's documents".to_string());
    };
    if result.index.as_deref().is_some_and(|i| i != index) {
        return Err("sends essync's documents to another index".to_string());
    }
    match result.source {
        Some(source) if crate::document::canonical_eq(&source, probe) => Ok(()),
        _ => Err("rewrites essync's documents".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_json::from_str(text).expect("fixture parses")
    }

    #[test]
    fn bulk_items_map_to_write_outcomes() {
        let answer: BulkAnswer = fixture(include_str!("fixtures/bulk_mixed.json"));
        let outcomes: Vec<_> = answer
            .items
            .iter()
            .map(|item| bulk_item_outcome(item.result().expect("a result"), true))
            .collect();
        let kinds: Vec<String> = outcomes
            .iter()
            .map(|o| match o {
                Some((WriteOutcome::Failed(_), _)) => "failed".to_string(),
                Some((WriteOutcome::Rejected(_), _)) => "rejected".to_string(),
                Some((other, _)) => format!("{other:?}"),
                None => "none".to_string(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "Inserted",
                "ChangedUnderneath", // create of an id that exists
                "Inserted",          // index with routing, first write
                "rejected",          // a mapping conflict: the document must change
                "ChangedUnderneath", // compare-and-set against another version
                "ChangedUnderneath", // compare-and-set delete of a document that is gone
                "failed",            // a closed index: retried later
            ]
        );
        assert_eq!(outcomes[0].as_ref().and_then(|o| o.1), Some((0, 1)));
        assert_eq!(outcomes[2].as_ref().and_then(|o| o.1), Some((1, 1)));
        let Some((WriteOutcome::Rejected(reason), None)) = &outcomes[3] else {
            panic!("{:?}", outcomes[3]);
        };
        assert!(reason.starts_with("document_parsing_exception"), "{reason}");
        assert!(reason.contains("Cannot parse object as number"), "{reason}");
        // The delete that cleans up after a move: gone already is fine.
        let gone = answer.items[5].result().expect("a result").clone();
        assert!(
            bulk_item_outcome(
                &BulkResult {
                    status: 404,
                    ..gone
                },
                false
            )
            .is_none()
        );
    }

    #[test]
    fn mget_docs_are_found_missing_or_unknown() {
        let answer: MgetAnswer = fixture(include_str!("fixtures/mget_mixed.json"));
        let docs: Vec<MgetDoc> = answer.docs.into_iter().map(mget_doc).collect();
        assert!(matches!(&docs[0], MgetDoc::Found(hit) if hit.seq_no == Some(0)));
        // Looked up under the lower-case spelling: not there.
        assert!(matches!(docs[1], MgetDoc::Missing));
        assert!(
            matches!(&docs[2], MgetDoc::Found(hit) if hit.routing.as_deref() == Some("tenant-7"))
        );
        assert!(
            matches!(&docs[3], MgetDoc::Unknown(reason) if reason.contains("index_closed_exception"))
        );
        // A missing index holds nothing.
        assert!(matches!(docs[4], MgetDoc::Missing));
    }

    #[test]
    fn a_shard_page_counts_only_when_the_shard_answered_in_full() {
        let page = shard_page(fixture(include_str!("fixtures/search_page.json"))).expect("page");
        assert_eq!(page.len(), 2);
        assert_eq!(page[1].routing.as_deref(), Some("tenant-7"));
        assert_eq!(page[1].id, "7A2D2C1F-9B9F-4B64-AD40-5B1F7A2A8D22");
        // A closed index answers "no hits" from no shard: not an empty range.
        let closed = shard_page(fixture(include_str!("fixtures/search_closed_index.json")));
        assert!(
            matches!(closed, Err(PageRefusal::Unavailable(_))),
            "{closed:?}"
        );
    }

    #[test]
    fn refused_searches_say_whether_a_smaller_page_may_pass() {
        let error = |text: &str| {
            let body: Value = serde_json::from_str(text).expect("fixture");
            ErrorCause::of(body.get("error"))
        };
        let window = error(include_str!("fixtures/search_result_window.json"));
        assert!(matches!(refusal(&window), PageRefusal::TooLarge(_)));
        let red = error(include_str!("fixtures/search_no_shard_available.json"));
        let PageRefusal::Unavailable(reason) = refusal(&red) else {
            panic!("{red:?}");
        };
        assert!(
            reason.contains("no_shard_available_action_exception"),
            "{reason}"
        );
        let breaker = ErrorCause {
            kind: "circuit_breaking_exception".into(),
            reason: Some("[parent] Data too large".into()),
            ..ErrorCause::default()
        };
        assert!(matches!(refusal(&breaker), PageRefusal::TooLarge(_)));
        let gone = ErrorCause {
            kind: "index_not_found_exception".into(),
            ..ErrorCause::default()
        };
        assert_eq!(refusal(&gone), PageRefusal::Gone);
    }

    #[test]
    fn stats_give_started_primaries_with_their_size() {
        let states = shard_states(fixture(include_str!("fixtures/stats_shards.json")));
        assert_eq!(states.len(), 2, "{states:?}");
        assert_eq!(states[1].shard, 1);
        assert_eq!(states[1].global_checkpoint, 1);
        assert_eq!(states[1].max_seq_no, 1);
        assert_eq!(states[1].documents, 2);
        assert!(states[1].bytes > 0);
        // An index none of whose primaries is started is not in the stats at all: the feed
        // keeps its positions (see the metadata below).
        assert!(states.iter().all(|s| s.index == "t_fixture_a"));
    }

    #[test]
    fn metadata_tells_closed_indices_from_open_ones() {
        let states = index_states(fixture(include_str!("fixtures/metadata_states.json")));
        assert_eq!(states.len(), 3);
        assert_eq!(
            states.get("1u2bokVBSNm3F-01084spQ"),
            Some(&("t_fixture_closed".to_string(), false))
        );
        assert_eq!(
            states.get("W4SZLfiVR5SDGXZbx-pZVQ"),
            Some(&("t_fixture_red".to_string(), true))
        );
    }

    #[test]
    fn fidelity_refuses_what_elasticsearch_does_not_keep_whole() {
        let settings: SettingsAnswer = fixture(include_str!("fixtures/settings_fidelity.json"));
        let mappings: MappingAnswer = fixture(include_str!("fixtures/mapping_source.json"));
        let of = |name: &str| {
            let settings = settings[name]
                .settings
                .as_ref()
                .and_then(|s| s.index.clone())
                .unwrap_or_default();
            let source = mappings
                .get(name)
                .and_then(|m| m.mappings.as_ref())
                .and_then(|m| m.source.clone());
            fidelity(&settings, source.as_ref())
        };
        let plain = of("t_fixture_a");
        assert_eq!(plain.refusal, None);
        assert_eq!(plain.max_result_window, DEFAULT_RESULT_WINDOW);
        let excludes = of("t_fixture_ex");
        assert!(
            excludes
                .refusal
                .as_deref()
                .is_some_and(|r| r.contains("excludes: secret")),
            "{excludes:?}"
        );
        assert_eq!(excludes.default_pipeline.as_deref(), Some("p_none_ex"));
        let synthetic = of("t_fixture_syn");
        assert!(
            synthetic
                .refusal
                .as_deref()
                .is_some_and(|r| r.contains("synthetic")),
            "{synthetic:?}"
        );
        let disabled = fidelity(
            &IndexSettings::default(),
            Some(&SourceMapping {
                enabled: Some(false),
                ..SourceMapping::default()
            }),
        );
        assert!(disabled.refusal.is_some());
        let logs = fidelity(
            &IndexSettings {
                mode: Some("logsdb".into()),
                max_result_window: Some(Value::String("10".into())),
                final_pipeline: Some("_none".into()),
                ..IndexSettings::default()
            },
            None,
        );
        assert!(logs.refusal.is_some());
        assert_eq!(logs.max_result_window, 10);
        assert_eq!(logs.final_pipeline, None);
    }

    #[test]
    fn a_pipeline_that_keeps_the_probe_passes_and_one_that_changes_it_does_not() {
        let probe = serde_json::json!({"a": 1.50, "_essync": {"type": "t"}});
        let keeps: SimulateAnswer = fixture(include_str!("fixtures/simulate_keeps.json"));
        assert_eq!(pipeline_keeps(keeps, "t_fixture_p", &probe), Ok(()));
        let fails: SimulateAnswer = fixture(include_str!("fixtures/simulate_fails.json"));
        let reason = pipeline_keeps(fails, "t_fixture_p", &probe).unwrap_err();
        assert!(reason.contains("fails"), "{reason}");
        let changed = SimulateAnswer {
            docs: vec![SimulatedDoc {
                doc: Some(SimulatedSource {
                    source: Some(serde_json::json!({"a": 1.5, "added": true})),
                    index: Some("t_fixture_p".into()),
                }),
                error: None,
            }],
        };
        assert!(pipeline_keeps(changed, "t_fixture_p", &probe).is_err());
    }
}
