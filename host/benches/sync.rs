//! Sync figures against the real servers (start them with `scripts/servers up`): a full
//! reconciliation (`-s`) of N documents written on each side, the round after it (which reads
//! essync's own writes back and finds them equal), and an idle round.
//!
//!     cargo bench -p essync --bench sync -- [DOCUMENTS_PER_SIDE]
//!
//! Prints a table; asserts nothing.

use essync::Document;
use essync::cassandra::{CassandraConfig, CassandraExpected, CassandraStore, CassandraWrite};
use essync::document::now_millis;
use essync::elasticsearch::{
    ElasticsearchConfig, ElasticsearchStore, EsExpected, EsWrite, IndexSelection,
};
use essync::policy::{Policy, PolicyLimits};
use essync::sync::{RoundReport, Stop, SyncOptions, Syncer};
use serde_json::json;

fn document(index: &str, side: &str, n: usize) -> Document {
    Document::new(
        index,
        "bench",
        json!({"n": n, "side": side, "title": format!("document {n}"), "body": "x".repeat(200)}),
    )
    .at(now_millis())
}

async fn stores(
    tag: &str,
) -> Result<(ElasticsearchStore, CassandraStore), Box<dyn std::error::Error>> {
    let mut es = ElasticsearchConfig::with_urls([
        std::env::var("ESSYNC_ES_URL").unwrap_or_else(|_| "http://127.0.0.1:9200".into())
    ]);
    es.indices = IndexSelection::new([format!("{tag}*")])?;
    let mut cassandra = CassandraConfig::new("essync_bench", tag);
    if let Ok(node) = std::env::var("ESSYNC_CASSANDRA") {
        cassandra.nodes = vec![node];
    }
    Ok((
        ElasticsearchStore::connect(es).await?,
        CassandraStore::connect(cassandra).await?,
    ))
}

fn line(what: &str, report: &RoundReport, documents: u64) {
    let seconds = report.duration.as_secs_f64();
    println!(
        "{what:<44} {seconds:>8.2} s {:>10.0} docs/s   read {}/{}  wrote {}/{}",
        documents as f64 / seconds.max(1e-9),
        report.elasticsearch.read,
        report.cassandra.read,
        report.elasticsearch.written,
        report.cassandra.written,
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let each: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let tag = format!("bench_sync_{}", std::process::id());
    println!("essync sync figures, {each} documents of ~300 bytes on each side\n");

    let (es, cassandra) = stores(&tag).await?;
    let index = format!("{tag}_docs");
    es.ensure_index(&index, Some(3)).await?;
    for chunk in (0..each).collect::<Vec<_>>().chunks(1000) {
        let writes: Vec<EsWrite> = chunk
            .iter()
            .map(|&n| EsWrite {
                document: document(&index, "es", n),
                expected: EsExpected::Absent,
            })
            .collect();
        es.write_batch(&writes).await?;
        let writes: Vec<CassandraWrite> = chunk
            .iter()
            .map(|&n| CassandraWrite {
                document: document(&index, "cassandra", n),
                expected: CassandraExpected::Absent,
                read_at: essync::document::now_millis(),
            })
            .collect();
        cassandra.write_batch(&writes).await?;
    }

    let options = SyncOptions {
        reconcile: true,
        ..SyncOptions::default()
    };
    let policy = Policy::builtin(PolicyLimits::default())?;
    let mut syncer = Syncer::start(es, cassandra, policy, options).await?;
    let stop = Stop::new();
    let total = 2 * each as u64;
    let reconcile = syncer.round(&stop).await?;
    line("reconciliation (-s), both sides", &reconcile, total);
    let echo = syncer.round(&stop).await?;
    line("next round (reads its own writes back)", &echo, total);
    let idle = syncer.round(&stop).await?;
    line("idle round", &idle, total);

    // The table goes; the index stays for inspection (bench indices are named bench_sync_*).
    let (_, cassandra) = stores(&tag).await?;
    cassandra
        .session()
        .query_unpaged(format!("DROP TABLE {}", cassandra.table()), ())
        .await?;
    Ok(())
}
