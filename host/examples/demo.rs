//! Writes documents to both stores through essync's library, and shows each one arriving on the
//! other side (when an essync process syncs them).
//!
//!     cargo run --example demo -- [KEYSPACE:TABLE] [INDEX]
//!
//! Every few seconds it writes one document to Elasticsearch and one row to Cassandra, then
//! waits for each to appear on the other side and prints how long it took. Ctrl-C stops it.

use std::time::{Duration, Instant};

use essync::Document;
use essync::cassandra::{CassandraConfig, CassandraStore};
use essync::document::now_millis;
use essync::elasticsearch::{ElasticsearchConfig, ElasticsearchStore, IndexSelection};
use essync::store::{Lookup, Read};
use serde_json::json;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("demo: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_else(|| "demo:documents".to_string());
    let index = args.next().unwrap_or_else(|| "demo-notes".to_string());
    let (keyspace, table) = target
        .split_once(':')
        .ok_or("the first argument is KEYSPACE:TABLE")?;

    let mut es_config = ElasticsearchConfig::with_urls([
        std::env::var("ESSYNC_ES_URL").unwrap_or_else(|_| "http://127.0.0.1:9200".into())
    ]);
    es_config.indices = IndexSelection::new([index.as_str()])?;
    let elasticsearch = ElasticsearchStore::connect(es_config).await?;
    let mut cassandra_config = CassandraConfig::new(keyspace, table);
    if let Ok(node) = std::env::var("ESSYNC_CASSANDRA") {
        cassandra_config.nodes = vec![node];
    }
    let cassandra = CassandraStore::connect(cassandra_config).await?;

    println!("writing a document to each side every 5 seconds; Ctrl-C stops");
    for n in 1.. {
        let from_es = Document::new(
            &index,
            "note",
            json!({"text": format!("note {n}, written to Elasticsearch"), "n": n}),
        )
        .at(now_millis());
        let from_cassandra = Document::new(
            &index,
            "note",
            json!({"text": format!("note {n}, written to Cassandra"), "n": n}),
        )
        .at(now_millis());
        elasticsearch.insert_or_replace_document(&from_es).await?;
        cassandra
            .insert_or_replace_document(&from_cassandra)
            .await?;
        let written = Instant::now();
        println!("{from_es} -> Elasticsearch");
        println!("{from_cassandra} -> Cassandra");

        let (mut in_cassandra, mut in_es) = (false, false);
        while written.elapsed() < Duration::from_secs(60) && !(in_cassandra && in_es) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if !in_cassandra
                && let Some(Read::Document(_)) = cassandra
                    .get_by_ids(&[from_es.id])
                    .await?
                    .remove(&from_es.id)
            {
                in_cassandra = true;
                println!(
                    "  {} reached Cassandra after {:.1}s",
                    from_es.id,
                    written.elapsed().as_secs_f64()
                );
            }
            if !in_es {
                let found = elasticsearch
                    .get_by_ids(&[(from_cassandra.id, Some(index.clone()))], now_millis())
                    .await?;
                if let Some(Lookup::Found(Read::Document(_))) = found.get(&from_cassandra.id) {
                    in_es = true;
                    println!(
                        "  {} reached Elasticsearch after {:.1}s",
                        from_cassandra.id,
                        written.elapsed().as_secs_f64()
                    );
                }
            }
        }
        if !(in_cassandra && in_es) {
            println!("  not synced within a minute: is essync running on {target}?");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    Ok(())
}
