//! The Elasticsearch store.
