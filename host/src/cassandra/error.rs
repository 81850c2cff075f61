//! What can go wrong talking to Cassandra, phrased for the person who has to fix it.

use scylla::errors::{
    DbError, ExecutionError, NewSessionError, PagerExecutionError, PrepareError,
    RequestAttemptError,
};
use thiserror::Error;

use super::CassandraConfig;
use crate::store::{error_chain, one_line};

/// What essync needs on the synced keyspace, for messages about missing permissions.
const NEEDED: &str = "essync needs SELECT and MODIFY on the keyspace, CREATE on it (for its \
                      state tables) and ALTER on the table (for its time index)";

/// A Cassandra failure that stops the operation as a whole (per-document problems are reported
/// as [`crate::store::BadDocument`] or [`crate::store::WriteOutcome`] instead).
#[derive(Debug, Error)]
pub enum CassandraError {
    /// A keyspace or table name that is not a plain CQL identifier.
    #[error(
        "'{name}' is not a valid {what} name: use letters, digits and '_', starting with a letter, at most 48"
    )]
    InvalidName {
        /// "keyspace" or "table".
        what: &'static str,
        /// The name as given.
        name: String,
    },
    /// No session could be opened.
    #[error("Cassandra is not reachable at {nodes}: {reason} (is it running? check --cassandra)")]
    Unreachable {
        /// The contact points tried.
        nodes: String,
        /// What the driver said.
        reason: String,
    },
    /// The cluster refused the user or password.
    #[error(
        "Cassandra at {nodes} refused the credentials of user '{user}': {reason} (check --cassandra-user and the password)"
    )]
    BadCredentials {
        /// The contact points tried.
        nodes: String,
        /// The user given.
        user: String,
        /// What the server said.
        reason: String,
    },
    /// The cluster requires a user and password and none was given.
    #[error(
        "Cassandra at {nodes} requires a user and password: give --cassandra-user and --cassandra-password-file"
    )]
    CredentialsRequired {
        /// The contact points tried.
        nodes: String,
    },
    /// The server's TLS certificate is not signed by a trusted authority (or not for this
    /// address).
    #[error(
        "the TLS certificate of Cassandra at {nodes} is not trusted ({reason}): give the CA that signed it with --cassandra-ca"
    )]
    UntrustedCertificate {
        /// The contact points tried.
        nodes: String,
        /// What the TLS library said.
        reason: String,
    },
    /// The cluster requires a client certificate (mutual TLS) and none, or one it does not
    /// trust, was shown.
    #[error(
        "Cassandra at {nodes} requires a client certificate it trusts: give --cassandra-cert and --cassandra-key ({reason})"
    )]
    ClientCertificateRefused {
        /// The contact points tried.
        nodes: String,
        /// What the TLS library said.
        reason: String,
    },
    /// Plain CQL to a port that speaks only TLS.
    #[error(
        "Cassandra at {nodes} closed the connection before answering: if it requires TLS (client encryption), add --cassandra-tls or --cassandra-ca ({reason})"
    )]
    TlsRequired {
        /// The contact points tried.
        nodes: String,
        /// What the driver said.
        reason: String,
    },
    /// The connection was accepted but the session was not set up in time: a stuck node, or a
    /// TLS mismatch the server answers with silence rather than an error.
    #[error(
        "Cassandra at {nodes} accepted the connection but did not set up a session within {within_s}s: {hint}"
    )]
    NoHandshake {
        /// The contact points tried.
        nodes: String,
        /// The time allowed.
        within_s: u64,
        /// The likely causes for this configuration.
        hint: &'static str,
    },
    /// The user lacks a permission essync needs.
    #[error("Cassandra refused {action}: {reason}; {NEEDED}")]
    Forbidden {
        /// What essync was doing.
        action: String,
        /// What the server said (it names the permission and the resource).
        reason: String,
    },
    /// `--cassandra-local-dc` names a datacenter the cluster does not have.
    #[error(
        "the Cassandra cluster has no datacenter '{name}' (it has: {known}); check --cassandra-local-dc"
    )]
    UnknownDatacenter {
        /// The name given.
        name: String,
        /// The datacenters the cluster has.
        known: String,
    },
    /// The table exists but cannot hold essync's documents.
    #[error("table {table} cannot be synced: {reason}")]
    IncompatibleTable {
        /// keyspace.table
        table: String,
        /// Which column is wrong, and what essync needs.
        reason: String,
    },
    /// A statement failed.
    #[error("Cassandra failed {action}: {reason}")]
    Request {
        /// What essync was doing.
        action: String,
        /// What the driver or server said.
        reason: String,
        /// Whether waiting and trying again may help.
        transient: bool,
    },
    /// The server answered something this client does not understand.
    #[error("unexpected answer from Cassandra to {action}: {reason}")]
    Protocol {
        /// What essync was doing.
        action: String,
        /// What was wrong with the answer.
        reason: String,
    },
}

