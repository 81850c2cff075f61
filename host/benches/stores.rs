//! Store figures against the real servers (start them with `scripts/servers up`):
//! write throughput of the race-safe batched writes, memory while `get_documents` streams every
//! document, and the cost of an idle change-feed round.
//!
//!     cargo bench -p essync --bench stores -- [DOCUMENTS]
//!
//! Prints a table; asserts nothing.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use essync::Document;
use essync::cassandra::{
    CassandraConfig, CassandraExpected, CassandraStore, CassandraWrite, WriteMode,
};
use essync::document::now_millis;
use essync::elasticsearch::{
    ElasticsearchConfig, ElasticsearchStore, EsExpected, EsWrite, IndexSelection,
};
use futures::StreamExt;
use serde_json::json;

fn resident_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn document(index: &str, n: usize) -> Document {
    Document::new(
        index,
        "bench",
        json!({"n": n, "title": format!("document {n}"), "body": "x".repeat(200)}),
    )
    .at(now_millis())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let tag = format!("bench_{}", std::process::id());
    println!("essync store figures, {count} documents of ~300 bytes\n");
    println!("{:<52} {:>14}", "measure", "value");

    // Elasticsearch.
    let mut config = ElasticsearchConfig::with_urls([
        std::env::var("ESSYNC_ES_URL").unwrap_or_else(|_| "http://127.0.0.1:9200".into())
    ]);
    config.indices = IndexSelection::new([format!("{tag}*")])?;
    let es = ElasticsearchStore::connect(config).await?;
    let index = format!("{tag}_docs");
    es.ensure_index(&index, Some(3)).await?;
    let started = Instant::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
        let writes: Vec<EsWrite> = chunk
            .iter()
            .map(|&n| EsWrite {
                document: document(&index, n),
                expected: EsExpected::Absent,
                digest: None,
            })
            .collect();
        es.write_batch(&writes).await?;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    println!(
        "{:<52} {:>10.0} /s",
        "elasticsearch: compare-and-set bulk writes", rate
    );
    let checkpoint = es.current_positions().await?;
    stream_memory("elasticsearch", count, es.get_documents()).await;
    let started = Instant::now();
    let mut pages = std::pin::pin!(es.changes(&checkpoint, now_millis()));
    let mut read = 0;
    while let Some(page) = pages.next().await {
        read += page?.reads.len();
    }
    println!(
        "{:<52} {:>11.1} ms",
        format!("elasticsearch: idle change round ({read} read)"),
        started.elapsed().as_secs_f64() * 1000.0
    );

    // Cassandra, both write modes, each into a table of its own.
    let mut last = None;
    for mode in [WriteMode::Lwt, WriteMode::Fenced] {
        let mut config = CassandraConfig::new("essync_bench", format!("{tag}_{mode}"));
        if let Ok(node) = std::env::var("ESSYNC_CASSANDRA") {
            config.nodes = vec![node];
        }
        config.write_mode = mode;
        let cassandra = CassandraStore::connect(config).await?;
        let started = Instant::now();
        for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
            let writes: Vec<CassandraWrite> = chunk
                .iter()
                .map(|&n| CassandraWrite {
                    document: document("docs", n),
                    expected: CassandraExpected::Absent,
                    read_at: now_millis(),
                })
                .collect();
            cassandra.write_batch(&writes).await?;
        }
        let rate = count as f64 / started.elapsed().as_secs_f64();
        println!(
            "{:<52} {:>10.0} /s",
            format!("cassandra: race-safe writes ({mode})"),
            rate
        );
        if let Some(previous) = last.replace(cassandra) {
            drop_table(&previous).await?;
        }
    }
    let Some(cassandra) = last else {
        return Ok(());
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    stream_memory("cassandra", count, cassandra.get_documents()).await;
    // What the write-time sweep reads of an idle table: ids and write times only.
    for sweep_rows in [20_000, count] {
        let started = Instant::now();
        let (mut position, mut examined) = (None, 0);
        while examined < sweep_rows {
            let page = cassandra
                .scan_page(
                    position.as_ref(),
                    1000.min(sweep_rows - examined),
                    false,
                    essync::cassandra::TokenRange::WHOLE,
                )
                .await?;
            examined += page.rows.len().max(1);
            position = page.position;
            if page.done {
                break;
            }
        }
        println!(
            "{:<52} {:>11.1} ms",
            format!("cassandra: write-time sweep of {sweep_rows} rows"),
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    drop_table(&cassandra).await?;
    Ok(())
}

/// Drops the benchmark's table through a session of its own (essync's store hands out none).
async fn drop_table(cassandra: &CassandraStore) -> Result<(), Box<dyn std::error::Error>> {
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&cassandra.config().nodes)
        .build()
        .await?;
    session
        .query_unpaged(format!("DROP TABLE {}", cassandra.table()), ())
        .await?;
    Ok(())
}

async fn stream_memory<E: std::error::Error + 'static>(
    side: &str,
    count: usize,
    documents: impl futures::Stream<Item = Result<Document, essync::store::ReadError<E>>>,
) {
    let mut documents = std::pin::pin!(documents);
    let before = resident_mib();
    let mut peak = before;
    let mut ids = HashSet::with_capacity(count);
    let started = Instant::now();
    let mut samples = Vec::new();
    while let Some(document) = documents.next().await {
        if let Ok(document) = document {
            ids.insert(document.id);
        }
        if ids.len() % (count / 4).max(1) == 0 {
            samples.push(format!("{:.0}", resident_mib()));
        }
        if ids.len() % 1000 == 0 {
            peak = peak.max(resident_mib());
        }
    }
    let rate = ids.len() as f64 / started.elapsed().as_secs_f64();
    println!(
        "{:<52} {:>10.0} /s",
        format!("{side}: get_documents ({} distinct)", ids.len()),
        rate
    );
    println!(
        "{:<52} {:>10.1} MiB",
        format!(
            "{side}: resident growth while streaming (samples {})",
            samples.join("/")
        ),
        peak - before
    );
}
