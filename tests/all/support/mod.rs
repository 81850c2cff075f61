//! What the tests share: where the servers are, unique names, and direct clients that do not go
//! through the code under test.

pub mod log;
pub mod proxy;
pub mod scenario;

/// The paths of the policy components built for the tests (the examples, and the test-only
/// ones under `policies/testing`).
pub use essync_test_policies as policies;

use std::sync::atomic::{AtomicU32, Ordering};

use elasticsearch::Elasticsearch;
use elasticsearch::http::transport::Transport;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

/// The Elasticsearch URL the tests use.
pub fn es_url() -> String {
    std::env::var("ESSYNC_ES_URL").unwrap_or_else(|_| "http://127.0.0.1:9200".to_string())
}

/// The Cassandra contact point(s) the tests use, comma-separated.
pub fn cassandra_node() -> String {
    std::env::var("ESSYNC_CASSANDRA").unwrap_or_else(|_| "127.0.0.1:9042".to_string())
}

/// The replication factor of the keyspaces the tests make: `ESSYNC_TEST_REPLICATION_FACTOR`
/// (3 on the multi-node servers), or 1.
pub fn replication_factor() -> u32 {
    std::env::var("ESSYNC_TEST_REPLICATION_FACTOR")
        .ok()
        .and_then(|factor| factor.parse().ok())
        .unwrap_or(1)
}

/// The certificate authority Cassandra's TLS certificate is signed by:
/// `ESSYNC_TEST_CASSANDRA_CA` (set by `scripts/test`), or the one `scripts/servers` made (in
/// `ESSYNC_WORK`, by default the repository's `.work`).
pub fn cassandra_ca() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("ESSYNC_TEST_CASSANDRA_CA") {
        return path.into();
    }
    let work = std::env::var("ESSYNC_WORK")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.work"));
    let path = work.join("run/cassandra/conf/ca.pem");
    assert!(
        path.is_file(),
        "no Cassandra CA at {}: start Cassandra with scripts/servers up (it enables TLS), or set ESSYNC_TEST_CASSANDRA_CA",
        path.display()
    );
    path
}

/// A name no other test (in this run or an earlier one) uses: lowercase, so it is valid both as
/// an Elasticsearch index and as a Cassandra keyspace or table.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("t_{prefix}_{}_{nanos:x}_{n}", std::process::id())
}

/// A plain Elasticsearch client, independent of essync's store.
pub fn es_client() -> Elasticsearch {
    es_client_at(&es_url())
}

/// A plain Elasticsearch client of the server at `url`.
pub fn es_client_at(url: &str) -> Elasticsearch {
    let transport =
        Transport::single_node(url).unwrap_or_else(|e| panic!("bad Elasticsearch URL {url}: {e}"));
    Elasticsearch::new(transport)
}

/// Bulk-writes `(index, id, source)` through the plain client; panics on any item error.
pub async fn es_bulk(docs: &[(String, String, serde_json::Value)]) {
    es_bulk_with(&es_client(), docs).await;
}

/// [`es_bulk`] through `client`.
pub async fn es_bulk_with(client: &Elasticsearch, docs: &[(String, String, serde_json::Value)]) {
    use elasticsearch::http::Method;
    use elasticsearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
    for chunk in docs.chunks(2000) {
        let mut body = String::new();
        for (index, id, source) in chunk {
            body.push_str(&serde_json::json!({"index": {"_index": index, "_id": id}}).to_string());
            body.push('\n');
            body.push_str(&source.to_string());
            body.push('\n');
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        let answer: serde_json::Value = client
            .send(
                Method::Post,
                "/_bulk",
                headers,
                Option::<&()>::None,
                Some(body),
                None,
            )
            .await
            .expect("bulk")
            .json()
            .await
            .expect("bulk answer");
        let failed = answer["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["index"]["error"].is_object()));
        assert_eq!(failed, None, "bulk item failed");
    }
}

/// A plain CQL session, independent of essync's store.
pub async fn cql_session() -> Session {
    cql_session_at(&cassandra_node()).await
}

/// A plain CQL session to the Cassandra at `node` (contact points, comma-separated).
pub async fn cql_session_at(node: &str) -> Session {
    SessionBuilder::new()
        .known_nodes(node.split(','))
        .build()
        .await
        .unwrap_or_else(|e| {
            panic!("Cassandra is not reachable at {node} ({e}); start it with scripts/servers up")
        })
}

/// The keyspace the store tests create their tables in.
pub const TEST_KEYSPACE: &str = "essync_tests";

/// An Elasticsearch store that sees only the indices named `{prefix}*`, and that prefix.
pub async fn es_store(prefix: &str) -> (essync::elasticsearch::ElasticsearchStore, String) {
    use essync::elasticsearch::{ElasticsearchConfig, ElasticsearchStore, IndexSelection};
    let prefix = unique_name(prefix);
    let mut config = ElasticsearchConfig::with_urls([es_url()]);
    config.indices = IndexSelection::new([format!("{prefix}*")]).expect("index pattern");
    let store = ElasticsearchStore::connect(config)
        .await
        .unwrap_or_else(|e| panic!("{e}; start the servers with scripts/servers up"));
    (store, prefix)
}

/// A Cassandra store on a table of its own in [`TEST_KEYSPACE`].
pub async fn cassandra_store(prefix: &str) -> essync::cassandra::CassandraStore {
    use essync::cassandra::{CassandraConfig, CassandraStore};
    let mut config = CassandraConfig::new(TEST_KEYSPACE, unique_name(prefix));
    config.nodes = vec![cassandra_node()];
    CassandraStore::connect(config)
        .await
        .unwrap_or_else(|e| panic!("{e}; start the servers with scripts/servers up"))
}

/// A content object with every kind of JSON value: nested objects, arrays, unicode, numbers
/// (large, negative, fractional, with exponents and trailing zeros), booleans and nulls. Arrays
/// hold one kind of value each, as Elasticsearch's mapping requires.
pub fn rich_content() -> serde_json::Value {
    serde_json::from_str(
        r#"{
            "title": "Ünïcödé ✓ 日本語 עברית 🚀",
            "nested": {"a": {"b": {"c": [{"d": "deep"}, {"d": "deeper", "e": [1, 2]}]}}, "empty": {}},
            "list": [{"k": "v1"}, {"k": "v2"}],
            "strings": ["", "tab\there", "quote \" and \\ backslash", "line\nbreak"],
            "int": 9007199254740993,
            "negative": -42,
            "fraction": 1.50,
            "exponent": 6.02e23,
            "small": 0.1,
            "yes": true,
            "no": false,
            "nothing": null,
            "empty_list": []
        }"#,
    )
    .expect("valid JSON")
}

/// This process's resident memory, in bytes (0 where /proc is not available).
#[allow(dead_code)]
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}
