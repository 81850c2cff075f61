//! The Cassandra store against a real server: schema, round trips, paging, the change feed,
//! race-safe writes and bad data. Setup and checks go through plain CQL where the store itself
//! is not what is tested.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use essync::Document;
use essync::cassandra::{
    CassandraConfig, CassandraDelete, CassandraError, CassandraExpected, CassandraStore,
    CassandraWrite, TokenPosition, TokenRange, WriteMode, token_of,
};
use essync::document::now_millis;
use essync::store::{Read, ReadError, WriteOutcome};
use futures::StreamExt;
use scylla::client::session::Session;
use scylla::value::CqlTimestamp;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support;

fn at(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).expect("valid time")
}

/// Inserts a row through plain CQL, columns as given (None = null).
async fn insert_row(
    session: &Session,
    table: &str,
    id: Uuid,
    index: Option<&str>,
    timestamp: Option<i64>,
    content: Option<&str>,
) {
    session
        .query_unpaged(
            format!("INSERT INTO {table} (id, index_, type, timestamp, content) VALUES (?, ?, 't', ?, ?)"),
            (id, index, timestamp.map(CqlTimestamp), content),
        )
        .await
        .unwrap_or_else(|e| panic!("insert into {table}: {e}"));
}

/// The ids of every row the write-time sweep finds written at or after `since` (µs), in one
/// whole pass, reading ids and write times only.
async fn written_since(store: &CassandraStore, since: i64) -> HashSet<Uuid> {
    let mut found = HashSet::new();
    let mut position: Option<TokenPosition> = None;
    loop {
        let page = store
            .scan_page(position.as_ref(), 1000, false, TokenRange::WHOLE)
            .await
            .expect("scan page");
        for row in &page.rows {
            assert!(row.read.is_none(), "a write-time scan reads no content");
            if row.written_at.is_some_and(|w| w >= since) {
                found.insert(row.id);
            }
        }
        if page.done {
            return found;
        }
        position = page.position;
    }
}

/// The tokens essync computes are Cassandra's, and a scan of a range reads exactly the rows
/// whose tokens are in it: the ranges of one count read every row once.
#[tokio::test]
async fn tokens_are_cassandras_and_the_ranges_of_a_count_scan_each_row_once() {
    let store = support::cassandra_store("c_tokens").await;
    let session = support::cql_session().await;
    let table = store.table().to_string();
    let ids: Vec<Uuid> = (0..300).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        insert_row(&session, &table, *id, Some("i"), Some(1), Some("{}")).await;
    }
    let rows = session
        .query_unpaged(format!("SELECT id, token(id) FROM {table}"), ())
        .await
        .expect("select tokens")
        .into_rows_result()
        .expect("rows");
    for row in rows.rows::<(Uuid, i64)>().expect("typed rows") {
        let (id, token) = row.expect("row");
        assert_eq!(token_of(id), token, "the token of {id}");
    }
    let mut seen: Vec<Uuid> = Vec::new();
    for range in TokenRange::parts(7) {
        let mut position: Option<TokenPosition> = None;
        loop {
            let page = store
                .scan_page(position.as_ref(), 40, false, range)
                .await
                .expect("scan page");
            for row in &page.rows {
                assert!(range.holds(row.token), "{} is not in {range}", row.token);
                seen.push(row.id);
            }
            if page.done {
                break;
            }
            position = page.position;
        }
    }
    seen.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn documents_round_trip_field_by_field_including_a_1mb_body() {
    let store = support::cassandra_store("c_roundtrip").await;
    let rich =
        Document::new("articles", "article", support::rich_content()).at(at(1_700_000_000_123));
    let big = Document::new("blobs", "blob", json!({"body": "ü".repeat(512 * 1024)}));
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
        .get_by_ids(&[rich.id, big.id])
        .await
        .expect("read back");
    let Some(Read::Document(stored)) = found.get(&rich.id) else {
        panic!("rich document not found: {found:?}");
    };
    assert_eq!(stored.document, rich);
    assert!(stored.stamped);
    let Some(Read::Document(stored_big)) = found.get(&big.id) else {
        panic!("1 MB document not found");
    };
    assert_eq!(stored_big.document.content, big.content);

    // What Cassandra holds, through plain CQL.
    let session = support::cql_session().await;
    let (index, doc_type, timestamp, content): (String, String, CqlTimestamp, String) = session
        .query_unpaged(
            format!(
                "SELECT index_, type, timestamp, content FROM {} WHERE id = ?",
                store.table()
            ),
            (rich.id,),
        )
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows")
        .single_row()
        .expect("one row");
    assert_eq!((index.as_str(), doc_type.as_str()), ("articles", "article"));
    assert_eq!(timestamp, CqlTimestamp(1_700_000_000_123));
    assert_eq!(
        serde_json::from_str::<Value>(&content).expect("JSON"),
        rich.content
    );
    // Exact text is kept: 1.50 stays 1.50, 9007199254740993 keeps its last digit.
    assert!(
        content.contains("1.50") && content.contains("9007199254740993"),
        "{content}"
    );
}

