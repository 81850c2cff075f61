//! The document both stores exchange.

/// One document: the same thing as an Elasticsearch document and a row of the synced table.
#[derive(Debug, Clone, PartialEq)]
pub struct Document;