impl CassandraError {
    /// Whether waiting and trying again may help (node down, overloaded, timing out).
    pub fn is_transient(&self) -> bool {
        match self {
            CassandraError::Unreachable { .. } | CassandraError::NoHandshake { .. } => true,
            CassandraError::Request { transient, .. } => *transient,
            _ => false,
        }
    }

    /// Whether a read failed because a storage-attached index is still being built (right
    /// after it was created on a table that has rows).
    pub fn is_index_building(&self) -> bool {
        matches!(self, CassandraError::Request { reason, .. } if reason.contains("INDEX_NOT_AVAILABLE"))
    }

    /// A session not set up within `within`, with the causes likely for this configuration.
    pub(crate) fn no_handshake(config: &CassandraConfig, within: std::time::Duration) -> Self {
        let hint = match &config.tls {
            None => {
                "if it requires TLS (client encryption), add --cassandra-tls or --cassandra-ca; \
                 otherwise it may be overloaded or starting"
            }
            Some(tls) if tls.client_certificate.is_none() => {
                "if it requires a client certificate, give --cassandra-cert and --cassandra-key; \
                 otherwise it may be overloaded or starting"
            }
            Some(_) => "it may be overloaded or starting (check its log)",
        };
        CassandraError::NoHandshake {
            nodes: config.nodes.join(","),
            within_s: within.as_secs(),
            hint,
        }
    }

