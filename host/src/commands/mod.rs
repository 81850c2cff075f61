//! What each command does, on top of the library.

pub mod errors;
pub mod metrics;
pub mod policy;
mod ranged;
pub mod status;
pub mod sync;

use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use essync::cassandra::{CassandraConfig, CassandraCredentials, CassandraStore, CassandraTls};
use essync::elasticsearch::{Credentials, ElasticsearchConfig, ElasticsearchStore, IndexSelection};

use crate::cli::{ConnectionOptions, Target};

/// A secret given directly (flag, environment or config file) or in a file (`--*-file`, one
/// line, trailing newline ignored). Messages name the flag and the file, never the secret.
fn secret(
    value: &Option<String>,
    file: &Option<std::path::PathBuf>,
    flag: &str,
) -> anyhow::Result<Option<String>> {
    match (value, file) {
        (Some(value), _) => Ok(Some(value.clone())),
        (None, Some(path)) => read_secret_file(path, flag).map(Some),
        (None, None) => Ok(None),
    }
}

fn read_secret_file(path: &Path, flag: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {flag}-file {}", path.display()))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        anyhow::bail!("{flag}-file {} is empty", path.display());
    }
    Ok(secret.to_string())
}

/// An API key as `ID:KEY`, or the `encoded` form Elasticsearch returns (base64 of `ID:KEY`).
fn api_key(key: &str) -> anyhow::Result<Credentials> {
    let decoded = if key.contains(':') {
        key.to_string()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(key)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|text| text.contains(':'))
            .context("the Elasticsearch API key must be ID:KEY or its base64 `encoded` form")?
    };
    let (id, key) = decoded
        .split_once(':')
        .context("the Elasticsearch API key must be ID:KEY")?;
    Ok(Credentials::ApiKey {
        id: id.to_string(),
        key: key.to_string(),
    })
}

/// The Elasticsearch configuration the command line says.
pub fn elasticsearch_config(options: &ConnectionOptions) -> anyhow::Result<ElasticsearchConfig> {
    let mut config = ElasticsearchConfig::with_urls(options.es_urls.iter().cloned());
    config.indices = IndexSelection::new([&options.es_indices])
        .map_err(|e| anyhow::anyhow!("--es-indices: {e}"))?;
    config.accept_invalid_certificates = options.es_insecure;
    config.gzip = options.es_gzip;
    config.bulk_max_bytes = (options.es_bulk_mib as usize) << 20;
    config.bulk_in_flight = options.es_bulk_in_flight as usize;
    config.ca_file = options.es_ca.clone();
    config.request_timeout = options.es_timeout;
    let password = secret(
        &options.es_password,
        &options.es_password_file,
        "--es-password",
    )?;
    let key = secret(
        &options.es_api_key,
        &options.es_api_key_file,
        "--es-api-key",
    )?;
    config.credentials = match (&options.es_user, password, key) {
        (_, _, Some(key)) => Some(api_key(&key)?),
        (Some(user), password, None) => Some(Credentials::Basic {
            username: user.clone(),
            password: password.unwrap_or_default(),
        }),
        (None, Some(_), None) => anyhow::bail!("an Elasticsearch password needs --es-user"),
        (None, None, None) => None,
    };
    Ok(config)
}

/// Connects to Elasticsearch as the command line says.
pub async fn connect_elasticsearch(
    options: &ConnectionOptions,
) -> anyhow::Result<ElasticsearchStore> {
    Ok(ElasticsearchStore::connect(elasticsearch_config(options)?).await?)
}

/// The Cassandra configuration the command line says.
pub fn cassandra_config(
    options: &ConnectionOptions,
    target: &Target,
) -> anyhow::Result<CassandraConfig> {
    let mut config = CassandraConfig::new(&target.keyspace, &target.table);
    config.nodes = options.cassandra_nodes.clone();
    config.replication = options.replication.clone();
    config.write_mode = options.cassandra_writes;
    let password = secret(
        &options.cassandra_password,
        &options.cassandra_password_file,
        "--cassandra-password",
    )?;
    config.credentials = match (&options.cassandra_user, password) {
        (Some(user), password) => Some(CassandraCredentials {
            user: user.clone(),
            password: password.unwrap_or_default(),
        }),
        (None, Some(_)) => anyhow::bail!("a Cassandra password needs --cassandra-user"),
        (None, None) => None,
    };
    let client_certificate = options
        .cassandra_cert
        .clone()
        .zip(options.cassandra_key.clone());
    if options.cassandra_tls
        || options.cassandra_ca.is_some()
        || options.cassandra_insecure
        || client_certificate.is_some()
    {
        config.tls = Some(CassandraTls {
            ca_file: options.cassandra_ca.clone(),
            accept_invalid_certificates: options.cassandra_insecure,
            client_certificate,
        });
    }
    config.read_consistency = options.cassandra_read_consistency;
    config.write_consistency = options.cassandra_write_consistency;
    config.serial_consistency = options.cassandra_serial_consistency;
    config.local_datacenter = options.cassandra_local_dc.clone();
    config.request_timeout = options.cassandra_timeout;
    config.connect_timeout = config.connect_timeout.min(options.cassandra_timeout);
    Ok(config)
}

/// Connects to Cassandra as the command line says, creating the keyspace and table when
/// missing.
pub async fn connect_cassandra(
    options: &ConnectionOptions,
    target: &Target,
) -> anyhow::Result<CassandraStore> {
    Ok(CassandraStore::connect(cassandra_config(options, target)?).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_read_as_id_and_key_or_encoded() {
        let Credentials::ApiKey { id, key } = api_key("abc:def").unwrap() else {
            panic!("not an API key");
        };
        assert_eq!((id.as_str(), key.as_str()), ("abc", "def"));
        // base64("VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw")
        let Credentials::ApiKey { id, key } =
            api_key("VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==").unwrap()
        else {
            panic!("not an API key");
        };
        assert_eq!(
            (id.as_str(), key.as_str()),
            ("VuaCfGcBCdbkQm-e5aOx", "ui2lp2axTNmsyakw9tvNnw")
        );
        let error = api_key("not-a-key!").unwrap_err().to_string();
        assert!(error.contains("ID:KEY"), "{error}");
        assert!(!error.contains("not-a-key"), "{error}");
    }

    #[test]
    fn secret_files_lose_their_trailing_newline_and_errors_name_the_file_not_the_secret() {
        let path = std::env::temp_dir().join(format!("essync-secret-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(
            secret(&None, &Some(path.clone()), "--es-password").unwrap(),
            Some("s3cret".to_string())
        );
        std::fs::write(&path, "\n").unwrap();
        let error = secret(&None, &Some(path.clone()), "--es-password")
            .unwrap_err()
            .to_string();
        assert!(error.contains("--es-password-file"), "{error}");
        std::fs::remove_file(&path).unwrap();
        let error = secret(&None, &Some(path.clone()), "--es-password")
            .unwrap_err()
            .to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
    }
}
