//! What each command does, on top of the library.

pub mod errors;
pub mod metrics;
pub mod policy;
pub mod sync;

use tracing_subscriber::EnvFilter;

/// Logs go to stderr through `tracing`; `-v` and `-vv` raise essync's level, `RUST_LOG`
/// overrides everything.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "essync=info",
        1 => "essync=debug",
        _ => "essync=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

use anyhow::Context as _;
use essync::cassandra::{CassandraConfig, CassandraStore, CassandraTls};
use essync::elasticsearch::{Credentials, ElasticsearchConfig, ElasticsearchStore, IndexSelection};

use crate::cli::{ConnectionOptions, Target};

/// Connects to Elasticsearch as the command line says.
pub async fn connect_elasticsearch(
    options: &ConnectionOptions,
) -> anyhow::Result<ElasticsearchStore> {
    let mut config = ElasticsearchConfig::with_urls(options.es_urls.iter().cloned());
    config.indices = IndexSelection::new([&options.es_indices])
        .map_err(|e| anyhow::anyhow!("--es-indices: {e}"))?;
    config.accept_invalid_certificates = options.es_insecure;
    config.credentials = match (&options.es_user, &options.es_password, &options.es_api_key) {
        (_, _, Some(api_key)) => {
            let (id, key) = api_key
                .split_once(':')
                .context("--es-api-key must be ID:KEY")?;
            Some(Credentials::ApiKey {
                id: id.to_string(),
                key: key.to_string(),
            })
        }
        (Some(user), password, None) => Some(Credentials::Basic {
            username: user.clone(),
            password: password.clone().unwrap_or_default(),
        }),
        (None, Some(_), None) => anyhow::bail!("--es-password needs --es-user"),
        (None, None, None) => None,
    };
    Ok(ElasticsearchStore::connect(config).await?)
}

/// Connects to Cassandra as the command line says, creating the keyspace and table when
/// missing.
pub async fn connect_cassandra(
    options: &ConnectionOptions,
    target: &Target,
) -> anyhow::Result<CassandraStore> {
    let mut config = CassandraConfig::new(&target.keyspace, &target.table);
    config.nodes = options.cassandra_nodes.clone();
    config.replication = options.replication.clone();
    config.write_mode = options.cassandra_writes;
    config.credentials = match (&options.cassandra_user, &options.cassandra_password) {
        (Some(user), password) => Some((user.clone(), password.clone().unwrap_or_default())),
        (None, Some(_)) => anyhow::bail!("--cassandra-password needs --cassandra-user"),
        (None, None) => None,
    };
    if options.cassandra_tls || options.cassandra_ca.is_some() || options.cassandra_insecure {
        config.tls = Some(CassandraTls {
            ca_file: options.cassandra_ca.clone(),
            accept_invalid_certificates: options.cassandra_insecure,
        });
    }
    Ok(CassandraStore::connect(config).await?)
}
