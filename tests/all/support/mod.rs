//! What the tests share: where the servers are, unique names, and direct clients that do not go
//! through the code under test.

use std::sync::atomic::{AtomicU32, Ordering};

use elasticsearch::Elasticsearch;
use elasticsearch::http::transport::Transport;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

/// The Elasticsearch URL the tests use.
pub fn es_url() -> String {
    std::env::var("ESSYNC_ES_URL").unwrap_or_else(|_| "http://127.0.0.1:9200".to_string())
}

/// The Cassandra contact point the tests use.
pub fn cassandra_node() -> String {
    std::env::var("ESSYNC_CASSANDRA").unwrap_or_else(|_| "127.0.0.1:9042".to_string())
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
    let transport = Transport::single_node(&es_url())
        .unwrap_or_else(|e| panic!("bad ESSYNC_ES_URL {}: {e}", es_url()));
    Elasticsearch::new(transport)
}

/// A plain CQL session, independent of essync's store.
pub async fn cql_session() -> Session {
    SessionBuilder::new()
        .known_node(cassandra_node())
        .build()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Cassandra is not reachable at {} ({e}); start it with scripts/servers up",
                cassandra_node()
            )
        })
}
