//! The one way essync sends a request to Elasticsearch: JSON or NDJSON in, status and JSON out,
//! with transport failures and error answers turned into [`ElasticsearchError`].

use std::time::Duration;

use elasticsearch::Elasticsearch;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
use elasticsearch::http::transport::{
    MultiNodeConnectionPool, SingleNodeConnectionPool, TransportBuilder,
};
use elasticsearch::http::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::response::ErrorCause;
use super::{ElasticsearchConfig, ElasticsearchError, IndexSelection};
use crate::store::error_chain;

/// Answers at least this large are read on a blocking thread.
const READ_APART_BYTES: usize = 256 << 10;

/// A JSON answer.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Value,
}

/// A typed answer: what a 2xx answer says, or the error of any other.
pub(crate) enum Reply<T> {
    /// A 2xx answer, and its size in bytes (for sizing pages).
    Ok { value: T, bytes: usize },
    /// Another status, with Elasticsearch's error.
    Refused { status: u16, error: ErrorCause },
}

/// Sends requests through the `elasticsearch` crate's transport (connection pool, auth, TLS).
#[derive(Clone)]
pub(crate) struct Http {
    client: Elasticsearch,
    /// For messages: the URL(s) requests go to.
    shown_url: String,
    /// For messages: whose credentials requests carry ("user 'essync'", "API key 'id'"), never
    /// the secret.
    who: Option<String>,
    /// Whether every URL is https (what a closed connection most likely means differs).
    tls: bool,
    timeout: Duration,
    /// The requests sent, by API.
    requests: std::sync::Arc<crate::store::RequestCounts>,
}

