//! Indices: essync's metadata mapping, created when missing or added to an existing index, and
//! what essync decided about each index: whether Elasticsearch keeps what essync writes there
//! (see [`super::response::fidelity`]), and how to write to it. Decisions are remembered for a
//! while ([`super::ElasticsearchConfig::index_recheck`]) and then checked again, so an index
//! deleted and created anew, a mapping or a pipeline changed, is seen.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use elasticsearch::http::Method;
use serde_json::{Value, json};

use super::client::{Http, Reply, error_reason};
use super::convert::{METADATA_FIELD, metadata_mapping};
use super::indices::IndexSelection;
use super::response::{
    DEFAULT_RESULT_WINDOW, Fidelity, MAPPING_FILTER, MappingAnswer, SETTINGS_FILTER,
    SettingsAnswer, SimulateAnswer, fidelity, pipeline_keeps,
};
use super::{ElasticsearchError, index_path};

/// What essync decided about one index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// essync syncs it; how Elasticsearch treats it.
    Sync(Fidelity),
    /// essync does not sync it, and why (a name Elasticsearch refuses, a `_source` that is not
    /// kept whole, a pipeline that rewrites documents).
    Refuse(String),
}

impl Decision {
    /// The refusal, if it is one.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            Decision::Refuse(reason) => Some(reason),
            Decision::Sync(_) => None,
        }
    }

    /// Whether Elasticsearch may rewrite what essync writes to the index: a final pipeline that
    /// kept essync's probe document as it was, but may change others.
    pub fn may_rewrite(&self) -> bool {
        matches!(self, Decision::Sync(fidelity) if fidelity.final_pipeline.is_some())
    }

    /// The largest page a search of this index may ask for.
    pub fn window(&self) -> usize {
        match self {
            Decision::Sync(fidelity) => fidelity.max_result_window,
            Decision::Refuse(_) => DEFAULT_RESULT_WINDOW,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    at: Instant,
    /// Whether essync's metadata mapping is known to be in place.
    prepared: bool,
    decision: Decision,
}

/// The decisions of this process, each remembered for `recheck`.
#[derive(Debug)]
pub(crate) struct Indices {
    recheck: Duration,
    entries: Mutex<HashMap<String, Entry>>,
    /// The result windows the selection's indices set, and when they were read.
    windows: Mutex<Option<(Instant, BTreeMap<String, usize>)>>,
}

/// Query parameters for settings and mappings of named indices, closed ones included.
const NAMED: [(&str, &str); 3] = [
    ("ignore_unavailable", "true"),
    ("allow_no_indices", "true"),
    ("expand_wildcards", "open,closed"),
];

impl Indices {
    pub fn new(recheck: Duration) -> Self {
        Self {
            recheck,
            entries: Mutex::new(HashMap::new()),
            windows: Mutex::new(None),
        }
    }

    /// The decision about `name`, however old, if there is one.
    pub fn known(&self, name: &str) -> Option<Decision> {
        self.entries
            .lock()
            .ok()
            .and_then(|e| e.get(name).map(|e| e.decision.clone()))
    }

    fn fresh(&self, name: &str) -> Option<Entry> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(name)
            .filter(|e| e.at.elapsed() < self.recheck)
            .cloned()
    }

    fn remember(&self, name: &str, decision: Decision, prepared: bool) -> Decision {
        if let Ok(mut entries) = self.entries.lock() {
            let before = entries.get(name).map(|e| e.decision.clone());
            if before.as_ref() != Some(&decision) {
                match (&decision, &before) {
                    (Decision::Refuse(reason), _) => tracing::warn!("{reason}"),
                    (Decision::Sync(_), Some(Decision::Refuse(_))) => {
                        tracing::info!("index '{name}' is synced again")
                    }
                    _ => {}
                }
            }
            entries.insert(
                name.to_string(),
                Entry {
                    at: Instant::now(),
                    prepared,
                    decision: decision.clone(),
                },
            );
        }
        decision
    }

    /// What essync decides about each of `names` that exists (open or closed); the others are
    /// left out. Costs nothing for indices decided a short while ago.
    pub async fn decide(
        &self,
        http: &Http,
        names: &[&str],
    ) -> Result<HashMap<String, Decision>, ElasticsearchError> {
        let mut decided = HashMap::with_capacity(names.len());
        let mut stale = Vec::new();
        for name in names {
            match self.fresh(name) {
                Some(entry) => {
                    decided.insert(name.to_string(), entry.decision);
                }
                None => stale.push(*name),
            }
        }
        decided.extend(self.fetch(http, &mut stale).await?);
        Ok(decided)
    }

    /// Decides about `names` afresh, from their settings and mappings.
    async fn fetch(
        &self,
        http: &Http,
        stale: &mut [&str],
    ) -> Result<HashMap<String, Decision>, ElasticsearchError> {
        let mut decided = HashMap::with_capacity(stale.len());
        stale.sort_unstable();
        // A few dozen names per request keeps the URL short.
        for chunk in stale.chunks(40) {
            let path = chunk
                .iter()
                .map(|n| index_path(n))
                .collect::<Vec<_>>()
                .join(",");
            let settings_query = [
                NAMED[0],
                NAMED[1],
                NAMED[2],
                ("filter_path", SETTINGS_FILTER),
            ];
            let settings: SettingsAnswer = http
                .expect(
                    Method::Get,
                    &format!("/{path}/_settings"),
                    &settings_query,
                    None,
                )
                .await?;
            let mapping_query = [
                NAMED[0],
                NAMED[1],
                NAMED[2],
                ("filter_path", MAPPING_FILTER),
            ];
            let mappings: MappingAnswer = http
                .expect(
                    Method::Get,
                    &format!("/{path}/_mapping"),
                    &mapping_query,
                    None,
                )
                .await?;
            for (name, entry) in settings {
                let index_settings = entry.settings.and_then(|s| s.index).unwrap_or_default();
                let source = mappings
                    .get(&name)
                    .and_then(|m| m.mappings.as_ref())
                    .and_then(|m| m.source.as_ref());
                let decision = judge(http, &name, fidelity(&index_settings, source)).await?;
                let prepared = self.fresh(&name).is_some_and(|e| e.prepared);
                decided.insert(name.clone(), self.remember(&name, decision, prepared));
            }
        }
        Ok(decided)
    }

    /// Makes sure `name` exists with essync's metadata mapping (created when missing), and
    /// says whether essync writes to it. `shards` applies only to an index created now.
    pub async fn prepare(
        &self,
        http: &Http,
        name: &str,
        shards: Option<u32>,
    ) -> Result<Decision, ElasticsearchError> {
        if let Some(entry) = self.fresh(name).filter(|e| e.prepared) {
            return Ok(entry.decision);
        }
        if let Err(reason) = check_index_name(name) {
            return Ok(self.remember(name, Decision::Refuse(reason), true));
        }
        let path = format!("/{}", index_path(name));
        let mut body = json!({"mappings": metadata_mapping()});
        if let Some(shards) = shards {
            body["settings"] = json!({"number_of_shards": shards});
        }
        let created = http.send(Method::Put, &path, &[], Some(&body)).await?;
        match created.status {
            200..=299 => {}
            _ if error_type(&created.body) == Some("resource_already_exists_exception") => {
                extend_mapping(http, name).await?;
            }
            400 => {
                let reason = format!(
                    "Elasticsearch refuses the index '{name}': {}",
                    error_reason(&created.body)
                );
                return Ok(self.remember(name, Decision::Refuse(reason), true));
            }
            _ => {
                return Err(super::client::error_answer(Method::Put, &path, &created));
            }
        }
        // Decided afresh: an index template may have given it a pipeline or a `_source`
        // filter.
        let decision = self
            .fetch(http, &mut [name])
            .await?
            .remove(name)
            .unwrap_or_else(|| {
                Decision::Refuse(format!(
                    "the index '{name}' went away while essync prepared it"
                ))
            });
        Ok(self.remember(name, decision, true))
    }

    /// The indices of the selection whose result window is smaller than `size` (a search that
    /// asks them for `size` hits is refused there), with their windows. Read from the
    /// selection's settings at most once per [`Indices::recheck`]: only indices that set
    /// `index.max_result_window` are in the answer.
    pub async fn narrower_than(
        &self,
        http: &Http,
        selection: &IndexSelection,
        size: usize,
    ) -> Result<BTreeMap<String, usize>, ElasticsearchError> {
        let known = self.windows.lock().ok().and_then(|w| {
            w.as_ref()
                .filter(|(at, _)| at.elapsed() < self.recheck)
                .cloned()
        });
        let windows = match known {
            Some((_, windows)) => windows,
            None => {
                let windows = read_windows(http, selection).await?;
                if let Ok(mut known) = self.windows.lock() {
                    *known = Some((Instant::now(), windows.clone()));
                }
                windows
            }
        };
        Ok(windows.into_iter().filter(|(_, w)| *w < size).collect())
    }

    /// Forgets the result windows read: a search met one essync did not know of.
    pub fn forget_windows(&self) {
        if let Ok(mut windows) = self.windows.lock() {
            *windows = None;
        }
    }
}

