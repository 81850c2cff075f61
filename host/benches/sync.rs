//! Sync figures against the real servers (start them with `scripts/servers up`): a full
//! reconciliation (`-s`) of N documents written on each side, the round after it (which reads
//! essync's own writes back and recognises them from the ledger), an idle round, a round after
//! 1% of the documents changed on each side, how many rounds a delete on each side takes to
//! propagate, and the ledger's size per document.
//!
//!     cargo bench -p essync --bench sync -- [DOCUMENTS_PER_SIDE]
//!
//! Prints a table; asserts nothing.

use essync::Document;
use std::time::Instant;

use essync::cassandra::{CassandraConfig, CassandraExpected, CassandraStore, CassandraWrite};
use essync::document::now_millis;
use essync::elasticsearch::{
    ElasticsearchConfig, ElasticsearchStore, EsDelete, EsExpected, EsWrite, IndexSelection,
};
use essync::policy::{Policy, PolicyLimits};
use essync::store::{Lookup, Read};
use essync::sync::{RoundReport, Stop, SyncOptions, Syncer};
use futures::StreamExt;
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
    let (mut es_docs, mut cassandra_docs) = (Vec::new(), Vec::new());
    for chunk in (0..each).collect::<Vec<_>>().chunks(1000) {
        let writes: Vec<EsWrite> = chunk
            .iter()
            .map(|&n| EsWrite {
                document: document(&index, "es", n),
                expected: EsExpected::Absent,
            })
            .collect();
        es.write_batch(&writes).await?;
        es_docs.extend(writes.into_iter().map(|w| w.document));
        let writes: Vec<CassandraWrite> = chunk
            .iter()
            .map(|&n| CassandraWrite {
                document: document(&index, "cassandra", n),
                expected: CassandraExpected::Absent,
                read_at: essync::document::now_millis(),
            })
            .collect();
        cassandra.write_batch(&writes).await?;
        cassandra_docs.extend(writes.into_iter().map(|w| w.document));
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

    // Another client changes 1% of the documents on each side.
    let (es, cassandra) = stores(&tag).await?;
    let changed = (each / 100).max(1);
    for doc in es_docs.iter().take(changed) {
        let mut doc = doc.clone();
        doc.content["changed"] = json!(true);
        es.insert_or_replace_document(&doc.at(now_millis())).await?;
    }
    for doc in cassandra_docs.iter().take(changed) {
        let mut doc = doc.clone();
        doc.content["changed"] = json!(true);
        cassandra
            .insert_or_replace_document(&doc.at(now_millis()))
            .await?;
    }
    let incremental = syncer.round(&stop).await?;
    line("round after 1% changed on each side", &incremental, total);

    // A delete on each side, by another client: how many rounds until it is gone on the other.
    let (from_es, from_cassandra) = (&es_docs[each / 2], &cassandra_docs[each / 2]);
    let found = es
        .get_by_ids(&[(from_es.id, Some(index.clone()))], now_millis())
        .await?;
    if let Some(Lookup::Found(Read::Document(stored))) = found.get(&from_es.id) {
        es.delete_batch(&[EsDelete {
            id: from_es.id,
            expected: stored.version.clone(),
        }])
        .await?;
    }
    cassandra
        .session()
        .query_unpaged(
            format!("DELETE FROM {} WHERE id = ?", cassandra.table()),
            (from_cassandra.id,),
        )
        .await?;
    let started = Instant::now();
    let (mut rounds, mut spent) = (0, 0.0);
    loop {
        let report = syncer.round(&stop).await?;
        rounds += 1;
        spent += report.duration.as_secs_f64();
        let in_cassandra = cassandra.get_by_ids(&[from_es.id]).await?;
        let in_es = es
            .locate(&[(from_cassandra.id, Some(index.clone()))])
            .await?;
        let gone = in_cassandra.is_empty()
            && matches!(in_es.get(&from_cassandra.id), Some(Lookup::Absent));
        if gone || rounds >= 200 {
            break;
        }
    }
    println!(
        "{:<44} {:>8.2} s   {rounds} round(s), {:.2} s of rounds (default sweep of 20,000 rows)",
        "a delete on each side, until propagated",
        started.elapsed().as_secs_f64(),
        spent,
    );

    // The ledger's size: logical bytes per row beside the table's.
    let (ledger_bytes, table_bytes) = logical_sizes(&cassandra).await?;
    println!(
        "{:<44} {:>8.0} B    per document (the table: {:.0} B per row)",
        "ledger size, logical", ledger_bytes, table_bytes
    );

    // The table goes; the index stays for inspection (bench indices are named bench_sync_*).
    let (_, cassandra) = stores(&tag).await?;
    cassandra
        .session()
        .query_unpaged(format!("DROP TABLE {}", cassandra.table()), ())
        .await?;
    Ok(())
}

/// The mean logical size (the bytes of its values) of a ledger row of this sync, and of a row
/// of the synced table. On disk both are compressed (LZ4 by default).
async fn logical_sizes(
    cassandra: &CassandraStore,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let keyspace = &cassandra.config().keyspace;
    let sync = &cassandra.config().table;
    type Row = (Option<String>, Option<String>, Option<String>, String);
    let mut rows = cassandra
        .session()
        .query_iter(
            format!("SELECT index_, type, content, sync FROM {keyspace}.essync_ledger"),
            (),
        )
        .await?
        .rows_stream::<Row>()?;
    let (mut ledger, mut table, mut count) = (0usize, 0usize, 0usize);
    while let Some(row) = rows.next().await {
        let (index, doc_type, content, row_sync) = row?;
        if &row_sync != sync {
            continue;
        }
        let fields = index.map_or(0, |s| s.len())
            + doc_type.map_or(0, |s| s.len())
            + content.map_or(0, |s| s.len());
        // id 16, timestamp 8 in both; digest 16, three bigints 24 and the sync's name in the
        // ledger.
        table += 16 + 8 + fields;
        ledger += 16 + 8 + fields + 16 + 24 + row_sync.len();
        count += 1;
    }
    let count = count.max(1) as f64;
    Ok((ledger as f64 / count, table as f64 / count))
}
