//! essync's integration tests, in one binary to keep link time down.
//!
//! Every test here talks to real servers: Elasticsearch on `ESSYNC_ES_URL` (default
//! `http://127.0.0.1:9200`) and Cassandra on `ESSYNC_CASSANDRA` (default `127.0.0.1:9042`), as
//! started by `scripts/servers up`. Tests isolate themselves by index and keyspace names, so
//! they run in parallel against one pair of servers.

mod support;

mod cassandra_store;
mod es_store;
mod scenarios;
mod servers;