/// The result windows the selection's indices set (indices that keep the default are left out).
async fn read_windows(
    http: &Http,
    selection: &IndexSelection,
) -> Result<BTreeMap<String, usize>, ElasticsearchError> {
    let query = [
        super::indices::SELECTION_PARAMS[0],
        super::indices::SELECTION_PARAMS[1],
        super::indices::SELECTION_PARAMS[2],
        ("filter_path", "*.settings.index.max_result_window"),
    ];
    let settings: SettingsAnswer = http
        .expect(
            Method::Get,
            &format!("/{}/_settings", selection.path()),
            &query,
            None,
        )
        .await?;
    Ok(settings
        .into_iter()
        .filter_map(|(name, entry)| {
            let index = entry.settings?.index?;
            Some((name, fidelity(&index, None).max_result_window))
        })
        .collect())
}

/// The decision for an index Elasticsearch treats as `fidelity` says. A final pipeline (which no
/// client can bypass) is run on a probe document first: one that changes it is refused.
async fn judge(
    http: &Http,
    name: &str,
    fidelity: Fidelity,
) -> Result<Decision, ElasticsearchError> {
    if let Some(reason) = &fidelity.refusal {
        return Ok(Decision::Refuse(format!(
            "essync does not sync index '{name}': {reason}"
        )));
    }
    let Some(pipeline) = fidelity.final_pipeline.clone() else {
        return Ok(Decision::Sync(fidelity));
    };
    let probe = json!({
        "title": "essync probe",
        "n": [1, 2.5, -3],
        "nested": {"flag": true, "none": null},
        METADATA_FIELD: {"type": "_doc", "timestamp": "2000-01-01T00:00:00.000Z"},
    });
    let body = json!({"docs": [{
        "_index": name,
        "_id": "00000000-0000-4000-8000-000000000000",
        "_source": probe,
    }]});
    let path = format!("/_ingest/pipeline/{}/_simulate", index_path(&pipeline));
    let verdict = match http
        .request::<SimulateAnswer>(Method::Post, &path, &[], Some(&body))
        .await?
    {
        Reply::Ok { value, .. } => pipeline_keeps(value, name, &probe),
        Reply::Refused { error, .. } => Err(format!("cannot be checked: {}", error.describe())),
    };
    Ok(match verdict {
        Ok(()) => Decision::Sync(fidelity),
        Err(reason) => Decision::Refuse(format!(
            "essync does not sync index '{name}': its final pipeline '{pipeline}' {reason}, \
             so Elasticsearch would not keep what essync writes"
        )),
    })
}

