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
    /// The server's TLS certificate is not signed by a trusted authority (or not for this
    /// address).
    #[error(
        "the TLS certificate of Elasticsearch at {url} is not trusted ({reason}): give the CA that signed it with --es-ca"
    )]
    UntrustedCertificate {
        /// Where we tried.
        url: String,
        /// What the TLS library said.
        reason: String,
    },
    /// An https URL for a server that speaks plain HTTP.
    #[error("Elasticsearch at {url} does not speak TLS: use http:// in --es-url ({reason})")]
    NotTls {
        /// Where we tried.
        url: String,
        /// What the TLS library said.
        reason: String,
    },
    /// An http URL for a server that speaks only TLS (it closes plain connections).
    #[error(
        "Elasticsearch at {url} closed the connection without answering: if it serves HTTPS (security on), use https:// in --es-url ({reason})"
    )]
    TlsRequired {
        /// Where we tried.
        url: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// The cluster asks for credentials and none were given.
    #[error(
        "Elasticsearch at {url} requires credentials: give --es-user and --es-password-file, or --es-api-key-file"
    )]
    CredentialsRequired {
        /// Where we tried.
        url: String,
    },
    /// The credentials were refused (wrong password, unknown user, invalid or expired key).
    #[error(
        "Elasticsearch at {url} refused the credentials of {who} (HTTP 401: {reason}); check the user and password, or the API key"
    )]
    BadCredentials {
        /// Where we tried.
        url: String,
        /// Whose credentials ("user 'x'", "API key 'id'").
        who: String,
        /// Elasticsearch's reason.
        reason: String,
    },
    /// The credentials lack a privilege for a request.
    #[error(
        "Elasticsearch refused {request} to {who} (HTTP 403: {reason}); see the privileges essync needs in docs/operating.md (Rights on Elasticsearch)"
    )]
    Forbidden {
        /// What was asked.
        request: String,
        /// Whose credentials.
        who: String,
        /// Elasticsearch's reason (it names the action and the privileges that grant it).
        reason: String,
    },
    /// The credentials lack privileges essync needs, found at start-up.
    #[error(
        "the Elasticsearch {who} lacks privileges essync needs: {missing} (grant them, or narrow --es-indices to the indices it may use)"
    )]
    MissingPrivileges {
        /// Whose credentials.
        who: String,
        /// Which privileges are missing, by cluster and index pattern.
        missing: String,
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