impl Http {
    pub fn new(config: &ElasticsearchConfig) -> Result<Self, ElasticsearchError> {
        let mut urls = Vec::with_capacity(config.urls.len());
        for url in &config.urls {
            let parsed = Url::parse(url).map_err(|e| ElasticsearchError::InvalidUrl {
                url: url.clone(),
                reason: e.to_string(),
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ElasticsearchError::InvalidUrl {
                    url: url.clone(),
                    reason: "the scheme must be http or https".to_string(),
                });
            }
            urls.push(parsed);
        }
        let mut builder = match urls.len() {
            0 => {
                return Err(ElasticsearchError::InvalidUrl {
                    url: String::new(),
                    reason: "no URL given".to_string(),
                });
            }
            1 => TransportBuilder::new(SingleNodeConnectionPool::new(urls[0].clone())),
            _ => TransportBuilder::new(MultiNodeConnectionPool::round_robin(urls.clone(), None)),
        };
        builder = builder
            .timeout(config.request_timeout)
            .disable_proxy()
            .enable_meta_header(false);
        if !config.gzip {
            // Answers uncompressed: compressing pages of sources costs Elasticsearch, and
            // inflating them costs essync, more CPU than the network they save near the cluster.
            builder = builder.header(
                elasticsearch::http::headers::ACCEPT_ENCODING,
                elasticsearch::http::headers::HeaderValue::from_static("identity"),
            );
        }
        if let Some(credentials) = &config.credentials {
            builder = builder.auth(match credentials {
                super::Credentials::Basic { username, password } => {
                    Credentials::Basic(username.clone(), password.clone())
                }
                super::Credentials::ApiKey { id, key } => {
                    Credentials::ApiKey(id.clone(), key.clone())
                }
            });
        }
        if config.accept_invalid_certificates {
            builder = builder.cert_validation(CertificateValidation::None);
        } else if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                ElasticsearchError::Client(format!(
                    "cannot read the CA file {}: {e}",
                    path.display()
                ))
            })?;
            let certificates = Certificate::from_pem(&pem).map_err(|e| {
                ElasticsearchError::Client(format!(
                    "the CA file {} holds no usable PEM certificate: {e}",
                    path.display()
                ))
            })?;
            builder = builder.cert_validation(CertificateValidation::Full(certificates));
        }
        let transport = builder
            .build()
            .map_err(|e| ElasticsearchError::Client(e.to_string()))?;
        Ok(Self {
            client: Elasticsearch::new(transport),
            shown_url: config.urls.join(","),
            who: config.credentials.as_ref().map(|c| match c {
                super::Credentials::Basic { username, .. } => format!("user '{username}'"),
                super::Credentials::ApiKey { id, .. } => format!("API key '{id}'"),
            }),
            tls: urls.iter().all(|url| url.scheme() == "https"),
            timeout: config.request_timeout,
            requests: Default::default(),
        })
    }

    /// Sends a request with an optional JSON body; any HTTP status comes back as an answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Answer, ElasticsearchError> {
        let body = encode(method, path, body)?;
        self.send_bytes(method, path, query, body, "application/json")
            .await
    }

    /// Like [`Http::send`], but a status other than 2xx is an error.
    pub async fn expect_ok(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Answer, ElasticsearchError> {
        let answer = self.send(method, path, query, body).await?;
        if (200..300).contains(&answer.status) {
            Ok(answer)
        } else {
            Err(error_answer(method, path, &answer))
        }
    }

    /// Sends a request and reads a 2xx answer as `T`; any other status comes back as
    /// [`Reply::Refused`] with Elasticsearch's error.
    pub async fn request<T: DeserializeOwned + Send + 'static>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Reply<T>, ElasticsearchError> {
        let body = encode(method, path, body)?;
        let (status, bytes) = self
            .raw(method, path, query, body, "application/json")
            .await?;
        self.typed(method, path, status, bytes).await
    }

    /// Like [`Http::request`], but a status other than 2xx is an error.
    pub async fn expect<T: DeserializeOwned + Send + 'static>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<T, ElasticsearchError> {
        match self.request(method, path, query, body).await? {
            Reply::Ok { value, .. } => Ok(value),
            Reply::Refused { status, error } => Err(ElasticsearchError::Api {
                request: describe(method, path),
                status,
                reason: error.describe(),
            }),
        }
    }

    /// Sends newline-delimited JSON (the bulk API) and reads a 2xx answer as `T`.
    pub async fn request_ndjson<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply<T>, ElasticsearchError> {
        let (status, bytes) = self
            .raw(
                Method::Post,
                path,
                query,
                Some(body),
                "application/x-ndjson",
            )
            .await?;
        self.typed(Method::Post, path, status, bytes).await
    }

    /// Reads an answer as `T`. A large answer (a page of documents) is read on a blocking
    /// thread, so that the next page is read while this one is synced, on another core.
    async fn typed<T: DeserializeOwned + Send + 'static>(
        &self,
        method: Method,
        path: &str,
        status: u16,
        bytes: bytes::Bytes,
    ) -> Result<Reply<T>, ElasticsearchError> {
        if (200..300).contains(&status) {
            let size = bytes.len();
            let parsed = if size >= READ_APART_BYTES {
                tokio::task::spawn_blocking(move || serde_json::from_slice::<T>(&bytes))
                    .await
                    .map_err(|e| ElasticsearchError::Protocol {
                        request: describe(method, path),
                        reason: format!("the answer could not be read: {e}"),
                    })?
            } else {
                serde_json::from_slice(&bytes)
            };
            let value = parsed.map_err(|e| ElasticsearchError::Protocol {
                request: describe(method, path),
                reason: format!("unexpected answer (HTTP {status}): {e}"),
            })?;
            return Ok(Reply::Ok { value, bytes: size });
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply::Refused {
            status,
            error: ErrorCause::of(body.get("error")),
        })
    }

    async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        content_type: &'static str,
    ) -> Result<Answer, ElasticsearchError> {
        let (status, bytes) = self.raw(method, path, query, body, content_type).await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| ElasticsearchError::Protocol {
                request: describe(method, path),
                reason: format!("not JSON (HTTP {status}): {e}"),
            })?
        };
        Ok(Answer { status, body })
    }

    /// Sends a request; the status and the answer's bytes. Credentials refused are an error.
    async fn raw(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        content_type: &'static str,
    ) -> Result<(u16, bytes::Bytes), ElasticsearchError> {
        self.raw_within(method, path, query, body, content_type, self.timeout)
            .await
    }

    /// Refreshes the indices of `path` (`INDICES/_refresh`), waiting at most `within`: a shard
    /// whose primary is not started makes a refresh wait for it, and that index must not hold
    /// up the others. `Err` says why the refresh did not complete.
    pub async fn refresh(
        &self,
        path: &str,
        query: &[(&str, &str)],
        within: Duration,
    ) -> Result<Result<(), String>, ElasticsearchError> {
        let within = within.min(self.timeout);
        let (status, bytes) = match self
            .raw_within(Method::Post, path, query, None, "application/json", within)
            .await
        {
            Ok(answer) => answer,
            Err(ElasticsearchError::Unreachable { reason, .. }) if reason.contains("timed out") => {
                return Ok(Err(format!(
                    "the refresh did not complete within {}s (a shard is not available)",
                    within.as_secs()
                )));
            }
            Err(e) => return Err(e),
        };
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            return Ok(Err(ErrorCause::of(body.get("error")).describe()));
        }
        let failed = body
            .pointer("/_shards/failed")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Ok(if failed > 0 {
            Err(format!("{failed} shard copies did not refresh"))
        } else {
            Ok(())
        })
    }

    async fn raw_within(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        content_type: &'static str,
        timeout: Duration,
    ) -> Result<(u16, bytes::Bytes), ElasticsearchError> {
        self.requests.add(api(path), 1);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let query = if query.is_empty() { None } else { Some(query) };
        let response = self
            .client
            .send(method, path, headers, query, body, Some(timeout))
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status_code().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ElasticsearchError::Unreachable {
                url: self.shown_url.clone(),
                reason: format!("the answer to {} broke off: {}", describe(method, path), e),
            })?;
        if status == 401 || status == 403 {
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            // A cluster block (a read-only index, a full disk) is a 403 too: only a security
            // refusal is about credentials.
            let blocked = ErrorCause::of(body.get("error")).involves("cluster_block_exception");
            match (status, &self.who) {
                (401, None) => {
                    return Err(ElasticsearchError::CredentialsRequired {
                        url: self.shown_url.clone(),
                    });
                }
                (401, Some(who)) => {
                    return Err(ElasticsearchError::BadCredentials {
                        url: self.shown_url.clone(),
                        who: who.clone(),
                        reason: error_reason(&body),
                    });
                }
                (403, _) if !blocked => {
                    return Err(ElasticsearchError::Forbidden {
                        request: describe(method, path),
                        who: self.who.clone().unwrap_or_else(|| "anonymous".to_string()),
                        reason: error_reason(&body),
                    });
                }
                _ => {}
            }
        }
        Ok((status, bytes))
    }

    /// The requests sent so far, by API.
    pub fn requests(&self) -> &crate::store::RequestCounts {
        &self.requests
    }

    /// A request that got no answer, classified by what the user can do about it.
    fn transport_error(&self, error: &elasticsearch::Error) -> ElasticsearchError {
        let url = self.shown_url.clone();
        let reason = error_chain(error);
        let text = reason.to_ascii_lowercase();
        if text.contains("invalid peer certificate")
            || text.contains("unknownissuer")
            || text.contains("notvalidforname")
            || text.contains("certificate verify failed")
        {
            return ElasticsearchError::UntrustedCertificate { url, reason };
        }
        if self.tls && (text.contains("corrupt message") || text.contains("invalidcontenttype")) {
            return ElasticsearchError::NotTls { url, reason };
        }
        ElasticsearchError::Unreachable { url, reason }
    }

    /// The first request to a cluster: a plain-HTTP URL whose connection is closed without an
    /// answer is most likely an HTTPS port (later, the same thing is a server going away).
    pub async fn first_contact(&self) -> Result<Answer, ElasticsearchError> {
        match self
            .expect_ok(Method::Get, "/_cluster/health", &[], None)
            .await
        {
            Err(ElasticsearchError::Unreachable { url, reason })
                if !self.tls
                    && (reason.contains("connection closed before message completed")
                        || reason.contains("Connection reset")
                        || reason.contains("IncompleteMessage")) =>
            {
                Err(ElasticsearchError::TlsRequired { url, reason })
            }
            other => other,
        }
    }

    /// Whether the credentials have what essync needs (`_has_privileges`): monitor on the
    /// cluster; read, write, create_index, view_index_metadata, monitor and maintenance on the
    /// synced indices. Missing ones are named. A cluster without the security API (security
    /// off, OpenSearch) is not checked: its requests fail on their own if they must.
    pub async fn check_privileges(
        &self,
        indices: &IndexSelection,
    ) -> Result<(), ElasticsearchError> {
        let names: Vec<String> = indices
            .to_string()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty() && !p.starts_with('-'))
            .map(str::to_string)
            .collect();
        let request = serde_json::json!({
            "cluster": CLUSTER_PRIVILEGES,
            "index": [{"names": names, "privileges": INDEX_PRIVILEGES}],
        });
        let path = "/_security/user/_has_privileges";
        let answer = self.send(Method::Post, path, &[], Some(&request)).await?;
        if !(200..300).contains(&answer.status) {
            tracing::debug!(
                status = answer.status,
                reason = %error_reason(&answer.body),
                "cannot ask Elasticsearch for the credentials' privileges; not checked"
            );
            return Ok(());
        }
        let missing = missing_privileges(&answer.body);
        if missing.is_empty() {
            return Ok(());
        }
        Err(ElasticsearchError::MissingPrivileges {
            who: self.who.clone().unwrap_or_else(|| "anonymous".to_string()),
            missing: missing.join("; "),
        })
    }
}