/// Adds the metadata mapping to an index that exists. A conflict (the field already mapped
/// differently, e.g. by dynamic mapping before essync ran) is not fatal: documents still sync,
/// only the metadata's field types differ.
async fn extend_mapping(http: &Http, name: &str) -> Result<(), ElasticsearchError> {
    let path = format!("/{}/_mapping", index_path(name));
    let answer = http
        .send(Method::Put, &path, &[], Some(&metadata_mapping()))
        .await?;
    if !(200..300).contains(&answer.status) {
        tracing::warn!(
            index = name,
            reason = %error_reason(&answer.body),
            "cannot add essync's metadata mapping to this index; documents still sync"
        );
    }
    Ok(())
}

fn error_type(body: &Value) -> Option<&str> {
    body.pointer("/error/type").and_then(Value::as_str)
}

/// Elasticsearch's rules for index names, checked locally so a bad name is reported with a
/// clear reason; names starting with `.` are refused because essync leaves system and hidden
/// indices alone.
pub fn check_index_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the index name is empty".to_string());
    }
    if name.len() > 255 {
        return Err(format!("the index name '{name}' is longer than 255 bytes"));
    }
    if name.starts_with('.') {
        return Err(format!(
            "the index name '{name}' starts with '.', which is for system and hidden indices; essync does not sync them"
        ));
    }
    if name.starts_with(['_', '-', '+']) {
        return Err(format!(
            "the index name '{name}' starts with '{}', which Elasticsearch does not allow",
            &name[..1]
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("'{name}' is not an index name"));
    }
    if name.chars().any(|c| c.is_uppercase()) {
        return Err(format!(
            "the index name '{name}' has uppercase letters; Elasticsearch index names are lowercase"
        ));
    }
    if let Some(c) = name.chars().find(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
        )
    }) {
        return Err(format!(
            "the index name '{name}' contains '{c}', which Elasticsearch does not allow"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_index_name;

    #[test]
    fn index_names_follow_elasticsearch_rules() {
        assert!(check_index_name("books-2024").is_ok());
        assert!(check_index_name("").is_err());
        assert!(check_index_name(".kibana").unwrap_err().contains("system"));
        assert!(check_index_name("Books").unwrap_err().contains("lowercase"));
        assert!(check_index_name("a b").unwrap_err().contains("' '"));
        assert!(check_index_name("_x").is_err());
    }
}
