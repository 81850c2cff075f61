//! The Elasticsearch store against a real server: round trips, paging, the change feed,
//! race-safe writes and bad data. Setup and checks go through the plain client where the store
//! itself is not what is tested.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use elasticsearch::http::Method;
use elasticsearch::http::headers::HeaderMap;
use essync::Document;
use essync::document::now_millis;
use essync::elasticsearch::{
    ElasticsearchStore, EsCheckpoint, EsDelete, EsExpected, EsWrite, METADATA_FIELD,
};
use essync::store::{Lookup, Read, ReadError, WriteOutcome};
use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support;

/// A raw request through the plain client.
async fn raw(method: Method, path: &str, body: Option<Value>) -> Value {
    let client = support::es_client();
    let body = body.map(|b| b.to_string());
    let response = client
        .send(
            method,
            path,
            HeaderMap::new(),
            Option::<&()>::None,
            body.as_deref(),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    response.json().await.unwrap_or(Value::Null)
}

fn at(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).expect("valid time")
}

/// Everything the change feed returns from `from`, and the checkpoint after it.
async fn drain(
    store: &ElasticsearchStore,
    from: &EsCheckpoint,
) -> (Vec<Read<essync::elasticsearch::EsVersion>>, EsCheckpoint) {
    let mut reads = Vec::new();
    let mut checkpoint = from.clone();
    let mut pages = std::pin::pin!(store.changes(from, now_millis()));
    while let Some(page) = pages.next().await {
        let page = page.expect("change page");
        reads.extend(page.reads);
        checkpoint = page.checkpoint;
    }
    (reads, checkpoint)
}

fn ids_of(reads: &[Read<essync::elasticsearch::EsVersion>]) -> HashSet<Uuid> {
    reads
        .iter()
        .filter_map(|r| match r {
            Read::Document(stored) => Some(stored.document.id),
            Read::Bad(bad) => bad.id,
        })
        .collect()
}

#[tokio::test]
async fn documents_round_trip_field_by_field_including_a_1mb_body() {
    let (store, prefix) = support::es_store("es_roundtrip").await;
    let index = format!("{prefix}_docs");
    let rich = Document::new(&index, "article", support::rich_content()).at(at(1_700_000_000_123));
    let big = Document::new(
        &index,
        "blob",
        json!({"body": "ü".repeat(512 * 1024), "n": 1}),
    );
    assert_eq!(
        store
            .insert_or_replace_document(&rich)
            .await
            .expect("write"),
        WriteOutcome::Inserted
    );
    assert_eq!(
        store.insert_or_replace_document(&big).await.expect("write"),
        WriteOutcome::Inserted
    );

    let found = store
        .get_by_ids(
            &[
                (rich.id, Some(index.clone())),
                (big.id, Some(index.clone())),
            ],
            now_millis(),
        )
        .await
        .expect("read back");
    let Some(Lookup::Found(Read::Document(stored))) = found.get(&rich.id) else {
        panic!("rich document not found: {found:?}");
    };
    assert_eq!(stored.document, rich);
    assert!(stored.stamped);
    let Some(Lookup::Found(Read::Document(stored_big))) = found.get(&big.id) else {
        panic!("1 MB document not found");
    };
    assert_eq!(stored_big.document.content, big.content);
    assert!(stored_big.document.timestamp.is_some(), "stamped on write");

    // What Elasticsearch holds, through the plain client: content plus the metadata field.
    let raw_doc = raw(Method::Get, &format!("/{index}/_doc/{}", rich.id), None).await;
    let mut source = raw_doc["_source"].clone();
    let metadata = source
        .as_object_mut()
        .and_then(|s| s.remove(METADATA_FIELD))
        .expect("metadata field");
    assert_eq!(source, rich.content);
    assert_eq!(metadata["type"], "article");
    assert_eq!(metadata["timestamp"], "2023-11-14T22:13:20.123Z");
    // essync's mark: the digest of the version written, which it created (no `over`).
    assert_eq!(metadata["digest"], json!(rich.digest().hex()));
    assert!(metadata.get("over").is_none(), "{metadata}");
    assert_eq!(metadata.as_object().map(|m| m.len()), Some(3), "{metadata}");
    let mapping = raw(Method::Get, &format!("/{index}/_mapping"), None).await;
    assert_eq!(
        mapping[&index]["mappings"]["properties"][METADATA_FIELD]["properties"]["timestamp"]["type"],
        "date"
    );
}

