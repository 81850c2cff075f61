//! The servers are real and reachable from Rust through the crates essync uses.

use std::collections::BTreeMap;

use elasticsearch::http::request::JsonBody;
use elasticsearch::indices::{IndicesCreateParts, IndicesDeleteParts};
use elasticsearch::params::Refresh;
use elasticsearch::{BulkParts, SearchParts};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support;

const COUNT: usize = 1000;

#[tokio::test]
async fn elasticsearch_bulk_writes_and_reads_back_1000_documents() {
    let client = support::es_client();
    let index = support::unique_name("servers");
    let created = client
        .indices()
        .create(IndicesCreateParts::Index(&index))
        .body(json!({"settings": {"number_of_shards": 2, "number_of_replicas": 0}}))
        .send()
        .await
        .expect("create index request");
    assert!(
        created.status_code().is_success(),
        "create index: {}",
        created.status_code()
    );

    let mut expected = BTreeMap::new();
    let mut body: Vec<JsonBody<Value>> = Vec::with_capacity(COUNT * 2);
    for n in 0..COUNT {
        let id = Uuid::new_v4().to_string();
        let doc = json!({"n": n, "name": format!("document {n}"), "tags": ["a", format!("t{}", n % 7)], "ok": n % 2 == 0});
        body.push(json!({"index": {"_id": id}}).into());
        body.push(doc.clone().into());
        expected.insert(id, doc);
    }
    let bulk: Value = client
        .bulk(BulkParts::Index(&index))
        .body(body)
        .refresh(Refresh::WaitFor)
        .send()
        .await
        .expect("bulk request")
        .json()
        .await
        .expect("bulk response");
    let first_error = bulk["items"]
        .as_array()
        .and_then(|items| items.iter().find(|item| item["index"]["error"].is_object()));
    assert_eq!(first_error, None, "bulk reported errors");

    let found: Value = client
        .search(SearchParts::Index(&[&index]))
        .body(json!({"size": COUNT + 10, "query": {"match_all": {}}}))
        .send()
        .await
        .expect("search request")
        .json()
        .await
        .expect("search response");
    let hits = found["hits"]["hits"].as_array().expect("hits array");
    assert_eq!(hits.len(), COUNT);
    let actual: BTreeMap<String, Value> = hits
        .iter()
        .map(|hit| {
            (
                hit["_id"].as_str().expect("_id").to_string(),
                hit["_source"].clone(),
            )
        })
        .collect();
    assert_eq!(actual, expected);

    client
        .indices()
        .delete(IndicesDeleteParts::Index(&[&index]))
        .send()
        .await
        .expect("delete index");
}

#[tokio::test]
async fn cassandra_writes_and_reads_back_1000_rows() {
    let session = support::cql_session().await;
    let keyspace = support::unique_name("servers");
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE {keyspace} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
            ),
            (),
        )
        .await
        .expect("create keyspace");
    session
        .query_unpaged(
            format!("CREATE TABLE {keyspace}.rows (id uuid PRIMARY KEY, n int, name text)"),
            (),
        )
        .await
        .expect("create table");

    let insert = session
        .prepare(format!(
            "INSERT INTO {keyspace}.rows (id, n, name) VALUES (?, ?, ?)"
        ))
        .await
        .expect("prepare insert");
    let mut expected = BTreeMap::new();
    for n in 0..COUNT as i32 {
        expected.insert(Uuid::new_v4(), (n, format!("row {n}")));
    }
    futures::stream::iter(expected.iter().map(|(id, (n, name))| {
        let insert = &insert;
        let session = &session;
        async move { session.execute_unpaged(insert, (id, n, name)).await }
    }))
    .buffer_unordered(64)
    .try_collect::<Vec<_>>()
    .await
    .expect("insert rows");

    let mut select = session
        .prepare(format!("SELECT id, n, name FROM {keyspace}.rows"))
        .await
        .expect("prepare select");
    // A page far smaller than the table, so reading back crosses many pages.
    select.set_page_size(100);
    let rows: Vec<(Uuid, i32, String)> = session
        .execute_iter(select, ())
        .await
        .expect("select")
        .rows_stream::<(Uuid, i32, String)>()
        .expect("row types")
        .try_collect()
        .await
        .expect("read rows");
    assert_eq!(rows.len(), COUNT);
    let actual: BTreeMap<Uuid, (i32, String)> = rows
        .into_iter()
        .map(|(id, n, name)| (id, (n, name)))
        .collect();
    assert_eq!(actual, expected);

    session
        .query_unpaged(format!("DROP KEYSPACE {keyspace}"), ())
        .await
        .expect("drop keyspace");
}
