//! What applications do with the search server's own features, which every real cluster has:
//! `_delete_by_query`, `_update_by_query` with a painless script, and the zero-downtime reindex
//! (`_reindex` into a new index, the alias moved, the old index deleted). They need the
//! server's reindex and painless modules: the OpenSearch test servers carry them
//! (`scripts/servers` adds them to OpenSearch 2; OpenSearch 3 ships them), the Elasticsearch
//! integ-test servers do not (Elastic does not publish its module jars). Without them each
//! scenario says why and passes without running, unless `ESSYNC_TEST_SEARCH_MODULES=required`
//! (set by `scripts/test` on OpenSearch), which makes it fail instead.

use std::collections::BTreeSet;
use std::time::Duration;

use elasticsearch::http::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::cassandra_node;
use crate::support::log::Round;
use crate::support::scenario::{Doc, Docs, Scenario, differences, doc, now_ms, run_to_end};

/// The modules the scenarios use: reindex (`_reindex`, `_delete_by_query`,
/// `_update_by_query`) and lang-painless (scripts).
const MODULES: [&str; 2] = ["reindex", "lang-painless"];

/// How long a scenario of a few thousand documents may take to settle.
const SETTLE: Duration = Duration::from_secs(120);

/// Whether the search server has [`MODULES`]; when not, prints why (the scenario then passes
/// without running), or fails when the run requires them.
async fn has_modules(s: &Scenario, scenario: &str) -> bool {
    let answer = s
        .es_request(
            Method::Get,
            "/_nodes/_local?filter_path=nodes.*.modules.name",
            None,
        )
        .await;
    let loaded: BTreeSet<String> = answer["nodes"]
        .as_object()
        .into_iter()
        .flat_map(|nodes| nodes.values())
        .flat_map(|node| node["modules"].as_array().cloned().unwrap_or_default())
        .filter_map(|module| module["name"].as_str().map(str::to_string))
        .collect();
    let missing: Vec<&str> = MODULES
        .into_iter()
        .filter(|m| !loaded.contains(*m))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!(
        "{scenario}: not run: the search server lacks the module(s) {} (the Elasticsearch \
         integ-test servers have none; run it on OpenSearch: ESSYNC_SEARCH=opensearch-3 \
         scripts/servers up search, ESSYNC_ES_URL=http://127.0.0.1:9203)",
        missing.join(", ")
    );
    assert!(
        std::env::var("ESSYNC_TEST_SEARCH_MODULES").as_deref() != Ok("required"),
        "{reason}"
    );
    eprintln!("{reason}");
    false
}

/// `count` documents for `index` (written through `write_to`, an alias or the index itself),
/// each with its number `n` and its parity.
fn numbered(write_to: &str, count: usize) -> Vec<(Uuid, Doc)> {
    (0..count)
        .map(|n| {
            let parity = if n % 2 == 0 { "even" } else { "odd" };
            (
                Uuid::new_v4(),
                doc(write_to, "t", now_ms(), json!({"n": n, "parity": parity})),
            )
        })
        .collect()
}

/// A request that must succeed; returns the answer.
async fn request(s: &Scenario, method: Method, path: &str, body: Option<Value>) -> Value {
    let answer = s.es_request(method, path, body).await;
    assert!(
        answer.get("error").is_none(),
        "the search server refused {path}: {answer}"
    );
    answer
}

/// The ids of `docs`.
fn ids(docs: &Docs) -> BTreeSet<Uuid> {
    docs.keys().copied().collect()
}

/// How many documents essync's round summaries say it deleted from Cassandra.
fn cassandra_deletes(rounds: &[Round]) -> u64 {
    rounds.iter().map(|round| round.deleted[1]).sum()
}

#[tokio::test]
async fn a_delete_by_query_of_half_the_documents_reaches_cassandra() {
    let s = Scenario::new("dbq").await;
    if !has_modules(&s, "delete_by_query").await {
        return;
    }
    let index = s.index("docs");
    let docs = numbered(&index, 2_000);
    s.es_bulk(&docs).await;
    let essync = s.essync(&["-s"]);
    let (_, before) = s
        .wait_until_within(SETTLE, "2,000 documents synced", |e, c| {
            e.len() == 2_000 && differences(e, c).is_empty()
        })
        .await;
    let answer = request(
        &s,
        Method::Post,
        &format!("/{index}/_delete_by_query?refresh=true"),
        Some(json!({"query": {"match": {"parity": "even"}}})),
    )
    .await;
    assert_eq!(answer["deleted"], 1_000, "{answer}");
    let (e, c) = s
        .wait_until_within(SETTLE, "the odd half left on both sides", |e, c| {
            e.len() == 1_000 && c.len() == 1_000 && differences(e, c).is_empty()
        })
        .await;
    let odd: BTreeSet<Uuid> = before
        .iter()
        .filter(|(_, d)| d.content["parity"] == "odd")
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(ids(&c), odd, "Cassandra kept other rows than the odd half");
    assert_eq!(ids(&e), odd);
    assert!(
        c.values().all(|d| d.content["parity"] == "odd"),
        "{:?}",
        essync.output()
    );
}