#[tokio::test]
async fn get_documents_returns_100000_documents_exactly_once() {
    const BIG: usize = 100_000;
    let (store, prefix) = support::es_store("es_paging").await;
    let big = format!("{prefix}_big");
    let small = format!("{prefix}_small");
    raw(
        Method::Put,
        &format!("/{big}"),
        Some(json!({"settings": {"number_of_shards": 3, "number_of_replicas": 0, "refresh_interval": "-1"}})),
    )
    .await;
    let mut expected = HashSet::with_capacity(BIG + 10);
    let mut chunk = Vec::with_capacity(5000);
    for n in 0..BIG {
        let id = Uuid::new_v4();
        expected.insert(id);
        chunk.push((
            big.clone(),
            id.to_string(),
            json!({"n": n, "text": "some words here"}),
        ));
        if chunk.len() == 5000 {
            support::es_bulk(&chunk).await;
            chunk.clear();
        }
    }
    for n in 0..10 {
        let id = Uuid::new_v4();
        expected.insert(id);
        chunk.push((small.clone(), id.to_string(), json!({"n": n})));
    }
    support::es_bulk(&chunk).await;

    // Not refreshed on purpose: the store makes what it reads searchable itself.
    let mut seen = HashSet::with_capacity(BIG + 10);
    let mut duplicates = 0;
    let mut documents = std::pin::pin!(store.get_documents());
    while let Some(document) = documents.next().await {
        let document = document.expect("document");
        if !seen.insert(document.id) {
            duplicates += 1;
        }
    }
    assert_eq!(duplicates, 0);
    assert_eq!(seen.len(), BIG + 10);
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn the_change_feed_catches_backdated_unrefreshed_and_equal_timestamp_writes() {
    let (store, prefix) = support::es_store("es_feed").await;
    let index = format!("{prefix}_feed");
    // No refresh at all unless asked: an unrefreshed write stays invisible to search.
    raw(
        Method::Put,
        &format!("/{index}"),
        Some(json!({"settings": {"number_of_shards": 2, "number_of_replicas": 0, "refresh_interval": "-1"}})),
    )
    .await;
    let before: Vec<(String, String, Value)> = (0..5)
        .map(|n| (index.clone(), Uuid::new_v4().to_string(), json!({"n": n})))
        .collect();
    support::es_bulk(&before).await;

    let start = store.current_positions().await.expect("positions");
    let (reads, checkpoint) = drain(&store, &start).await;
    assert!(
        reads.is_empty(),
        "nothing changed, yet the feed returned {reads:?}"
    );
    assert_eq!(checkpoint, start);

    // A write whose timestamp is far older than the checkpoint.
    let backdated = Uuid::new_v4();
    let old =
        json!({"x": 1, METADATA_FIELD: {"type": "t", "timestamp": "2001-01-01T00:00:00.000Z"}});
    // Many writes with one and the same timestamp.
    let same_time =
        json!({"y": 2, METADATA_FIELD: {"type": "t", "timestamp": "2030-01-01T00:00:00.000Z"}});
    let mut writes = vec![(index.clone(), backdated.to_string(), old)];
    let equal_ids: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
    for id in &equal_ids {
        writes.push((index.clone(), id.to_string(), same_time.clone()));
    }
    // An update of a document that existed before the checkpoint.
    writes.push((index.clone(), before[0].1.clone(), json!({"n": 99})));
    support::es_bulk(&writes).await;
    // A write made just before the read, never refreshed by its writer.
    let unrefreshed = Uuid::new_v4();
    raw(
        Method::Put,
        &format!("/{index}/_doc/{unrefreshed}?refresh=false"),
        Some(json!({"z": 3})),
    )
    .await;

    let (reads, after) = drain(&store, &checkpoint).await;
    let ids = ids_of(&reads);
    let mut expected: HashSet<Uuid> = equal_ids.iter().copied().collect();
    expected.insert(backdated);
    expected.insert(unrefreshed);
    expected.insert(before[0].1.parse().expect("uuid"));
    assert_eq!(ids, expected);
    assert_eq!(reads.len(), expected.len(), "each change once");
    let backdated_read = reads.iter().find_map(|r| match r {
        Read::Document(s) if s.document.id == backdated => Some(s.document.clone()),
        _ => None,
    });
    assert_eq!(
        backdated_read.and_then(|d| d.timestamp_millis()),
        Some(978_307_200_000)
    );

    let (reads, last) = drain(&store, &after).await;
    assert!(
        reads.is_empty(),
        "nothing changed since, yet {} reads",
        reads.len()
    );
    assert_eq!(last, after);
}

#[tokio::test]
async fn stale_writes_never_replace_newer_versions_under_concurrent_writers() {
    let (store, prefix) = support::es_store("es_stale").await;
    let index = format!("{prefix}_race");
    let id = Uuid::new_v4();
    store.ensure_index(&index, Some(1)).await.expect("index");
    // A second, independent writer on the same indices.
    let second = ElasticsearchStore::connect(store.config().clone())
        .await
        .expect("second writer");
    let stores = [std::sync::Arc::new(store), std::sync::Arc::new(second)];
    // Two writers write the same id with interleaved timestamps: the greatest must win.
    let mut tasks = Vec::new();
    for (w, store) in stores.iter().enumerate() {
        let store = store.clone();
        let index = index.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = HashMap::new();
            for n in 0..40i64 {
                let millis = 1_000_000 + n * 10 + if w == 0 { 0 } else { 5 }
                    - if n % 3 == 0 { 300 } else { 0 };
                let doc =
                    Document::with_id(id, &index, "t", json!({"writer": w, "n": n})).at(at(millis));
                let outcome = store.insert_or_replace_document(&doc).await.expect("write");
                *outcomes.entry(format!("{outcome:?}")).or_insert(0) += 1;
            }
            outcomes
        }));
    }
    let mut all = HashMap::new();
    for task in tasks {
        for (outcome, count) in task.await.expect("writer") {
            *all.entry(outcome).or_insert(0) += count;
        }
    }
    assert!(all.contains_key("NewerAlreadyThere"), "{all:?}");
    let found = stores[0]
        .get_by_ids(&[(id, Some(index.clone()))], now_millis())
        .await
        .expect("read");
    let Some(Lookup::Found(Read::Document(stored))) = found.get(&id) else {
        panic!("document missing");
    };
    // The latest timestamp written: writer 1, n = 38 (n = 39 was backdated).
    assert_eq!(
        stored.document.timestamp_millis(),
        Some(1_000_000 + 38 * 10 + 5)
    );
    assert_eq!(stored.document.content, json!({"writer": 1, "n": 38}));

    // A compare-and-set against a version that is no longer there writes nothing.
    let stale = EsWrite {
        document: Document::with_id(id, &index, "t", json!({"stale": true})).at(at(9_999_999_999)),
        expected: EsExpected::Version(essync::elasticsearch::EsVersion {
            seq_no: 0,
            ..stored.version.clone()
        }),
        digest: None,
    };
    let applied = stores[0].write_batch(&[stale]).await.expect("write");
    assert_eq!(applied[0].outcome, WriteOutcome::ChangedUnderneath);

    // The same for a delete: against an old version it deletes nothing; against the current
    // one it deletes, and the id is then absent (not unknown).
    let old = EsDelete {
        id,
        expected: essync::elasticsearch::EsVersion {
            seq_no: 0,
            ..stored.version.clone()
        },
    };
    let applied = stores[0].delete_batch(&[old]).await.expect("delete");
    assert_eq!(applied[0].outcome, WriteOutcome::ChangedUnderneath);
    let current = EsDelete {
        id,
        expected: stored.version.clone(),
    };
    let applied = stores[0].delete_batch(&[current]).await.expect("delete");
    assert_eq!(applied[0].outcome, WriteOutcome::Deleted);
    let found = stores[0]
        .locate(&[(id, Some(index.clone()))])
        .await
        .expect("locate");
    assert_eq!(found.get(&id), Some(&Lookup::Absent));
}

