//! What real clusters hold: ids in other uuid spellings, indices that refuse essync's reads or
//! writes, indices that do not keep `_source` whole or rewrite documents in a pipeline, closed
//! indices and red shards, custom routing, rows with a time to live. Each test drives the real
//! binary (or the store, for what only the library shows) against the real servers, and checks
//! the stores through their own clients.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use elasticsearch::http::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::log::Round;
use crate::support::scenario::{Scenario, doc, now_ms, run_to_end};
use crate::support::{cassandra_node, es_url, policies};

/// Every document of the indices matching `pattern` as Elasticsearch holds it: `_id` exactly as
/// spelled, by `index/_id`, with its `_source`.
async fn raw_documents(s: &Scenario, pattern: &str) -> BTreeMap<String, Value> {
    s.es_request(
        Method::Post,
        &format!("/{pattern}/_refresh?allow_no_indices=true"),
        None,
    )
    .await;
    let answer = s
        .es_request(
            Method::Post,
            &format!("/{pattern}/_search?allow_no_indices=true"),
            Some(json!({"size": 1000, "seq_no_primary_term": true})),
        )
        .await;
    answer["hits"]["hits"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|hit| {
            (
                format!(
                    "{}/{}",
                    hit["_index"].as_str().unwrap_or_default(),
                    hit["_id"].as_str().unwrap_or_default()
                ),
                hit,
            )
        })
        .collect()
}

/// Creates an index with the given settings and mappings; panics when Elasticsearch refuses.
async fn create_index(s: &Scenario, index: &str, body: Value) {
    let answer = s
        .es_request(Method::Put, &format!("/{index}"), Some(body))
        .await;
    assert_eq!(answer["acknowledged"], true, "create {index}: {answer}");
}

/// Indexes a document under the `_id` given, exactly as spelled.
async fn es_put(s: &Scenario, index: &str, id: &str, source: Value, query: &str) {
    let answer = s
        .es_request(
            Method::Put,
            &format!("/{index}/_doc/{id}?refresh=true{query}"),
            Some(source),
        )
        .await;
    assert!(
        answer["result"].is_string(),
        "Elasticsearch refused {index}/{id}: {answer}"
    );
}

