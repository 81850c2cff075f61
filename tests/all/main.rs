//! essync's integration tests, in one binary to keep link time down.
//!
//! The tests talk to real servers: Elasticsearch on `ESSYNC_ES_URL` (default
//! `http://127.0.0.1:9200`) and Cassandra on `ESSYNC_CASSANDRA` (default `127.0.0.1:9042`), as
//! started by `scripts/servers up`. Tests isolate themselves by index and keyspace names, so
//! they run in parallel against one pair of servers. The `docs`, `policy_cli` and `policy_langs`
//! modules are the exception: `docs` checks the documentation's links, the other two drive
//! `essync policy` with no server (`policy_langs` builds policies with the Python and
//! JavaScript toolchains, and `scripts/test` runs it after the rest);
//! `security` needs the secured servers (`ESSYNC_SECURE=1 scripts/servers up`), so its tests are
//! ignored unless asked for (`scripts/test` does). `search_features` needs the search server's
//! reindex and painless modules (the OpenSearch test servers have them); without them its
//! scenarios say why and pass without running.

mod support;

mod cassandra_store;
mod clusters;
mod docs;
mod es_store;
mod policy_cli;
mod policy_langs;
mod processes;
mod scenarios;
mod search_features;
mod security;
mod servers;
mod three_way;
