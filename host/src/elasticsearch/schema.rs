//! Indices and their mapping: created when missing, extended with essync's metadata mapping
//! when they exist, and index names checked before anything is sent.

use std::collections::HashMap;
use std::sync::Mutex;

use elasticsearch::http::Method;
use serde_json::{Value, json};

use super::client::{Http, error_reason};
use super::convert::metadata_mapping;
use super::{ElasticsearchError, index_path};

/// Remembers which indices this process has prepared, so each costs one request per process.
#[derive(Debug, Default)]
pub(crate) struct Indices {
    /// Index name -> `Ok` when ready, `Err(reason)` when Elasticsearch refuses the name.
    prepared: Mutex<HashMap<String, Result<(), String>>>,
}

impl Indices {
    /// Makes sure `name` exists with essync's metadata mapping. `Ok(Err(reason))` when
    /// Elasticsearch refuses the index (its documents are rejected, the rest go on).
    pub async fn prepare(
        &self,
        http: &Http,
        name: &str,
        shards: Option<u32>,
    ) -> Result<Result<(), String>, ElasticsearchError> {
        if let Some(known) = self.known(name) {
            return Ok(known);
        }
        if let Err(reason) = check_index_name(name) {
            return Ok(self.remember(name, Err(reason)));
        }
        let path = format!("/{}", index_path(name));
        let mut body = json!({"mappings": metadata_mapping()});
        if let Some(shards) = shards {
            body["settings"] = json!({"number_of_shards": shards});
        }
        let created = http.send(Method::Put, &path, &[], Some(&body)).await?;
        let result = match created.status {
            200..=299 => Ok(()),
            _ if error_type(&created.body) == Some("resource_already_exists_exception") => {
                self.extend_mapping(http, name).await?;
                Ok(())
            }
            400 => Err(format!(
                "Elasticsearch refuses the index '{name}': {}",
                error_reason(&created.body)
            )),
            _ => {
                return Err(super::client::error_answer(Method::Put, &path, &created));
            }
        };
        Ok(self.remember(name, result))
    }

    /// Adds the metadata mapping to an index that exists. A conflict (the field already mapped
    /// differently, e.g. by dynamic mapping before essync ran) is not fatal: documents still
    /// sync, only the metadata's field types differ.
    async fn extend_mapping(&self, http: &Http, name: &str) -> Result<(), ElasticsearchError> {
        let path = format!("/{}/_mapping", index_path(name));
        let answer = http
            .send(Method::Put, &path, &[], Some(&metadata_mapping()))
            .await?;
        if !(200..300).contains(&answer.status) {
            tracing::warn!(
                index = name,
                reason = %error_reason(&answer.body),
                "cannot add essync's metadata mapping to this index; documents still sync"
            );
        }
        Ok(())
    }

    fn known(&self, name: &str) -> Option<Result<(), String>> {
        self.prepared
            .lock()
            .map(|p| p.get(name).cloned())
            .unwrap_or(None)
    }

    fn remember(&self, name: &str, result: Result<(), String>) -> Result<(), String> {
        if let Ok(mut prepared) = self.prepared.lock() {
            prepared.insert(name.to_string(), result.clone());
        }
        result
    }
}

fn error_type(body: &Value) -> Option<&str> {
    body.pointer("/error/type").and_then(Value::as_str)
}

/// Elasticsearch's rules for index names, checked locally so a bad name is reported with a
/// clear reason; names starting with `.` are refused because essync leaves system and hidden
/// indices alone.
pub fn check_index_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the index name is empty".to_string());
    }
    if name.len() > 255 {
        return Err(format!("the index name '{name}' is longer than 255 bytes"));
    }
    if name.starts_with('.') {
        return Err(format!(
            "the index name '{name}' starts with '.', which is for system and hidden indices; essync does not sync them"
        ));
    }
    if name.starts_with(['_', '-', '+']) {
        return Err(format!(
            "the index name '{name}' starts with '{}', which Elasticsearch does not allow",
            &name[..1]
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("'{name}' is not an index name"));
    }
    if name.chars().any(|c| c.is_uppercase()) {
        return Err(format!(
            "the index name '{name}' has uppercase letters; Elasticsearch index names are lowercase"
        ));
    }
    if let Some(c) = name.chars().find(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
        )
    }) {
        return Err(format!(
            "the index name '{name}' contains '{c}', which Elasticsearch does not allow"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_index_name;

    #[test]
    fn index_names_follow_elasticsearch_rules() {
        assert!(check_index_name("books-2024").is_ok());
        assert!(check_index_name("").is_err());
        assert!(check_index_name(".kibana").unwrap_err().contains("system"));
        assert!(check_index_name("Books").unwrap_err().contains("lowercase"));
        assert!(check_index_name("a b").unwrap_err().contains("' '"));
        assert!(check_index_name("_x").is_err());
    }
}
