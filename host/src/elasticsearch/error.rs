//! What can go wrong talking to Elasticsearch, phrased for the person who has to fix it.

use thiserror::Error;

/// An Elasticsearch failure that stops the operation as a whole (per-document problems are
/// reported as [`crate::store::BadDocument`] or [`crate::store::WriteOutcome`] instead).
#[derive(Debug, Error)]
pub enum ElasticsearchError {
    /// A URL given in the configuration is not usable.
    #[error("invalid Elasticsearch URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it is not usable.
        reason: String,
    },
    /// The client could not be set up (e.g. a TLS setting).
    #[error("cannot set up the Elasticsearch client: {0}")]
    Client(String),
    /// No answer: the server is down, the URL is wrong, or the network is in the way.
    #[error("Elasticsearch is not reachable at {url}: {reason} (is it running? check --es-url)")]
    Unreachable {
        /// Where we tried.
        url: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// The server answered with an error.
    #[error("Elasticsearch refused {request}: HTTP {status}: {reason}")]
    Api {
        /// What was asked (method and path).
        request: String,
        /// The HTTP status.
        status: u16,
        /// Elasticsearch's error type and reason.
        reason: String,
    },
    /// Credentials missing or wrong.
    #[error(
        "Elasticsearch refused the credentials for {request} (HTTP {status}); check the user, password or API key"
    )]
    Unauthorized {
        /// What was asked.
        request: String,
        /// 401 or 403.
        status: u16,
    },
    /// A part of the cluster cannot be read now (a closed index, an unavailable shard).
    #[error("Elasticsearch cannot read {location} now: {reason}")]
    Unreadable {
        /// What cannot be read: `INDEX`, or `INDEX, shard N`.
        location: String,
        /// Why.
        reason: String,
    },
    /// The server answered something this client does not understand.
    #[error("unexpected answer from Elasticsearch to {request}: {reason}")]
    Protocol {
        /// What was asked.
        request: String,
        /// What was wrong with the answer.
        reason: String,
    },
}

impl ElasticsearchError {
    /// Whether waiting and trying again may help (server down, overloaded, timing out).
    pub fn is_transient(&self) -> bool {
        match self {
            ElasticsearchError::Unreachable { .. } | ElasticsearchError::Unreadable { .. } => true,
            ElasticsearchError::Api { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}
