//! The Cassandra store.