/// A closed index cannot say what it holds: its documents are unknown, never absent (which
/// would read as deleted).
#[tokio::test]
async fn documents_of_a_closed_index_are_unknown_not_absent() {
    let (store, prefix) = support::es_store("es_closed").await;
    let index = format!("{prefix}_shut");
    let doc = Document::new(&index, "t", json!({"n": 1})).at(now_millis());
    store.insert_or_replace_document(&doc).await.expect("write");
    raw(Method::Post, &format!("/{index}/_close"), None).await;
    let hint = [(doc.id, Some(index.clone()))];
    let found = store.get_by_ids(&hint, now_millis()).await.expect("read");
    assert!(
        matches!(found.get(&doc.id), Some(Lookup::Unknown(_))),
        "{found:?}"
    );
    let located = store.locate(&hint).await.expect("locate");
    assert!(
        matches!(located.get(&doc.id), Some(Lookup::Unknown(_))),
        "{located:?}"
    );
    raw(Method::Post, &format!("/{index}/_open"), None).await;
}

#[tokio::test]
async fn bad_documents_are_reported_with_their_reason_and_the_rest_flows() {
    let (store, prefix) = support::es_store("es_bad").await;
    let index = format!("{prefix}_mixed");
    let good: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let bad_metadata = Uuid::new_v4();
    let mut docs: Vec<(String, String, Value)> = good
        .iter()
        .map(|id| (index.clone(), id.to_string(), json!({"ok": true})))
        .collect();
    docs.push((
        index.clone(),
        "not-a-uuid".to_string(),
        json!({"ok": false}),
    ));
    docs.push((
        index.clone(),
        bad_metadata.to_string(),
        json!({METADATA_FIELD: {"timestamp": "last tuesday"}}),
    ));
    support::es_bulk(&docs).await;

    let mut ok = HashSet::new();
    let mut bad = Vec::new();
    let mut documents = std::pin::pin!(store.get_documents());
    while let Some(item) = documents.next().await {
        match item {
            Ok(document) => {
                ok.insert(document.id);
            }
            Err(ReadError::Bad(b)) => bad.push(b),
            Err(ReadError::Store(e)) => panic!("store failed: {e}"),
        }
    }
    assert_eq!(ok, good.iter().copied().collect());
    assert_eq!(bad.len(), 2, "{bad:?}");
    let not_uuid = bad
        .iter()
        .find(|b| b.id.is_none())
        .expect("non-uuid id reported");
    assert_eq!(not_uuid.location, format!("{index}/not-a-uuid"));
    assert!(not_uuid.reason.contains("not a uuid"));
    let metadata = bad
        .iter()
        .find(|b| b.id == Some(bad_metadata))
        .expect("bad metadata reported");
    assert!(metadata.reason.contains("RFC 3339"), "{}", metadata.reason);

    // Writes: an index name Elasticsearch cannot accept, content using the reserved field and
    // a mapping conflict are refused one by one; the good document is written.
    let written = Document::new(format!("{prefix}_ok"), "t", json!({"n": 1})).at(now_millis());
    let conflict_index = format!("{prefix}_typed");
    let typed = Document::new(&conflict_index, "t", json!({"n": 1})).at(now_millis());
    store
        .write_batch(&[EsWrite {
            document: typed,
            expected: EsExpected::Absent,
            digest: None,
        }])
        .await
        .expect("write");
    let writes = [
        Document::new(format!("{prefix}_Upper Case"), "t", json!({})),
        Document::new(
            format!("{prefix}_reserved"),
            "t",
            json!({METADATA_FIELD: 1}),
        ),
        Document::new(&conflict_index, "t", json!({"n": {"not": "a number"}})),
        written.clone(),
    ]
    .into_iter()
    .map(|d| EsWrite {
        document: d.at(now_millis()),
        expected: EsExpected::Absent,
        digest: None,
    })
    .collect::<Vec<_>>();
    let outcomes: Vec<WriteOutcome> = store
        .write_batch(&writes)
        .await
        .expect("write batch")
        .into_iter()
        .map(|applied| applied.outcome)
        .collect();
    let reason = |n: usize| match &outcomes[n] {
        WriteOutcome::Rejected(reason) => reason.clone(),
        other => panic!("write {n}: {other:?}"),
    };
    assert!(reason(0).contains("uppercase"), "{}", reason(0));
    assert!(reason(1).contains("reserves"), "{}", reason(1));
    assert!(
        reason(2).contains("mapper_parsing_exception")
            || reason(2).contains("document_parsing_exception"),
        "{}",
        reason(2)
    );
    assert_eq!(outcomes[3], WriteOutcome::Inserted);
}