/// The cluster privileges essync needs.
pub(crate) const CLUSTER_PRIVILEGES: [&str; 1] = ["monitor"];
/// The index privileges essync needs on the synced indices.
pub(crate) const INDEX_PRIVILEGES: [&str; 6] = [
    "read",
    "write",
    "create_index",
    "view_index_metadata",
    "monitor",
    "maintenance",
];

/// "cluster: monitor; indices shop-*: write, create_index" from a `_has_privileges` answer.
fn missing_privileges(answer: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    let lacking = |privileges: &Value| -> Vec<String> {
        privileges
            .as_object()
            .map(|all| {
                all.iter()
                    .filter(|(_, granted)| granted.as_bool() != Some(true))
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    let cluster = lacking(&answer["cluster"]);
    if !cluster.is_empty() {
        missing.push(format!("cluster: {}", cluster.join(", ")));
    }
    if let Some(indices) = answer["index"].as_object() {
        for (pattern, privileges) in indices {
            let lacked = lacking(privileges);
            if !lacked.is_empty() {
                missing.push(format!("indices {pattern}: {}", lacked.join(", ")));
            }
        }
    }
    missing
}

fn encode(
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Option<Vec<u8>>, ElasticsearchError> {
    body.map(|value| {
        serde_json::to_vec(value).map_err(|e| ElasticsearchError::Protocol {
            request: describe(method, path),
            reason: format!("cannot encode the request body: {e}"),
        })
    })
    .transpose()
}

/// "GET /path", for messages.
/// The API a request path calls, for counting: its last `_` segment (`/books/_search` is
/// `search`, `/_cluster/health` is `cluster`), or `document` for a path without one (an index
/// created or deleted).
pub(crate) fn api(path: &str) -> &'static str {
    const APIS: &[&str] = &[
        "search", "mget", "bulk", "refresh", "stats", "settings", "mapping", "count", "simulate",
        "cluster", "security", "ingest", "cat", "doc", "create", "update", "pit",
    ];
    let last = path
        .split(['/', '?'])
        .filter_map(|segment| segment.strip_prefix('_'))
        .next_back();
    match last {
        Some(name) => APIS
            .iter()
            .copied()
            .find(|api| *api == name)
            .unwrap_or("other"),
        None => "index",
    }
}

pub(crate) fn describe(method: Method, path: &str) -> String {
    format!("{} {path}", method_name(method))
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Put => "PUT",
        Method::Post => "POST",
        Method::Delete => "DELETE",
        Method::Head => "HEAD",
    }
}

/// Turns an error answer into an error, with Elasticsearch's own type and reason.
pub(crate) fn error_answer(method: Method, path: &str, answer: &Answer) -> ElasticsearchError {
    ElasticsearchError::Api {
        request: describe(method, path),
        status: answer.status,
        reason: error_reason(&answer.body),
    }
}

/// `type: reason` from an Elasticsearch error object (a whole answer or a bulk item's error).
pub(crate) fn error_reason(body: &Value) -> String {
    let error = body.get("error").unwrap_or(body);
    match error {
        Value::String(s) => s.clone(),
        Value::Object(_) => {
            let kind = error.get("type").and_then(Value::as_str).unwrap_or("error");
            let reason = error
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            let cause = error
                .get("caused_by")
                .and_then(|c| c.get("reason"))
                .and_then(Value::as_str);
            match cause {
                Some(cause) if cause != reason => format!("{kind}: {reason} ({cause})"),
                _ => format!("{kind}: {reason}"),
            }
        }
        Value::Null => "no error details".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_privileges_are_named_by_cluster_and_index_pattern() {
        let answer = serde_json::json!({
            "has_all_requested": false,
            "cluster": {"monitor": true},
            "index": {"shop-*": {"read": true, "write": false, "create_index": false}},
        });
        assert_eq!(
            missing_privileges(&answer),
            vec!["indices shop-*: write, create_index".to_string()]
        );
        let answer = serde_json::json!({"cluster": {"monitor": false}, "index": {}});
        assert_eq!(
            missing_privileges(&answer),
            vec!["cluster: monitor".to_string()]
        );
    }
}