/// `essync errors` for the scenario's table.
fn recorded_errors(s: &Scenario) -> String {
    let (code, stdout, stderr) = run_to_end(&[
        "--cassandra".to_string(),
        cassandra_node(),
        "errors".to_string(),
        s.target(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    stdout
}

/// Polls `essync errors` until a line holds every one of `parts`; returns that line.
async fn wait_for_error(s: &Scenario, parts: &[&str]) -> String {
    let start = Instant::now();
    loop {
        let listed = recorded_errors(s);
        if let Some(line) = listed
            .lines()
            .find(|line| parts.iter().all(|p| line.contains(p)))
        {
            return line.to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "no recorded failure with {parts:?}:\n{listed}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The essync metadata of a document written by a user who knows essync.
fn stamped(content: Value, timestamp: i64) -> Value {
    let mut source = content;
    source["_essync"] = json!({
        "type": "t",
        "timestamp": chrono::DateTime::from_timestamp_millis(timestamp)
            .expect("a time")
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    source
}

/// The documents rounds read from Elasticsearch.
fn es_reads(rounds: &[Round]) -> u64 {
    rounds.iter().map(|round| round.read[0]).sum()
}

// 26, and issue case 1
#[tokio::test]
async fn ids_in_any_uuid_spelling_are_synced_once_under_the_id_they_have() {
    let s = Scenario::new("c_ids").await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let index = s.index("dotnet");
    let (upper, braced, simple) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let spelled = [
        (upper, upper.hyphenated().to_string().to_uppercase()),
        (braced, braced.braced().to_string().to_uppercase()),
        (simple, simple.simple().to_string()),
    ];
    let t = now_ms();
    for (n, (_, raw)) in spelled.iter().enumerate() {
        es_put(&s, &index, raw, stamped(json!({"n": n}), t), "").await;
    }
    s.wait_until("every spelling reaches Cassandra", |_, c| {
        spelled.iter().all(|(id, _)| c.contains_key(id))
    })
    .await;
    // Changed in Cassandra, written back under the `_id` Elasticsearch has.
    for (n, (id, _)) in spelled.iter().enumerate() {
        s.cql_write(
            *id,
            &doc(&index, "t", t + 1_000, json!({"n": n, "changed": true})),
        )
        .await;
    }
    s.wait_until("the changes reach Elasticsearch", |e, _| {
        spelled
            .iter()
            .all(|(id, _)| e.get(id).is_some_and(|d| d.content["changed"] == true))
    })
    .await;
    let held = raw_documents(&s, &index).await;
    let expected: Vec<String> = spelled
        .iter()
        .map(|(_, raw)| format!("{index}/{raw}"))
        .collect();
    assert_eq!(
        held.keys().cloned().collect::<Vec<_>>(),
        {
            let mut sorted = expected.clone();
            sorted.sort();
            sorted
        },
        "one document per id, under the `_id` it had"
    );
}

// 26: two `_id`s that spell one uuid, or one id in two indices, are a reported conflict
#[tokio::test]
async fn one_id_held_by_two_documents_is_reported_and_never_synced() {
    let s = Scenario::new("c_twice").await;
    let (spellings, indices, fine) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let t = now_ms() - 1_000;
    let (a, b) = (s.index("a"), s.index("b"));
    es_put(
        &s,
        &a,
        &spellings.to_string(),
        stamped(json!({"v": 1}), t),
        "",
    )
    .await;
    es_put(
        &s,
        &a,
        &spellings.to_string().to_uppercase(),
        stamped(json!({"v": 2}), t),
        "",
    )
    .await;
    es_put(
        &s,
        &a,
        &indices.to_string(),
        stamped(json!({"v": 3}), t),
        "",
    )
    .await;
    es_put(
        &s,
        &b,
        &indices.to_string(),
        stamped(json!({"v": 4}), t),
        "",
    )
    .await;
    es_put(&s, &b, &fine.to_string(), stamped(json!({"v": 5}), t), "").await;
    let essync = s.essync(&["-s"]);
    s.wait_until("the unrelated document synced", |_, c| {
        c.contains_key(&fine)
    })
    .await;
    essync.wait_rounds(0, 2).await;
    for id in [spellings, indices] {
        let line = wait_for_error(&s, &[&id.to_string()]).await;
        assert!(line.contains("held by 2 documents"), "{line}");
    }
    let cassandra = s.cassandra().await;
    assert!(!cassandra.contains_key(&spellings), "{cassandra:?}");
    assert!(!cassandra.contains_key(&indices), "{cassandra:?}");
    assert_eq!(raw_documents(&s, &s.indices()).await.len(), 5);
}

// 24, and issue case 2
#[tokio::test]
async fn an_index_with_a_small_result_window_fails_nothing_else_and_syncs_in_small_pages() {
    let s = Scenario::new("c_window").await;
    let small = s.index("small");
    create_index(
        &s,
        &small,
        json!({"settings": {"index.max_result_window": 10, "number_of_shards": 1}}),
    )
    .await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let t = now_ms();
    let in_small: Vec<(Uuid, crate::support::scenario::Doc)> = (0..25)
        .map(|n| (Uuid::new_v4(), doc(&small, "t", t, json!({"n": n}))))
        .collect();
    s.es_bulk(&in_small).await;
    let elsewhere = Uuid::new_v4();
    s.cql_write(
        elsewhere,
        &doc(&s.index("other"), "t", t, json!({"other": true})),
    )
    .await;
    // The scenario's own search of all indices cannot page past the small window either: the
    // small index is checked by count, the rest document by document.
    let (_, cassandra) = s
        .wait_until("both ways, every document", |e, c| {
            e.contains_key(&elsewhere) && in_small.iter().all(|(id, _)| c.contains_key(id))
        })
        .await;
    for (id, written) in &in_small {
        assert_eq!(cassandra.get(id), Some(written));
    }
    let count = s
        .es_request(Method::Get, &format!("/{small}/_count"), None)
        .await;
    assert_eq!(count["count"], 25, "{count}");
    let rounds = essync.rounds();
    assert!(rounds.iter().all(|r| r.errors == 0), "{rounds:?}");
}

// 24: very large documents are read in pages sized by bytes, from the first page on
#[tokio::test]
async fn pages_are_sized_by_bytes_from_the_first_one() {
    use essync::elasticsearch::{ElasticsearchConfig, ElasticsearchStore, EsCheckpoint};
    use futures::StreamExt;
    let s = Scenario::new("c_large").await;
    let index = s.index("large");
    let big = "x".repeat(300_000);
    let docs: Vec<(Uuid, crate::support::scenario::Doc)> = (0..12)
        .map(|n| {
            (
                Uuid::new_v4(),
                doc(&index, "t", now_ms(), json!({"n": n, "text": big})),
            )
        })
        .collect();
    s.es_bulk(&docs).await;
    let mut config = ElasticsearchConfig::with_urls([es_url()]);
    config.indices = essync::elasticsearch::IndexSelection::new([index.clone()]).expect("pattern");
    config.page_bytes = 1 << 20;
    let store = ElasticsearchStore::connect(config).await.expect("connect");
    let mut pages = std::pin::pin!(store.changes(&EsCheckpoint::default(), chrono::Utc::now()));
    let mut sizes = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.expect("page");
        assert!(page.failed.is_empty(), "{:?}", page.failed);
        if !page.reads.is_empty() {
            sizes.push(page.reads.len());
        }
    }
    assert_eq!(sizes.iter().sum::<usize>(), 12, "{sizes:?}");
    assert!(
        sizes.iter().all(|&n| n <= 4),
        "pages of 300 kB documents within 1 MB: {sizes:?}"
    );
}

// 25, and issue case 3
#[tokio::test]
async fn fields_elasticsearch_leaves_out_of_source_are_never_deleted_from_cassandra() {
    let s = Scenario::new("c_excl").await;
    let (excluding, synthetic) = (s.index("excl"), s.index("synth"));
    create_index(
        &s,
        &excluding,
        json!({"mappings": {"_source": {"excludes": ["secret"]}}}),
    )
    .await;
    create_index(
        &s,
        &synthetic,
        json!({"settings": {"index.mapping.source.mode": "synthetic"}}),
    )
    .await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let (id, from_es, fine) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let written = doc(&excluding, "t", now_ms(), json!({"a": 1, "secret": "s"}));
    s.cql_write(id, &written).await;
    es_put(
        &s,
        &synthetic,
        &from_es.to_string(),
        stamped(json!({"b": [3, 1, 2], "f": 1.50}), now_ms()),
        "",
    )
    .await;
    s.cql_write(
        fine,
        &doc(&s.index("plain"), "t", now_ms(), json!({"ok": 1})),
    )
    .await;
    s.wait_until("the plain document synced", |e, _| e.contains_key(&fine))
        .await;
    let before = essync.rounds().len();
    essync.wait_rounds(before, 3).await;
    let cassandra = s.cassandra().await;
    assert_eq!(cassandra.get(&id), Some(&written), "the row is kept whole");
    assert!(
        !cassandra.contains_key(&from_es),
        "nothing read from a synthetic source"
    );
    let line = wait_for_error(&s, &[&excluding, "excludes: secret"]).await;
    assert!(line.contains("essync does not sync index"), "{line}");
    wait_for_error(&s, &[&synthetic, "synthetic"]).await;
    // Nothing is written for ever: the refused documents are not in Elasticsearch.
    assert!(raw_documents(&s, &excluding).await.is_empty());
    let refusals = essync
        .output()
        .iter()
        .filter(|l| l.contains("essync does not sync index") && l.contains(&excluding))
        .filter(|l| !l.contains("cannot sync"))
        .count();
    assert_eq!(
        refusals,
        1,
        "one line in the log:\n{}",
        essync.output().join("\n")
    );
}

// 25: pipelines
#[tokio::test]
async fn a_default_pipeline_is_bypassed_and_a_final_pipeline_that_fails_is_refused() {
    let s = Scenario::new("c_pipe").await;
    // The only processor of the test server's distribution fails without security: a
    // pipeline that breaks every document it sees.
    let pipeline = format!("{}_breaks", s.name);
    let answer = s
        .es_request(
            Method::Put,
            &format!("/_ingest/pipeline/{pipeline}"),
            Some(json!({"processors": [{"set_security_user": {"field": "user"}}]})),
        )
        .await;
    assert_eq!(answer["acknowledged"], true, "{answer}");
    let (by_default, at_last) = (s.index("default"), s.index("final"));
    create_index(
        &s,
        &by_default,
        json!({"settings": {"index.default_pipeline": pipeline}}),
    )
    .await;
    create_index(
        &s,
        &at_last,
        json!({"settings": {"index.final_pipeline": pipeline}}),
    )
    .await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let (bypassed, refused) = (Uuid::new_v4(), Uuid::new_v4());
    let bypassing = doc(&by_default, "t", now_ms(), json!({"a": 1.50}));
    s.cql_write(bypassed, &bypassing).await;
    s.cql_write(refused, &doc(&at_last, "t", now_ms(), json!({"b": 2})))
        .await;
    s.wait_until(
        "the row reaches the index with a default pipeline",
        |e, _| e.get(&bypassed) == Some(&bypassing),
    )
    .await;
    let line = wait_for_error(&s, &[&refused.to_string()]).await;
    assert!(line.contains("final pipeline"), "{line}");
    // The round that recorded the error may still be finishing: the idle rounds come after it.
    let finishing = essync.rounds().len();
    essync.wait_rounds(finishing, 1).await;
    let before = essync.rounds().len();
    let rounds = essync.wait_rounds(before, 2).await;
    assert!(rounds.iter().all(|r| r.written == [0, 0]), "{rounds:?}");
    s.es_request(Method::Delete, &format!("/{by_default},{at_last}"), None)
        .await;
    s.es_request(
        Method::Delete,
        &format!("/_ingest/pipeline/{pipeline}"),
        None,
    )
    .await;
}

// Checkpoints: a closed index fails only itself, and its position survives
#[tokio::test]
async fn a_closed_index_fails_only_itself_and_is_read_from_where_it_was_once_reopened() {
    let s = Scenario::new("c_closed").await;
    let (closing, open) = (s.index("closing"), s.index("open"));
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let t = now_ms();
    let first: Vec<(Uuid, crate::support::scenario::Doc)> = (0..20)
        .map(|n| (Uuid::new_v4(), doc(&closing, "t", t, json!({"n": n}))))
        .collect();
    s.es_bulk(&first).await;
    s.wait_equal(20).await;
    let closed = s
        .es_request(Method::Post, &format!("/{closing}/_close"), None)
        .await;
    assert_eq!(closed["acknowledged"], true, "{closed}");
    let (from_cassandra, from_es) = (Uuid::new_v4(), Uuid::new_v4());
    s.cql_write(from_cassandra, &doc(&open, "t", t, json!({"c": 1})))
        .await;
    es_put(
        &s,
        &open,
        &from_es.to_string(),
        stamped(json!({"e": 1}), t),
        "",
    )
    .await;
    s.wait_until("the other index syncs both ways", |e, c| {
        e.contains_key(&from_cassandra) && c.contains_key(&from_es)
    })
    .await;
    let line = wait_for_error(&s, &[&format!("elasticsearch:index {closing}")]).await;
    assert!(line.contains("closed"), "{line}");
    assert_eq!(
        s.cassandra().await.len(),
        22,
        "nothing deleted from a closed index"
    );

    let reopened = s
        .es_request(
            Method::Post,
            &format!("/{closing}/_open?wait_for_active_shards=1"),
            None,
        )
        .await;
    assert_eq!(reopened["acknowledged"], true, "{reopened}");
    let before = essync.rounds().len();
    let late = Uuid::new_v4();
    es_put(
        &s,
        &closing,
        &late.to_string(),
        stamped(json!({"late": true}), t),
        "",
    )
    .await;
    s.wait_until("the write after the reopen synced", |_, c| {
        c.contains_key(&late)
    })
    .await;
    let after = essync.rounds();
    assert!(
        es_reads(&after[before..]) < 20,
        "the reopened index is read from where it was, not from its start: {:?}",
        &after[before..]
    );
    s.wait_equal(23).await;
}

// 24: an index with no shard available does not hold up the others
#[tokio::test]
async fn an_index_without_an_available_shard_does_not_hold_up_the_others() {
    let s = Scenario::new("c_red").await;
    let (red, other) = (s.index("red"), s.index("other"));
    // Pinned to a node that does not exist: no shard of it ever starts.
    create_index(
        &s,
        &red,
        json!({"settings": {
            "number_of_shards": 2,
            "number_of_replicas": 0,
            "index.routing.allocation.require._name": "no-such-node",
        }}),
    )
    .await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let (from_cassandra, from_es) = (Uuid::new_v4(), Uuid::new_v4());
    let t = now_ms();
    s.cql_write(from_cassandra, &doc(&other, "t", t, json!({"c": 1})))
        .await;
    es_put(
        &s,
        &other,
        &from_es.to_string(),
        stamped(json!({"e": 1}), t),
        "",
    )
    .await;
    let reached = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
        s.wait_until("the healthy index syncs both ways", |e, c| {
            e.contains_key(&from_cassandra) && c.contains_key(&from_es)
        }),
    ))
    .await;
    s.es_request(Method::Delete, &format!("/{red}"), None).await;
    assert!(reached.is_ok(), "{}", essync.output().join("\n"));
}

// Carried on rewrite: custom routing
#[tokio::test]
async fn a_document_indexed_with_custom_routing_is_written_back_with_it() {
    let s = Scenario::new("c_route").await;
    let index = s.index("routed");
    create_index(&s, &index, json!({"settings": {"number_of_shards": 5}})).await;
    let routing = "tenant-7";
    let shard_of = |answer: &Value| answer["shards"][0][0]["shard"].as_i64();
    let routed_shard = shard_of(
        &s.es_request(
            Method::Get,
            &format!("/{index}/_search_shards?routing={routing}"),
            None,
        )
        .await,
    );
    // An id whose own shard is another one: written without its routing, it would miss.
    let mut id = Uuid::new_v4();
    for _ in 0..50 {
        let own = shard_of(
            &s.es_request(
                Method::Get,
                &format!("/{index}/_search_shards?routing={id}"),
                None,
            )
            .await,
        );
        if own != routed_shard {
            break;
        }
        id = Uuid::new_v4();
    }
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let t = now_ms();
    es_put(
        &s,
        &index,
        &id.to_string(),
        stamped(json!({"v": 1}), t),
        &format!("&routing={routing}"),
    )
    .await;
    s.wait_until("the routed document reaches Cassandra", |_, c| {
        c.contains_key(&id)
    })
    .await;
    s.cql_write(id, &doc(&index, "t", t + 1_000, json!({"v": 2})))
        .await;
    s.wait_until("the change reaches the routed document", |e, _| {
        e.get(&id).is_some_and(|d| d.content["v"] == 2)
    })
    .await;
    let held = raw_documents(&s, &index).await;
    assert_eq!(held.len(), 1, "{held:?}");
    let hit = held.values().next().expect("one");
    assert_eq!(hit["_routing"], routing);
    let line = recorded_errors(&s);
    assert!(!line.contains(&id.to_string()), "{line}");
}

// Carried on rewrite: a row's time to live
#[tokio::test]
async fn a_rows_time_to_live_is_kept_when_essync_rewrites_it() {
    let s = Scenario::new("c_ttl").await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let id = Uuid::new_v4();
    let index = s.index("ttl");
    let t = now_ms();
    s.cql
        .query_unpaged(
            format!(
                "INSERT INTO {} (id, index_, type, timestamp, content) VALUES (?, ?, 't', ?, ?) \
                 USING TTL 3600",
                s.table()
            ),
            (id, &index, scylla::value::CqlTimestamp(t), r#"{"v":1}"#),
        )
        .await
        .expect("insert");
    s.wait_until("the row reaches Elasticsearch", |e, _| e.contains_key(&id))
        .await;
    s.es_write(id, &doc(&index, "t", t + 1_000, json!({"v": 2})))
        .await;
    s.wait_until("the change reaches Cassandra", |_, c| {
        c.get(&id).is_some_and(|d| d.content["v"] == 2)
    })
    .await;
    let rows = s
        .cql
        .query_unpaged(
            format!(
                "SELECT ttl(content), ttl(index_) FROM {} WHERE id = ?",
                s.table()
            ),
            (id,),
        )
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows");
    let (content, index_ttl) = rows
        .first_row::<(Option<i32>, Option<i32>)>()
        .expect("a row");
    for ttl in [content, index_ttl] {
        let ttl = ttl.expect("the rewritten row still has a time to live");
        assert!((3000..=3600).contains(&ttl), "{ttl}");
    }
}

// The cache of index decisions expires
#[tokio::test]
async fn decisions_about_an_index_are_checked_again_after_a_while() {
    use essync::Document;
    use essync::elasticsearch::{EsExpected, EsWrite, IndexSelection};
    use essync::store::WriteOutcome;
    let s = Scenario::new("c_recheck").await;
    let index = s.index("recreated");
    let mut config = essync::elasticsearch::ElasticsearchConfig::with_urls([es_url()]);
    config.indices = IndexSelection::new([s.indices()]).expect("pattern");
    config.index_recheck = Duration::from_secs(1);
    let store = essync::elasticsearch::ElasticsearchStore::connect(config)
        .await
        .expect("connect");
    let write = |content: Value| EsWrite {
        document: Document::new(&index, "t", content).at(chrono::Utc::now()),
        expected: EsExpected::Absent,
        digest: None,
    };
    let applied = store
        .write_batch(&[write(json!({"a": 1}))])
        .await
        .expect("write");
    assert!(applied[0].outcome.is_written(), "{:?}", applied[0]);
    // Someone deletes the index and creates it again, keeping part of `_source` only.
    s.es_request(Method::Delete, &format!("/{index}"), None)
        .await;
    create_index(
        &s,
        &index,
        json!({"mappings": {"_source": {"excludes": ["secret"]}}}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let applied = store
        .write_batch(&[write(json!({"a": 2, "secret": "s"}))])
        .await
        .expect("write");
    let WriteOutcome::Rejected(reason) = &applied[0].outcome else {
        panic!("written to an index that loses fields: {:?}", applied[0]);
    };
    assert!(reason.contains("excludes: secret"), "{reason}");
}

// A row for an index outside `--es-indices` is left alone, and holds up nothing
#[tokio::test]
async fn a_row_for_an_index_outside_the_synced_ones_is_left_alone() {
    let s = Scenario::new("c_out").await;
    s.create_table().await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    // Outside the scenario's `{name}_*` indices.
    let elsewhere = format!("{}-elsewhere", s.name);
    let (outside, inside) = (Uuid::new_v4(), Uuid::new_v4());
    let written = doc(&elsewhere, "t", now_ms(), json!({"a": 1}));
    s.cql_write(outside, &written).await;
    let synced = doc(&s.index("in"), "t", now_ms(), json!({"b": 2}));
    s.cql_write(inside, &synced).await;
    s.wait_until("the row inside the synced indices", |e, _| {
        e.get(&inside) == Some(&synced)
    })
    .await;
    let rounds = essync.rounds().len();
    essync.wait_rounds(rounds, 2).await;
    let answer = s
        .es_request(Method::Get, &format!("/{elsewhere}/_count"), None)
        .await;
    assert_eq!(answer["count"].as_u64().unwrap_or(0), 0, "{answer}");
    assert_eq!(s.cassandra().await.get(&outside), Some(&written));
}

// A policy that moves a document to an index outside `--es-indices`: the id is reported, and
// neither side is written (writing one side only would leave the two apart for good).
#[tokio::test]
async fn a_policy_that_moves_a_document_out_of_the_synced_indices_writes_neither_side() {
    let s = Scenario::new("c_moveout").await;
    let policy = ["--policy", policies::MISBEHAVING];
    s.once(&policy);
    let index = s.index("move-out");
    let id = Uuid::new_v4();
    s.cql_write(id, &doc(&index, "t", now_ms(), json!({"v": 1})))
        .await;
    s.once(&policy);
    let line = wait_for_error(&s, &[&id.to_string(), "not-synced-by-essync"]).await;
    assert!(line.contains("neither side is written"), "{line}");
    s.once(&policy);
    let (e, c) = (s.elasticsearch().await, s.cassandra().await);
    assert!(e.is_empty(), "written to Elasticsearch: {e:?}");
    assert_eq!(c.len(), 1, "{c:?}");
    let outside = s
        .es_request(
            Method::Get,
            &format!("/not-synced-by-essync/_doc/{id}"),
            None,
        )
        .await;
    assert_ne!(outside["found"], true, "{outside}");
}