    /// A session that could not be opened, classified by what the user can do about it.
    pub(crate) fn session(config: &CassandraConfig, error: &NewSessionError) -> Self {
        let nodes = config.nodes.join(",");
        let reason = error_chain(error);
        let text = reason.to_ascii_lowercase();
        let tls = config.tls.is_some();
        if tls && (text.contains("certificaterequired") || text.contains("certificate required")) {
            return CassandraError::ClientCertificateRefused { nodes, reason };
        }
        if tls
            && (text.contains("invalid peer certificate")
                || text.contains("unknownissuer")
                || text.contains("notvalidforname"))
        {
            return CassandraError::UntrustedCertificate { nodes, reason };
        }
        if tls && (text.contains("unknownca") || text.contains("bad certificate")) {
            return CassandraError::ClientCertificateRefused { nodes, reason };
        }
        // With TLS 1.3 the server checks the client's certificate after the client has finished
        // its side of the handshake: a server that requires one either answers the first
        // request with a `certificate required` alert or simply drops the connection.
        let without_certificate = config
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_certificate.is_none());
        if without_certificate
            && (text.contains("connection reset by peer")
                || text.contains("connection setup request") && text.contains("connection broken"))
        {
            return CassandraError::ClientCertificateRefused { nodes, reason };
        }
        if text.contains("authentication") || text.contains("credentials") {
            return match &config.credentials {
                Some(credentials) => CassandraError::BadCredentials {
                    nodes,
                    user: credentials.user.clone(),
                    reason: server_message(&reason),
                },
                None => CassandraError::CredentialsRequired { nodes },
            };
        }
        // A TLS-only port drops a plain STARTUP: the answer is a reset, not a refusal.
        if !tls && text.contains("connection reset by peer") && !text.contains("refused") {
            return CassandraError::TlsRequired { nodes, reason };
        }
        CassandraError::Unreachable { nodes, reason }
    }

    /// A failed statement, classified.
    pub(crate) fn execution(action: impl Into<String>, error: &ExecutionError) -> Self {
        if let ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Unauthorized,
            message,
        )) = error
        {
            return CassandraError::Forbidden {
                action: action.into(),
                reason: one_line(message),
            };
        }
        CassandraError::Request {
            action: action.into(),
            reason: error_chain(error),
            transient: execution_is_transient(error),
        }
    }

    /// A failed paged read, classified.
    pub(crate) fn pager(action: impl Into<String>, error: &PagerExecutionError) -> Self {
        let text = error_chain(error);
        if text.contains("has no") && text.contains("permission") {
            return CassandraError::Forbidden {
                action: action.into(),
                reason: text,
            };
        }
        let transient = match error {
            PagerExecutionError::NextPageError(_) => true,
            other => {
                // Preparation and first-page errors carry no finer classification here.
                let text = other.to_string();
                text.contains("timeout") || text.contains("connection") || text.contains("Timeout")
            }
        };
        CassandraError::Request {
            action: action.into(),
            reason: error_chain(error),
            transient,
        }
    }

    /// A statement that could not be prepared (a schema or syntax error: not transient).
    pub(crate) fn prepare(action: impl Into<String>, error: &PrepareError) -> Self {
        CassandraError::Request {
            action: action.into(),
            reason: error_chain(error),
            transient: false,
        }
    }

    /// Anything else a statement's answer can fail with (decoding rows, ...).
    pub(crate) fn protocol(action: impl Into<String>, error: impl std::fmt::Display) -> Self {
        CassandraError::Protocol {
            action: action.into(),
            reason: one_line(&error.to_string()),
        }
    }
}

/// The server's own words from a driver message (`... Error message: Provided username ...`).
fn server_message(reason: &str) -> String {
    ["Error message: ", "message="]
        .iter()
        .find_map(|marker| reason.split_once(marker))
        .map(|(_, message)| message.trim_matches(|c| c == '"' || c == ' ').to_string())
        .unwrap_or_else(|| reason.to_string())
}

fn execution_is_transient(error: &ExecutionError) -> bool {
    match error {
        ExecutionError::EmptyPlan
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::RequestTimeout(_) => true,
        ExecutionError::LastAttemptError(attempt) => attempt_is_transient(attempt),
        _ => false,
    }
}

fn attempt_is_transient(error: &RequestAttemptError) -> bool {
    match error {
        RequestAttemptError::UnableToAllocStreamId
        | RequestAttemptError::BrokenConnectionError(_) => true,
        RequestAttemptError::DbError(db, _) => matches!(
            db,
            DbError::Unavailable { .. }
                | DbError::Overloaded
                | DbError::IsBootstrapping
                | DbError::ReadTimeout { .. }
                | DbError::WriteTimeout { .. }
                | DbError::ReadFailure { .. }
                | DbError::WriteFailure { .. }
                | DbError::RateLimitReached { .. }
                | DbError::TruncateError
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use scylla::errors::BrokenConnectionErrorKind;

    use super::*;

    #[test]
    fn a_driver_message_over_several_lines_is_reported_on_one() {
        // The driver's message for a connection dropped mid-request spans three lines.
        let error = ExecutionError::LastAttemptError(RequestAttemptError::BrokenConnectionError(
            BrokenConnectionErrorKind::ChannelError.into(),
        ));
        let reported = CassandraError::execution("to write ks.t", &error);
        assert!(reported.is_transient());
        let text = reported.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("tokio channel. It implies"), "{text}");
    }
}