/// A lookup of a page of ids costs a fixed number of requests whatever the result windows of
/// the selection: an index with a small `max_result_window` is searched on its own, and pays
/// more only when it holds the ids looked up; the other indices' requests stay as they are.
#[tokio::test]
async fn an_index_with_a_small_result_window_costs_the_other_indices_nothing() {
    let (store, prefix) = support::es_store("es_window").await;
    let tiny = format!("{prefix}_tiny");
    raw(
        Method::Put,
        &format!("/{tiny}"),
        Some(json!({"settings": {"index.max_result_window": 10}})),
    )
    .await;
    let mut docs = Vec::new();
    let mut wanted = Vec::new();
    for n in 0..430 {
        let index = if n < 30 {
            tiny.clone()
        } else {
            format!("{prefix}_a{}", n % 8)
        };
        let id = Uuid::new_v4();
        docs.push((index.clone(), id.to_string(), json!({"n": n})));
        wanted.push((id, Some(index)));
    }
    support::es_bulk(&docs).await;

    let count = |before: &std::collections::BTreeMap<&str, u64>, api: &str| {
        store.requests().snapshot().get(api).copied().unwrap_or(0)
            - before.get(api).copied().unwrap_or(0)
    };
    // The ordinary indices' ids: one real-time read, one search of the selection, and one
    // search of the small index (which holds none of them).
    let before = store.requests().snapshot();
    let found = store
        .get_by_ids(&wanted[30..], now_millis())
        .await
        .expect("lookup");
    assert_eq!(
        (count(&before, "mget"), count(&before, "search")),
        (1, 2),
        "requests for 400 ids in ordinary indices"
    );
    let found_n = |found: &HashMap<Uuid, Lookup<Read<_>>>, id: &Uuid| match found.get(id) {
        Some(Lookup::Found(Read::Document(stored))) => stored.document.content["n"].clone(),
        other => panic!("{id}: {other:?}"),
    };
    for (n, (id, _)) in wanted.iter().enumerate().skip(30) {
        assert_eq!(found_n(&found, id), json!(n));
    }

    // The small index's own ids are found, real-time and by its own searches (their copies
    // checked in pages it accepts).
    let found = store
        .get_by_ids(&wanted[..60], now_millis())
        .await
        .expect("lookup");
    for (n, (id, _)) in wanted.iter().enumerate().take(60) {
        assert_eq!(found_n(&found, id), json!(n));
    }
    // Without a hint, and where an absence would count as a delete, they are found too.
    let unhinted: Vec<(Uuid, Option<String>)> =
        wanted[..30].iter().map(|(id, _)| (*id, None)).collect();
    let located = store.locate(&unhinted).await.expect("locate");
    for (id, _) in &unhinted {
        assert!(
            matches!(located.get(id), Some(Lookup::Found(v)) if v.index == tiny),
            "{id}: {:?}",
            located.get(id)
        );
    }
}