#[tokio::test]
async fn an_update_by_query_with_a_painless_script_reaches_every_row() {
    let s = Scenario::new("ubq").await;
    if !has_modules(&s, "update_by_query").await {
        return;
    }
    let index = s.index("docs");
    s.es_bulk(&numbered(&index, 1_000)).await;
    let _essync = s.essync(&["-s"]);
    s.wait_until_within(SETTLE, "1,000 documents synced", |e, c| {
        e.len() == 1_000 && differences(e, c).is_empty()
    })
    .await;
    let answer = request(
        &s,
        Method::Post,
        &format!("/{index}/_update_by_query?refresh=true&conflicts=proceed"),
        Some(json!({
            "script": {
                "lang": "painless",
                "source": "ctx._source.square = ctx._source.n * ctx._source.n; \
                           ctx._source.reviewed = true"
            }
        })),
    )
    .await;
    assert_eq!(answer["updated"], 1_000, "{answer}");
    let (_, c) = s
        .wait_until_within(SETTLE, "every row updated by the script", |e, c| {
            c.len() == 1_000
                && c.values().all(|d| d.content["reviewed"] == true)
                && differences(e, c).is_empty()
        })
        .await;
    for row in c.values() {
        let n = row.content["n"].as_i64().expect("n");
        assert_eq!(row.content["square"], n * n, "{row:?}");
    }
}

#[tokio::test]
async fn a_zero_downtime_reindex_moves_every_row_to_the_new_index() {
    let s = Scenario::new("reindex").await;
    if !has_modules(&s, "reindex").await {
        return;
    }
    // Applications read and write through the alias; essync syncs the indices behind it.
    let (alias, old, new) = (s.name.clone(), s.index("v1"), s.index("v2"));
    request(
        &s,
        Method::Put,
        &format!("/{old}"),
        Some(json!({"aliases": {&alias: {"is_write_index": true}}})),
    )
    .await;
    s.es_bulk(&numbered(&alias, 1_000)).await;
    let essync = s.essync(&["-s"]);
    let (_, synced) = s
        .wait_until_within(SETTLE, "1,000 documents synced", |e, c| {
            e.len() == 1_000 && differences(e, c).is_empty() && c.values().all(|d| d.index == old)
        })
        .await;
    // The new index gets the old one's mapping (essync's metadata field included) and two
    // shards, the documents, then the alias; the old index goes.
    let mapping = s
        .es_request(Method::Get, &format!("/{old}/_mapping"), None)
        .await;
    request(
        &s,
        Method::Put,
        &format!("/{new}"),
        Some(json!({
            "settings": {"number_of_shards": 2},
            "mappings": mapping[&old]["mappings"].clone()
        })),
    )
    .await;
    let answer = request(
        &s,
        Method::Post,
        "/_reindex?refresh=true",
        Some(json!({"source": {"index": &old}, "dest": {"index": &new}})),
    )
    .await;
    assert_eq!(answer["created"], 1_000, "{answer}");
    request(
        &s,
        Method::Post,
        "/_aliases",
        Some(json!({"actions": [
            {"remove": {"index": &old, "alias": &alias}},
            {"add": {"index": &new, "alias": &alias, "is_write_index": true}}
        ]})),
    )
    .await;
    request(&s, Method::Delete, &format!("/{old}"), None).await;
    let (_, c) = s
        .wait_until_within(SETTLE, "every row under the new index", |e, c| {
            e.len() == 1_000 && c.values().all(|d| d.index == new) && differences(e, c).is_empty()
        })
        .await;
    assert_eq!(ids(&c), ids(&synced), "the rows are not the ones synced");
    for (id, row) in &c {
        assert_eq!(row.content, synced[id].content, "{id}: content changed");
    }
    let rounds = essync.rounds();
    assert_eq!(
        cassandra_deletes(&rounds),
        0,
        "essync deleted rows on the way:\n{}",
        essync.output().join("\n")
    );
    // A round that ran while both indices held the documents reports their ids as held twice;
    // once the old index is gone, nothing stays recorded as failed.
    let start = std::time::Instant::now();
    loop {
        let (code, stdout, stderr) = run_to_end(&[
            "--cassandra".to_string(),
            cassandra_node(),
            "errors".to_string(),
            s.target(),
        ]);
        assert_eq!(code, Some(0), "{stderr}");
        if stdout.contains("no recorded failures") {
            break;
        }
        assert!(
            start.elapsed() < SETTLE,
            "failures still recorded after the reindex:\n{stdout}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