#[tokio::test]
async fn the_table_is_created_when_missing_and_an_incompatible_one_is_refused() {
    let session = support::cql_session().await;
    let keyspace = support::unique_name("c_schema");
    let mut config = CassandraConfig::new(&keyspace, "docs");
    config.nodes = vec![support::cassandra_node()];
    let store = CassandraStore::connect(config.clone())
        .await
        .expect("created");
    assert!(store.has_time_index(), "Cassandra 5 serves SAI");
    // Connecting again uses what exists.
    CassandraStore::connect(config).await.expect("reused");

    session
        .query_unpaged(
            format!("CREATE TABLE {keyspace}.wrong (id uuid PRIMARY KEY, index_ text, type text, timestamp bigint, content text)"),
            (),
        )
        .await
        .expect("create wrong table");
    let mut config = CassandraConfig::new(&keyspace, "wrong");
    config.nodes = vec![support::cassandra_node()];
    let error = CassandraStore::connect(config)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(error, CassandraError::IncompatibleTable { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("'timestamp' is bigint"), "{message}");
    session
        .query_unpaged(format!("DROP KEYSPACE {keyspace}"), ())
        .await
        .expect("drop");
}

#[tokio::test]
async fn get_documents_returns_100000_rows_exactly_once() {
    const ROWS: usize = 100_000;
    let store = support::cassandra_store("c_paging").await;
    let session = Arc::new(support::cql_session().await);
    let insert = session
        .prepare(format!(
            "INSERT INTO {} (id, index_, type, timestamp, content) VALUES (?, 'big', 't', ?, ?)",
            store.table()
        ))
        .await
        .expect("prepare");
    let ids: Vec<Uuid> = (0..ROWS).map(|_| Uuid::new_v4()).collect();
    let results: Vec<_> = futures::stream::iter(ids.iter().enumerate())
        .map(|(n, id)| {
            let session = session.clone();
            let insert = insert.clone();
            async move {
                let content = json!({"n": n, "text": "some words here"}).to_string();
                session
                    .execute_unpaged(&insert, (id, CqlTimestamp(n as i64), content))
                    .await
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    assert!(results.iter().all(Result::is_ok), "inserts failed");

    let mut seen = HashSet::with_capacity(ROWS);
    let mut duplicates = 0;
    let mut documents = std::pin::pin!(store.get_documents());
    while let Some(document) = documents.next().await {
        let document = document.expect("document");
        if !seen.insert(document.id) {
            duplicates += 1;
        }
    }
    assert_eq!(duplicates, 0);
    assert_eq!(seen, ids.into_iter().collect::<HashSet<_>>());
}

#[tokio::test]
async fn the_write_time_sweep_finds_backdated_timestampless_and_equal_timestamp_writes() {
    let store = support::cassandra_store("c_feed").await;
    let session = support::cql_session().await;
    let table = store.table().to_string();
    let existing: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    for id in &existing {
        insert_row(
            &session,
            &table,
            *id,
            Some("i"),
            Some(now_millis().timestamp_millis()),
            Some("{}"),
        )
        .await;
    }
    // Let the write times of the rows above fall strictly before the threshold.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let since = Utc::now().timestamp_micros();
    assert!(written_since(&store, since).await.is_empty());

    // A row with a timestamp long before the threshold (a backdating writer).
    let backdated = Uuid::new_v4();
    insert_row(
        &session,
        &table,
        backdated,
        Some("i"),
        Some(978_307_200_000),
        Some(r#"{"old": true}"#),
    )
    .await;
    // A row without a timestamp (a writer that knows nothing of essync).
    let timestampless = Uuid::new_v4();
    insert_row(
        &session,
        &table,
        timestampless,
        Some("i"),
        None,
        Some(r#"{"bare": true}"#),
    )
    .await;
    // Many rows with one and the same timestamp, and an update of one column of a row.
    let same_time = now_millis().timestamp_millis();
    let equal: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
    for id in &equal {
        insert_row(
            &session,
            &table,
            *id,
            Some("i"),
            Some(same_time),
            Some("{}"),
        )
        .await;
    }
    session
        .query_unpaged(
            format!("UPDATE {table} SET content = '{{\"v\": 2}}' WHERE id = ?"),
            (existing[0],),
        )
        .await
        .expect("update");

    let mut expected: HashSet<Uuid> = equal.iter().copied().collect();
    expected.extend([backdated, timestampless, existing[0]]);
    assert_eq!(written_since(&store, since).await, expected);
    let bare = store.get_by_ids(&[timestampless]).await.expect("read");
    let Some(Read::Document(bare)) = bare.get(&timestampless) else {
        panic!("timestampless row not read");
    };
    assert!(!bare.stamped);
    assert!(bare.document.timestamp.is_some(), "takes its write time");
}

#[tokio::test]
async fn a_reconciliation_pass_reads_every_row_and_resumes_where_it_stopped() {
    let mut config =
        CassandraConfig::new(support::TEST_KEYSPACE, support::unique_name("c_reconcile"));
    config.nodes = vec![support::cassandra_node()];
    config.page_size = 50;
    let store = CassandraStore::connect(config).await.expect("store");
    let session = support::cql_session().await;
    let ids: HashSet<Uuid> = (0..250).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        insert_row(&session, store.table(), *id, Some("i"), Some(1), Some("{}")).await;
    }
    // Each page resumes from the position the last one saved, as after a crash.
    let mut position: Option<TokenPosition> = None;
    let mut seen = HashSet::new();
    let mut pages = 0;
    loop {
        let saved = position
            .clone()
            .map(|p| serde_json::to_string(&p).expect("saved"));
        let restored: Option<TokenPosition> =
            saved.map(|text| serde_json::from_str(&text).expect("restored"));
        let page = store
            .scan_page(restored.as_ref(), 50, true, TokenRange::WHOLE)
            .await
            .expect("page");
        for row in page.rows {
            let read = row.read.expect("a full scan reads the row");
            assert!(seen.insert(row.id), "{} read twice", row.id);
            assert!(matches!(read, Read::Document(_)));
        }
        pages += 1;
        assert!(pages < 100, "the pass does not end");
        if page.done {
            break;
        }
        position = page.position;
    }
    assert_eq!(seen, ids);
    assert!(
        pages >= 5,
        "the pass should take several pages, took {pages}"
    );
}

#[tokio::test]
async fn stale_writes_never_replace_newer_versions_under_concurrent_writers() {
    let store = Arc::new(support::cassandra_store("c_stale").await);
    let id = Uuid::new_v4();
    let mut tasks = Vec::new();
    for w in 0..2i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = HashMap::new();
            for n in 0..40i64 {
                let millis = 1_000_000 + n * 10 + w * 5 - if n % 3 == 0 { 300 } else { 0 };
                let doc =
                    Document::with_id(id, "i", "t", json!({"writer": w, "n": n})).at(at(millis));
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
    let found = store.get_by_ids(&[id]).await.expect("read");
    let Some(Read::Document(stored)) = found.get(&id) else {
        panic!("row missing");
    };
    assert_eq!(
        stored.document.timestamp_millis(),
        Some(1_000_000 + 38 * 10 + 5)
    );
    assert_eq!(stored.document.content, json!({"writer": 1, "n": 38}));

    // A user writes the row directly; a write decided on the version before it does nothing.
    let session = support::cql_session().await;
    session
        .query_unpaged(
            format!(
                "UPDATE {} SET content = '{{\"user\": 1}}' WHERE id = ?",
                store.table()
            ),
            (id,),
        )
        .await
        .expect("user write");
    // Fenced: the stale write is a plain write one microsecond after what it read, so the
    // user's later write wins in Cassandra's own reconciliation, and the read-back says so.
    let stale = CassandraWrite {
        document: Document::with_id(id, "i", "t", json!({"stale": true})).at(at(9_999_999_999)),
        expected: CassandraExpected::Row(stored.version.clone()),
        read_at: Utc::now(),
    };
    assert_eq!(store.write_mode(), WriteMode::Fenced);
    let applied = store.write_batch(&[stale]).await.expect("write");
    assert_eq!(applied[0].outcome, WriteOutcome::ChangedUnderneath);
    let found = store.get_by_ids(&[id]).await.expect("read");
    let Some(Read::Document(stored)) = found.get(&id) else {
        panic!("row missing");
    };
    assert_eq!(stored.document.content, json!({"user": 1}));
}

/// The same guarantee with lightweight transactions: the stale write says it did not apply.
#[tokio::test]
async fn with_lightweight_transactions_a_stale_write_is_refused() {
    let mut config = CassandraConfig::new(support::TEST_KEYSPACE, support::unique_name("c_lwt"));
    config.nodes = vec![support::cassandra_node()];
    config.write_mode = WriteMode::Lwt;
    let store = CassandraStore::connect(config).await.expect("store");
    let id = Uuid::new_v4();
    let first = Document::with_id(id, "i", "t", json!({"n": 1})).at(at(1));
    store
        .insert_or_replace_document(&first)
        .await
        .expect("write");
    let found = store.get_by_ids(&[id]).await.expect("read");
    let Some(Read::Document(read)) = found.get(&id) else {
        panic!("row missing");
    };
    let session = support::cql_session().await;
    session
        .query_unpaged(
            format!(
                "UPDATE {} SET content = '{{\"user\": 1}}' WHERE id = ?",
                store.table()
            ),
            (id,),
        )
        .await
        .expect("user write");
    let stale = CassandraWrite {
        document: Document::with_id(id, "i", "t", json!({"stale": true})).at(at(2)),
        expected: CassandraExpected::Row(read.version.clone()),
        read_at: Utc::now(),
    };
    let applied = store.write_batch(&[stale]).await.expect("write");
    assert_eq!(applied[0].outcome, WriteOutcome::ChangedUnderneath);
    let delete = CassandraDelete {
        id,
        expected: read.version.clone(),
    };
    let applied = store.delete_batch(&[delete]).await.expect("delete");
    assert_eq!(applied[0].outcome, WriteOutcome::ChangedUnderneath);
    let found = store.get_by_ids(&[id]).await.expect("read");
    assert!(
        matches!(found.get(&id), Some(Read::Document(s)) if s.document.content == json!({"user": 1}))
    );
}

/// Fenced deletes and creations: a delete decided on an old read leaves a row rewritten since;
/// a row written where one was deleted before is not hidden by the old delete.
#[tokio::test]
async fn fenced_deletes_spare_newer_writes_and_old_deletes_do_not_hide_new_rows() {
    let store = support::cassandra_store("c_fence").await;
    let session = support::cql_session().await;
    let id = Uuid::new_v4();
    insert_row(&session, store.table(), id, Some("i"), Some(1), Some("{}")).await;
    let found = store.get_by_ids(&[id]).await.expect("read");
    let Some(Read::Document(read)) = found.get(&id) else {
        panic!("row missing");
    };
    insert_row(
        &session,
        store.table(),
        id,
        Some("i"),
        Some(2),
        Some(r#"{"again":1}"#),
    )
    .await;
    let delete = CassandraDelete {
        id,
        expected: read.version.clone(),
    };
    let applied = store.delete_batch(&[delete]).await.expect("delete");
    assert_eq!(applied[0].outcome, WriteOutcome::ChangedUnderneath);
    let found = store.get_by_ids(&[id]).await.expect("read");
    assert!(
        matches!(found.get(&id), Some(Read::Document(s)) if s.document.content == json!({"again": 1})),
        "the newer write was deleted: {found:?}"
    );

    // Deleted by a user, then written by essync after reading it absent.
    session
        .query_unpaged(format!("DELETE FROM {} WHERE id = ?", store.table()), (id,))
        .await
        .expect("user delete");
    tokio::time::sleep(Duration::from_millis(2)).await;
    let back = CassandraWrite {
        document: Document::with_id(id, "i", "t", json!({"back": true})).at(at(3)),
        expected: CassandraExpected::Absent,
        read_at: Utc::now(),
    };
    let applied = store.write_batch(&[back]).await.expect("write");
    assert_eq!(applied[0].outcome, WriteOutcome::Inserted);
    let written_at = applied[0].version.as_ref().and_then(|v| v.written_at);
    let found = store.get_by_ids(&[id]).await.expect("read");
    let Some(Read::Document(stored)) = found.get(&id) else {
        panic!("the old delete hides the new row");
    };
    assert_eq!(stored.document.content, json!({"back": true}));
    assert_eq!(
        stored.version.written_at, written_at,
        "the write time is what the write said"
    );
}

/// A creation is not read back: a row an application wrote after essync read the id absent
/// carries a later write time than the creation's fence (the time of that read), so it stays,
/// and the creation says it was inserted at its fence, ordered before the application's row.
#[tokio::test]
async fn a_creation_raced_by_an_application_leaves_the_applications_row() {
    let store = support::cassandra_store("c_create_race").await;
    let session = support::cql_session().await;
    let id = Uuid::new_v4();
    let read_at = Utc::now();
    tokio::time::sleep(Duration::from_millis(2)).await;
    insert_row(
        &session,
        store.table(),
        id,
        Some("i"),
        Some(5),
        Some(r#"{"app":1}"#),
    )
    .await;
    let create = CassandraWrite {
        document: Document::with_id(id, "i", "t", json!({"essync": 1})).at(at(3)),
        expected: CassandraExpected::Absent,
        read_at,
    };
    let applied = store.write_batch(&[create]).await.expect("write");
    assert_eq!(applied[0].outcome, WriteOutcome::Inserted);
    let fence = applied[0].version.as_ref().and_then(|v| v.written_at);
    assert_eq!(fence, Some(read_at.timestamp_micros()));
    let found = store.get_by_ids(&[id]).await.expect("read");
    let Some(Read::Document(stored)) = found.get(&id) else {
        panic!("row missing");
    };
    assert_eq!(stored.document.content, json!({"app": 1}));
    assert!(
        stored.version.written_at > fence,
        "the application's row is the later write: {stored:?}"
    );
}

#[tokio::test]
async fn bad_rows_are_reported_with_their_reason_and_the_rest_flows() {
    let store = support::cassandra_store("c_bad").await;
    let session = support::cql_session().await;
    let table = store.table().to_string();
    let good: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    for id in &good {
        insert_row(
            &session,
            &table,
            *id,
            Some("i"),
            Some(1),
            Some(r#"{"ok": true}"#),
        )
        .await;
    }
    let cases = [
        (Uuid::new_v4(), Some("i"), Some("not json"), "not JSON"),
        (
            Uuid::new_v4(),
            Some("i"),
            Some("[1, 2]"),
            "not a JSON object",
        ),
        (Uuid::new_v4(), Some("i"), None, "content is null"),
        (Uuid::new_v4(), None, Some("{}"), "index_ is empty"),
    ];
    for (id, index, content, _) in &cases {
        insert_row(&session, &table, *id, *index, Some(1), *content).await;
    }
    let mut ok = HashSet::new();
    let mut bad = HashMap::new();
    let mut documents = std::pin::pin!(store.get_documents());
    while let Some(item) = documents.next().await {
        match item {
            Ok(document) => {
                ok.insert(document.id);
            }
            Err(ReadError::Bad(b)) => {
                bad.insert(b.id.expect("row ids are uuids"), b.reason);
            }
            Err(ReadError::Store(e)) => panic!("store failed: {e}"),
        }
    }
    assert_eq!(ok, good.iter().copied().collect());
    assert_eq!(bad.len(), cases.len());
    for (id, _, _, reason) in &cases {
        assert!(
            bad[id].contains(reason),
            "{id}: {} should say {reason}",
            bad[id]
        );
    }
}

/// Fenced writes of small rows share unlogged batches: each row still gets its own outcome and
/// write time, a row that raced with an application's write is still found, and a row the
/// server refuses fails alone.
#[tokio::test]
async fn rows_written_together_are_each_reported_on_their_own() {
    let store = support::cassandra_store("c_batched").await;
    let session = support::cql_session().await;
    let table = store.table().to_string();
    let raced = Uuid::new_v4();
    insert_row(&session, &table, raced, Some("i"), Some(1), Some("{}")).await;
    let found = store.get_by_ids(&[raced]).await.expect("read");
    let Some(Read::Document(read)) = found.get(&raced) else {
        panic!("row missing");
    };
    let seen = read.version.clone();
    // An application writes the row after essync read it.
    insert_row(
        &session,
        &table,
        raced,
        Some("i"),
        Some(2),
        Some(r#"{"app":1}"#),
    )
    .await;

    let new = |n: i64| CassandraWrite {
        document: Document::new("i", "t", json!({ "n": n })).at(at(1_000 + n)),
        expected: CassandraExpected::Absent,
        read_at: Utc::now(),
    };
    let mut writes: Vec<CassandraWrite> = (0..12).map(new).collect();
    writes[3] = CassandraWrite {
        document: Document::with_id(raced, "i", "t", json!({"essync": 1})).at(at(3)),
        expected: CassandraExpected::Row(seen.clone()),
        read_at: Utc::now(),
    };
    // No timestamp: refused before it is sent.
    writes[5].document.timestamp = None;
    // A time to live the server refuses (over twenty years): the batch that holds it is sent
    // again row by row.
    writes[8].expected = CassandraExpected::Row(essync::cassandra::CassandraVersion {
        ttl: Some(700_000_000),
        ..seen
    });
    let applied = store.write_batch(&writes).await.expect("write");
    assert_eq!(applied.len(), writes.len());
    for (i, applied) in applied.iter().enumerate() {
        match i {
            3 => assert_eq!(applied.outcome, WriteOutcome::ChangedUnderneath),
            5 => assert!(
                matches!(&applied.outcome, WriteOutcome::Rejected(r) if r.contains("timestamp")),
                "{applied:?}"
            ),
            8 => assert!(
                matches!(&applied.outcome, WriteOutcome::Rejected(r) if r.contains("ttl")),
                "{applied:?}"
            ),
            _ => {
                assert_eq!(applied.outcome, WriteOutcome::Inserted, "row {i}");
                let written_at = applied.version.as_ref().and_then(|v| v.written_at);
                assert!(written_at.is_some(), "row {i} has no write time");
            }
        }
    }
    let ids: Vec<Uuid> = writes.iter().map(|w| w.document.id).collect();
    let found = store.get_by_ids(&ids).await.expect("read");
    for (i, write) in writes.iter().enumerate() {
        let stored = match found.get(&write.document.id) {
            Some(Read::Document(stored)) => Some(stored),
            _ => None,
        };
        match i {
            3 => assert_eq!(
                stored.map(|s| s.document.content.value()),
                Some(&json!({"app": 1}))
            ),
            5 | 8 => assert!(stored.is_none(), "row {i} was written"),
            _ => {
                let stored = stored.unwrap_or_else(|| panic!("row {i} missing"));
                assert_eq!(stored.document.content, write.document.content);
                assert_eq!(
                    stored.version.written_at,
                    applied[i].version.as_ref().and_then(|v| v.written_at),
                    "row {i}: the write time is what the write said"
                );
            }
        }
    }
}

/// Fenced deletes share unlogged batches, and each is still reported on its own: one whose row
/// an application rewrote after essync read it leaves that row and says so; one whose row is
/// already gone is a delete done.
#[tokio::test]
async fn rows_deleted_together_are_each_reported_on_their_own() {
    let store = support::cassandra_store("c_batched_del").await;
    let session = support::cql_session().await;
    let table = store.table().to_string();
    let ids: Vec<Uuid> = (0..23).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        insert_row(&session, &table, *id, Some("i"), Some(1), Some("{}")).await;
    }
    let found = store.get_by_ids(&ids).await.expect("read");
    let deletes: Vec<CassandraDelete> = ids
        .iter()
        .map(|id| match found.get(id) {
            Some(Read::Document(read)) => CassandraDelete {
                id: *id,
                expected: read.version.clone(),
            },
            other => panic!("row {id}: {other:?}"),
        })
        .collect();
    // After essync's read: an application rewrites two rows and deletes one.
    let (rewritten, gone) = ([4, 15], 20);
    for i in rewritten {
        insert_row(
            &session,
            &table,
            ids[i],
            Some("i"),
            Some(2),
            Some(r#"{"app":1}"#),
        )
        .await;
    }
    session
        .query_unpaged(format!("DELETE FROM {table} WHERE id = ?"), (ids[gone],))
        .await
        .expect("application delete");

    let deletes_sent = || store.requests().snapshot().get("delete").copied();
    let before = deletes_sent().unwrap_or(0);
    let applied = store.delete_batch(&deletes).await.expect("delete");
    let sent = deletes_sent().unwrap_or(0) - before;
    assert_eq!(sent, 3, "23 deletes go in batches of at most 10");
    assert_eq!(applied.len(), ids.len());
    let found = store.get_by_ids(&ids).await.expect("read");
    for (i, (id, applied)) in ids.iter().zip(&applied).enumerate() {
        if rewritten.contains(&i) {
            assert_eq!(applied.outcome, WriteOutcome::ChangedUnderneath, "row {i}");
            assert!(
                matches!(found.get(id), Some(Read::Document(s)) if s.document.content == json!({"app": 1})),
                "row {i}: the application's write is kept"
            );
        } else {
            assert_eq!(applied.outcome, WriteOutcome::Deleted, "row {i}");
            assert!(!found.contains_key(id), "row {i} is still there");
        }
    }
}
