//! `scripts/bench [N] [--quick]`: essync beside the raw limit of the servers it syncs, on the
//! same data, in one run.
//!
//! 1. **raw limit**: N documents bulk-written to Elasticsearch and N rows written to Cassandra by
//!    the client crates essync uses, at the best of a small grid of settings, plus reading the
//!    2N back; each store alone and both at once (the honest limit on a machine whose servers
//!    share the cores).
//! 2. **backfill**: the N documents in Elasticsearch only and N others in Cassandra only, then
//!    `essync -s --once`.
//! 3. **next round**: `essync --once` right after.
//! 4. **incremental**: 1% of the documents changed on each side, then one round.
//! 5. **idle round**: at N and at 4N.
//! 6. **memory**: essync's peak resident memory during the backfill, at N and at 4N.
//! 7. **lag**: a writer on each side at 200 writes/s for 60 s against `essync ... 1`.
//! 8. **policy share**: the CPU essync spends in its policy over its CPU, during the backfill.
//! 9. **hostile reconciliation**: N documents in 100 indices reconciled, then the same with one
//!    more index of `max_result_window: 10` in the selection.
//! 10. **shared backfill**: N + N documents of their own backfilled by 1, 2 and 3 processes
//!     started together with `--ranges` 1, 2 and 3, and how evenly they split the writes.
//!
//! Beside steps 1 and 2, the CPU time of essync and of both servers per document, the requests
//! essync sent per document copied, and the size of its ledger on disk per row.
//!
//! essync runs as its binary, as a user runs it: round times and request counts come from its
//! own summary line, memory and CPU from `/proc` (the servers' too, found by the port they
//! listen on), the policy's CPU and the requests per kind from `--metrics`. It prints a table
//! and writes the figures to a JSON file. It asserts nothing.

mod data;
mod hostile;
mod lag;
mod ledger;
mod limit;
mod process;
mod report;
mod servers;
mod shared;
mod stores;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use data::{Doc, Rng, documents};
use hostile::Hostile;
use lag::Lag;
use ledger::LedgerSize;
use limit::Limit;
use process::{Essync, Round, Run};
use report::{Figures, Table, percent, seconds, thousands};
use servers::{Servers, Span};
use stores::{Cql, Es};

/// The keyspace of every benchmark table (`scripts/servers clean-tests` drops it).
const KEYSPACE: &str = "essync_bench";
/// The data's seed: the same documents on every run and machine.
const SEED: u64 = 1;
/// A quiet pause before an idle round, longer than essync's default safety window (5 s), so
/// the round does not re-read the last round's writes: what a round on an idle table costs.
const IDLE_WAIT: Duration = Duration::from_secs(6);

/// essync beside the raw limit of its servers: backfill, rounds, memory, lag, policy share.
#[derive(Debug, Parser)]
#[command(name = "essync-bench", version)]
struct Args {
    /// Documents on each side (default 50,000; 10,000 with --quick)
    n: Option<usize>,
    /// Every step but the lag (7), at N = 10,000 unless N is given
    #[arg(long)]
    quick: bool,
    /// The essync binary to measure (default: `essync` beside this program)
    #[arg(long, value_name = "PATH")]
    essync: Option<PathBuf>,
    /// Where to write the figures as JSON
    #[arg(long, value_name = "PATH", default_value = ".work/bench/latest.json")]
    out: PathBuf,
    /// Elasticsearch
    #[arg(long, env = "ESSYNC_ES_URL", default_value = "http://127.0.0.1:9200")]
    es_url: String,
    /// Cassandra contact point
    #[arg(long, env = "ESSYNC_CASSANDRA", default_value = "127.0.0.1:9042")]
    cassandra: String,
    /// How long the lag writers write
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    lag_seconds: u64,
    /// Writes per second of each lag writer
    #[arg(long, value_name = "RATE", default_value_t = 200)]
    lag_rate: u32,
    /// Only the lag (7), after loading N documents on each side and a backfill: a quick check
    /// while working on the lag; writes no figures
    #[arg(long, conflicts_with = "quick")]
    lag_only: bool,
}

/// This run's index and table names: unique, so runs never see each other's data.
struct Names {
    tag: String,
}

impl Names {
    fn index(&self, what: &str) -> String {
        format!("bench_{}_{what}", self.tag)
    }

    fn table(&self, what: &str) -> String {
        format!("{what}_{}", self.tag)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("essync_bench=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up, runs the steps, and removes this run's indices and tables whatever happened.
async fn bench(args: Args) -> anyhow::Result<()> {
    let n = args
        .n
        .unwrap_or(if args.quick { 10_000 } else { 50_000 })
        .max(100);
    let path = match &args.essync {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("essync"),
    };
    anyhow::ensure!(path.is_file(), "no essync binary at {}", path.display());
    let essync = Essync {
        path,
        es_url: args.es_url.clone(),
        cassandra: args.cassandra.clone(),
        keyspace: KEYSPACE.to_string(),
    };
    let es = Es::connect(&args.es_url)?;
    let cql = Arc::new(Cql::connect(&args.cassandra, KEYSPACE).await?);
    let names = Names {
        tag: std::process::id().to_string(),
    };
    let servers = Servers::find(&args.es_url, &args.cassandra);
    if args.lag_only {
        let result = lag_only(&args, n, &essync, &es, &cql, &servers, &names).await;
        cleanup(&es, &cql, &names).await;
        print!("{}", result?);
        return Ok(());
    }
    let result = steps(&args, n, &essync, &es, &cql, &servers, &names).await;
    cleanup(&es, &cql, &names).await;
    let (figures, text) = result?;
    print!("{text}");
    figures.write(&args.out)?;
    println!("\nFigures written to {}", args.out.display());
    Ok(())
}

/// Removes this run's indices and tables.
async fn cleanup(es: &Es, cql: &Cql, names: &Names) {
    servers::remove_flush_program();
    let cleaned = async {
        let mut indices: Vec<String> = ["grid", "n", "4n"].map(|i| names.index(i)).into();
        indices.extend(hostile::indices(names));
        indices.extend(shared::indices(names));
        es.delete_indices(&indices.join(",")).await?;
        let mut tables: Vec<String> = ["grid", "n", "x4"].map(|t| names.table(t)).into();
        tables.extend(hostile::tables(names));
        tables.extend(shared::tables(names));
        for table in tables {
            cql.drop_table(&table).await?;
            // essync's ledger of the table (a table per sync).
            for (ledger, _) in cql.ledger_tables(&table).await? {
                cql.drop_table(&ledger).await?;
            }
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = &cleaned {
        tracing::warn!("could not remove this run's data: {e:#}");
    }
}

/// Step 7: writers on both sides against essync ... 1 on a synced table; the lag and the
/// number of rounds essync ran.
async fn lag_step(
    args: &Args,
    essync: &Essync,
    es: &Es,
    cql: &Arc<Cql>,
    table: &str,
    index: &str,
) -> anyhow::Result<(Lag, Vec<Round>)> {
    tracing::info!(
        "lag: {} writes/s on each side for {} s against essync ... 1",
        args.lag_rate,
        args.lag_seconds
    );
    let mut running = essync.start(table, index, 1).await?;
    running.next_round(Duration::from_secs(300)).await?;
    let measured = lag::measure(
        SEED * 10 + 6,
        es,
        cql,
        table,
        index,
        args.lag_rate,
        Duration::from_secs(args.lag_seconds),
    )
    .await;
    let rounds = running.rounds();
    running.stop().await?;
    Ok((measured?, rounds))
}

/// `--lag-only`: N documents on each side, a backfill, then the lag step.
async fn lag_only(
    args: &Args,
    n: usize,
    essync: &Essync,
    es: &Es,
    cql: &Arc<Cql>,
    servers: &Servers,
    names: &Names,
) -> anyhow::Result<String> {
    let (index, table) = (names.index("n"), names.table("n"));
    let best = limit::Best::default();
    limit::load_both(
        es,
        cql,
        servers,
        &index,
        &table,
        &documents(SEED * 10 + 1, &index, n),
        &documents(SEED * 10 + 2, &index, n),
        best,
    )
    .await?;
    essync.once(&table, &index, true).await?;
    let (lag, rounds) = lag_step(args, essync, es, cql, &table, &index).await?;
    Ok(format!("N = {n}. {}", lag_line(&lag, rounds.len())))
}

/// The lag step in words.
fn lag_line(lag: &Lag, rounds: usize) -> String {
    format!(
        "Lag: {} + {} writes ({:.0} and {:.0} per second achieved, {} + {} failed), {} + {} \
         followed, {} never seen within 20 s; p50 {} p99 {}; Elasticsearch to Cassandra p50 {} \
         p99 {}, Cassandra to Elasticsearch p50 {} p99 {}, max {}; essync ran {rounds} rounds.\n",
        lag.written[0],
        lag.written[1],
        lag.rate[0],
        lag.rate[1],
        lag.failed[0],
        lag.failed[1],
        lag.followed[0],
        lag.followed[1],
        lag.unseen,
        seconds(lag.p50_s),
        seconds(lag.p99_s),
        seconds(lag.es_to_cassandra[0]),
        seconds(lag.es_to_cassandra[1]),
        seconds(lag.cassandra_to_es[0]),
        seconds(lag.cassandra_to_es[1]),
        seconds(lag.max_s),
    )
}

/// Every run of essync, for the detail table.
struct Runs(Vec<(String, Run)>);

impl Runs {
    fn add(&mut self, what: &str, run: Run) -> Run {
        tracing::info!(
            "{what}: round {}, process {} ({} read {} / {}, wrote {} / {})",
            seconds(run.round_s),
            seconds(run.process_s),
            "Elasticsearch / Cassandra",
            run.round.read[0],
            run.round.read[1],
            run.round.written[0],
            run.round.written[1],
        );
        self.0.push((what.to_string(), run.clone()));
        run
    }
}

async fn steps(
    args: &Args,
    n: usize,
    essync: &Essync,
    es: &Es,
    cql: &Arc<Cql>,
    servers: &Servers,
    names: &Names,
) -> anyhow::Result<(Figures, String)> {
    let load_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let index_n = names.index("n");
    let table_n = names.table("n");
    let index_4n = names.index("4n");
    let table_4n = names.table("x4");
    let mut runs = Runs(Vec::new());

    // 1. Raw limit; leaves the backfill's data in place.
    let es_docs = documents(SEED * 10 + 1, &index_n, n);
    let cql_docs = documents(SEED * 10 + 2, &index_n, n);
    let average = (es_docs
        .iter()
        .chain(&cql_docs)
        .map(|d| d.content.len())
        .sum::<usize>()
        / (2 * n)) as f64;
    let limit = limit::measure(
        es,
        cql,
        servers,
        limit::Scratch {
            index: &names.index("grid"),
            table: &names.table("grid"),
        },
        SEED * 10 + 9,
        &index_n,
        &table_n,
        &es_docs,
        &cql_docs,
    )
    .await?;

    // 2-3. Backfill (the servers' CPU meanwhile, the ledger's size after) and the round after.
    tracing::info!("backfill: essync -s --once on {n} + {n} documents");
    let (backfill_span, backfill) = servers.span(essync.once(&table_n, &index_n, true)).await?;
    let backfill = runs.add("backfill (-s) at N", backfill);
    let ledger = ledger_size(servers, cql, &table_n).await;
    let next = runs.add(
        "next round at N",
        essync.once(&table_n, &index_n, false).await?,
    );

    // 4. Incremental: 1% of the 2N documents changed on each side, distinct ids.
    let all: Vec<&Doc> = es_docs.iter().chain(&cql_docs).collect();
    let now = chrono::Utc::now().timestamp_millis();
    let mut rng = Rng::new(SEED * 10 + 3);
    let on_es: Vec<Doc> = all
        .iter()
        .step_by(100)
        .map(|d| d.changed(&mut rng, now))
        .collect();
    let on_cql: Vec<Doc> = all
        .iter()
        .skip(50)
        .step_by(100)
        .map(|d| d.changed(&mut rng, now))
        .collect();
    tracing::info!(
        "incremental: {} documents changed in Elasticsearch, {} others in Cassandra",
        on_es.len(),
        on_cql.len()
    );
    let insert = cql.insert(&table_n).await?;
    futures::try_join!(
        es.bulk_write(
            &index_n,
            Es::bulk_bodies(&on_es, limit.best.es_writes.batch),
            limit.best.es_writes.concurrency
        ),
        cql.write(&insert, &on_cql, limit.best.cql_writes)
    )?;
    let incremental = runs.add(
        "incremental at N",
        essync.once(&table_n, &index_n, false).await?,
    );
    runs.add(
        "round after it at N",
        essync.once(&table_n, &index_n, false).await?,
    );

    // 5. Idle at N, after a quiet pause in which the servers' own CPU is measured.
    let (quiet, ()) = servers
        .span(async {
            tokio::time::sleep(IDLE_WAIT).await;
            Ok(())
        })
        .await?;
    let idle_n = runs.add(
        "idle round at N",
        essync.once(&table_n, &index_n, false).await?,
    );

    // 4N: load, backfill (memory), the round after it, idle.
    tracing::info!("4N: writing {} + {} documents", 4 * n, 4 * n);
    let es_docs_4n = documents(SEED * 10 + 4, &index_4n, 4 * n);
    let cql_docs_4n = documents(SEED * 10 + 5, &index_4n, 4 * n);
    let load_4n = limit::load_both(
        es,
        cql,
        servers,
        &index_4n,
        &table_4n,
        &es_docs_4n,
        &cql_docs_4n,
        limit.best,
    )
    .await?
    .wall_s;
    drop((es_docs_4n, cql_docs_4n));
    let backfill_4n = runs.add(
        "backfill (-s) at 4N",
        essync.once(&table_4n, &index_4n, true).await?,
    );
    runs.add(
        "next round at 4N",
        essync.once(&table_4n, &index_4n, false).await?,
    );
    tokio::time::sleep(IDLE_WAIT).await;
    let idle_4n = runs.add(
        "idle round at 4N",
        essync.once(&table_4n, &index_4n, false).await?,
    );

    // 7. Lag, on the N table.
    let lag = if args.quick {
        None
    } else {
        Some(lag_step(args, essync, es, cql, &table_n, &index_n).await?)
    };

    // 9. The hostile reconciliation.
    let hostile = hostile::measure(n, SEED * 10 + 7, essync, es, cql, names).await?;
    for (at, (plain, small)) in hostile.plain.iter().zip(&hostile.hostile).enumerate() {
        runs.add(
            &format!("reconcile, {} indices ({})", hostile::INDICES, at + 1),
            plain.clone(),
        );
        runs.add(
            &format!("the same, + window {} ({})", hostile::SMALL_WINDOW, at + 1),
            small.clone(),
        );
    }

    // 10. Several processes sharing a table.
    let shared = shared::measure(
        n,
        SEED * 10 + 11,
        essync,
        es,
        cql,
        servers,
        limit.best,
        names,
    )
    .await?;

    let measured = Measured {
        n,
        limit,
        backfill,
        backfill_span,
        ledger,
        next,
        incremental,
        idle: [idle_n, idle_4n],
        quiet,
        backfill_4n,
        lag,
        hostile,
        shared,
    };
    let figures = measured.figures();
    let load_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut text = String::new();
    text.push_str(&format!(
        "\nessync benchmark: N = {} documents on each side, {:.0} bytes of nested JSON on \
         average (seed {SEED}){}\n{}\nload average at start {}, at end {}\n\n",
        thousands(n as f64),
        average,
        if args.quick { ", --quick" } else { "" },
        essync.path.display(),
        load_start
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        load_end
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    ));
    text.push_str(&summary(&figures, &measured));
    if let Some((lag, rounds)) = &measured.lag {
        text.push_str(&format!("\n{}", lag_line(lag, rounds.len())));
    }
    text.push_str(&details(&measured.limit, &runs, load_4n, 4 * n));
    text.push_str(&requests_by_kind(&measured.backfill, 2 * n));
    text.push_str(&quiet_servers(&measured.quiet));
    Ok((figures, text))
}

/// The ledger's size after the backfill; a failure leaves the figure out (a server on another
/// machine, a user that may not attach to Cassandra's process, a java without a compiler).
async fn ledger_size(servers: &Servers, cql: &Cql, table: &str) -> Option<LedgerSize> {
    tracing::info!("ledger: flushing the ledger of {table} to disk and measuring it");
    match ledger::measure(servers, cql, table).await {
        Ok(size) => Some(size),
        Err(e) => {
            tracing::warn!("the ledger's size is not measured: {e:#}");
            None
        }
    }
}

/// Everything the steps measured, for the figures and the table.
struct Measured {
    n: usize,
    limit: Limit,
    backfill: Run,
    /// The backfill's process, from its start to its exit, and the servers' CPU meanwhile.
    backfill_span: Span,
    ledger: Option<LedgerSize>,
    next: Run,
    incremental: Run,
    /// Idle rounds at N and 4N.
    idle: [Run; 2],
    /// The pause before the idle round at N, and the servers' CPU meanwhile.
    quiet: Span,
    backfill_4n: Run,
    lag: Option<(Lag, Vec<Round>)>,
    hostile: Hostile,
    shared: Vec<shared::SharedRun>,
}

impl Measured {
    /// The documents the backfill copied (N each way).
    fn copied(&self) -> f64 {
        (2 * self.n) as f64
    }

    /// CPU microseconds per copied document.
    fn per_doc_us(&self, cpu_s: f64) -> f64 {
        cpu_s * 1e6 / self.copied()
    }

    fn figures(&self) -> Figures {
        let (limit, backfill) = (&self.limit, &self.backfill);
        let servers = &self.backfill_span.cpu;
        let per_doc = |cpu: Option<f64>| cpu.map(|s| self.per_doc_us(s));
        Figures {
            n: self.n,
            raw_limit_s: limit.limit_s(),
            backfill_s: backfill.round_s,
            backfill_docs_per_s: self.copied() / backfill.round_s,
            backfill_ratio: limit.limit_s() / backfill.round_s,
            next_round_s: self.next.round_s,
            incremental_round_s: self.incremental.round_s,
            idle_round_s_n: self.idle[0].round_s,
            idle_round_s_4n: self.idle[1].round_s,
            peak_rss_mb_n: backfill.peak_rss_mib,
            peak_rss_mb_4n: self.backfill_4n.peak_rss_mib,
            lag_p50_s: self.lag.as_ref().map(|l| l.0.p50_s),
            lag_p99_s: self.lag.as_ref().map(|l| l.0.p99_s),
            policy_cpu_share: backfill.policy_share,
            cpu_us_per_doc_essync: self.per_doc_us(backfill.cpu_s),
            cpu_us_per_doc_elasticsearch: per_doc(servers.elasticsearch),
            cpu_us_per_doc_cassandra: per_doc(servers.cassandra),
            raw_cpu_us_per_doc_elasticsearch: per_doc(limit.both_cpu.elasticsearch),
            raw_cpu_us_per_doc_cassandra: per_doc(limit.both_cpu.cassandra),
            cassandra_requests_per_doc: backfill.requests.map(|r| r[1] as f64 / self.copied()),
            es_requests_per_doc: backfill.requests.map(|r| r[0] as f64 / self.copied()),
            ledger_bytes_per_doc: self.ledger.as_ref().and_then(LedgerSize::bytes_per_row),
            hostile_reconcile_ratio: self.hostile.ratio(),
            shared: self
                .shared
                .iter()
                .map(|run| (run.processes, run.backfill_s, run.unevenness()))
                .collect(),
        }
    }
}

/// The main table: one row per figure, with what stands beside it and the target.
fn summary(f: &Figures, m: &Measured) -> String {
    let mut t = Table::new(&["step", "figure", "value", "beside it", "target"]);
    raw_limit_rows(&mut t, f, m);
    backfill_rows(&mut t, f, m);
    cost_rows(&mut t, f, m);
    round_rows(&mut t, f, m);
    late_rows(&mut t, f, m);
    shared_rows(&mut t, m);
    t.render()
}

/// A run's process time and counts.
fn read_written(run: &Run) -> String {
    format!(
        "process {}; read {} / {}, wrote {} / {}",
        seconds(run.process_s),
        thousands(run.round.read[0] as f64),
        thousands(run.round.read[1] as f64),
        thousands(run.round.written[0] as f64),
        thousands(run.round.written[1] as f64),
    )
}

/// Microseconds per document, or why there are none.
fn micros(value: Option<f64>) -> String {
    value.map_or("not measured (no such process here)".into(), |v| {
        format!("{v:.1} µs")
    })
}

/// CPU seconds beside the wall time they were spent in.
fn cpu_in(cpu_s: Option<f64>, wall_s: f64, what: &str) -> String {
    match cpu_s {
        Some(cpu) => format!("{cpu:.2} s of CPU in {} {what}", seconds(wall_s)),
        None => format!("{} {what}", seconds(wall_s)),
    }
}

fn raw_limit_rows(t: &mut Table, f: &Figures, m: &Measured) {
    let limit = &m.limit;
    t.row(&[
        "1 raw limit".into(),
        "`raw_limit_s`".into(),
        seconds(f.raw_limit_s),
        format!(
            "both stores at once: write {} + read {}; alone: Elasticsearch {}, Cassandra {}; {}",
            seconds(limit.both[0]),
            seconds(limit.both[1]),
            seconds(limit.es_alone_s()),
            seconds(limit.cql_alone_s()),
            limit.verdict()
        ),
        String::new(),
    ]);
    let both = "(both stores written and read at once)";
    t.row(&[
        String::new(),
        "`raw_cpu_us_per_doc_elasticsearch`".into(),
        micros(f.raw_cpu_us_per_doc_elasticsearch),
        cpu_in(limit.both_cpu.elasticsearch, f.raw_limit_s, both),
        String::new(),
    ]);
    t.row(&[
        String::new(),
        "`raw_cpu_us_per_doc_cassandra`".into(),
        micros(f.raw_cpu_us_per_doc_cassandra),
        cpu_in(limit.both_cpu.cassandra, f.raw_limit_s, both),
        String::new(),
    ]);
}

fn backfill_rows(t: &mut Table, f: &Figures, m: &Measured) {
    t.row(&[
        "2 backfill".into(),
        "`backfill_s`".into(),
        seconds(f.backfill_s),
        read_written(&m.backfill),
        String::new(),
    ]);
    t.row(&[
        String::new(),
        "`backfill_docs_per_s`".into(),
        thousands(f.backfill_docs_per_s),
        format!(
            "raw limit: {} documents/s",
            thousands(m.copied() / f.raw_limit_s)
        ),
        String::new(),
    ]);
    t.row(&[
        String::new(),
        "`backfill_ratio`".into(),
        format!("{:.2}", f.backfill_ratio),
        "raw limit time / backfill time".into(),
        "at least 0.6".into(),
    ]);
}

/// What the backfill cost each process, in requests and on disk.
fn cost_rows(t: &mut Table, f: &Figures, m: &Measured) {
    let span = &m.backfill_span;
    let process = "(essync's process, start to exit)";
    t.row(&[
        String::new(),
        "`cpu_us_per_doc_essync`".into(),
        micros(Some(f.cpu_us_per_doc_essync)),
        cpu_in(Some(m.backfill.cpu_s), m.backfill.process_s, process),
        "at most 40 µs".into(),
    ]);
    t.row(&[
        String::new(),
        "`cpu_us_per_doc_elasticsearch`".into(),
        micros(f.cpu_us_per_doc_elasticsearch),
        cpu_in(span.cpu.elasticsearch, span.wall_s, process),
        String::new(),
    ]);
    let times_raw = match (f.cpu_us_per_doc_cassandra, f.raw_cpu_us_per_doc_cassandra) {
        (Some(backfill), Some(raw)) if raw > 0.0 => {
            format!("; {:.1}x the raw limit's", backfill / raw)
        }
        _ => String::new(),
    };
    t.row(&[
        String::new(),
        "`cpu_us_per_doc_cassandra`".into(),
        micros(f.cpu_us_per_doc_cassandra),
        cpu_in(span.cpu.cassandra, span.wall_s, process) + &times_raw,
        "at most 2.5x `raw_cpu_us_per_doc_cassandra`".into(),
    ]);
    let not_counted = "not counted by this essync".to_string();
    for (figure, value, store, side) in [
        ("cassandra", f.cassandra_requests_per_doc, "Cassandra", 1),
        ("es", f.es_requests_per_doc, "Elasticsearch", 0),
    ] {
        t.row(&[
            String::new(),
            format!("`{figure}_requests_per_doc`"),
            value.map_or(not_counted.clone(), |v| format!("{v:.2}")),
            m.backfill.requests.map_or(String::new(), |r| {
                format!(
                    "{} {store} requests for {} documents copied",
                    thousands(r[side] as f64),
                    thousands(m.copied())
                )
            }),
            String::new(),
        ]);
    }
    t.row(&[
        String::new(),
        "`ledger_bytes_per_doc`".into(),
        f.ledger_bytes_per_doc
            .map_or("not measured (see the log)".into(), |b| format!("{b:.0} B")),
        m.ledger.as_ref().map_or(String::new(), |l| {
            format!(
                "{:.1} MiB of SSTables (flushed) over {} rows of {}",
                l.bytes as f64 / (1024.0 * 1024.0),
                thousands(l.rows as f64),
                l.tables.join(", ")
            )
        }),
        "at most 120 B, with the default policy".into(),
    ]);
}

/// Steps 3 to 6.
fn round_rows(t: &mut Table, f: &Figures, m: &Measured) {
    let share = |part: f64| format!("{} of the backfill", percent(part / f.backfill_s));
    t.row(&[
        "3 next round".into(),
        "`next_round_s`".into(),
        seconds(f.next_round_s),
        format!("{}; {}", share(f.next_round_s), read_written(&m.next)),
        "under 10% of the backfill".into(),
    ]);
    t.row(&[
        "4 incremental".into(),
        "`incremental_round_s`".into(),
        seconds(f.incremental_round_s),
        format!("1% changed on each side; {}", read_written(&m.incremental)),
        String::new(),
    ]);
    t.row(&[
        "5 idle round".into(),
        "`idle_round_s_n`".into(),
        seconds(f.idle_round_s_n),
        share(f.idle_round_s_n),
        "under 2% of the backfill".into(),
    ]);
    t.row(&[
        String::new(),
        "`idle_round_s_4n`".into(),
        seconds(f.idle_round_s_4n),
        format!(
            "{:.2}x the idle round at N",
            f.idle_round_s_4n / f.idle_round_s_n
        ),
        "at most 1.5x the idle round at N".into(),
    ]);
    t.row(&[
        "6 memory".into(),
        "`peak_rss_mb_n`".into(),
        format!("{:.1} MiB", f.peak_rss_mb_n),
        "VmHWM during the backfill at N".into(),
        "under 200 MB".into(),
    ]);
    t.row(&[
        String::new(),
        "`peak_rss_mb_4n`".into(),
        format!("{:.1} MiB", f.peak_rss_mb_4n),
        format!(
            "{:.2}x the peak at N; backfill at 4N took {}",
            f.peak_rss_mb_4n / f.peak_rss_mb_n,
            seconds(m.backfill_4n.round_s)
        ),
        "at most 1.2x the peak at N".into(),
    ]);
}

/// Steps 7 to 9.
fn late_rows(t: &mut Table, f: &Figures, m: &Measured) {
    let not_measured = "not measured (--quick)".to_string();
    t.row(&[
        "7 lag".into(),
        "`lag_p50_s`".into(),
        f.lag_p50_s.map_or(not_measured.clone(), seconds),
        "write to first visible on the other side, PERIOD 1".into(),
        String::new(),
    ]);
    t.row(&[
        String::new(),
        "`lag_p99_s`".into(),
        f.lag_p99_s.map_or(not_measured, seconds),
        String::new(),
        "under 2 s".into(),
    ]);
    let backfill = &m.backfill;
    t.row(&[
        "8 policy share".into(),
        "`policy_cpu_share`".into(),
        f.policy_cpu_share
            .map_or("not exported by this essync".to_string(), percent),
        match (backfill.policy_cpu_s, backfill.policy_share) {
            (Some(policy), Some(share)) if share > 0.0 => format!(
                "{:.2} s in the policy of {:.2} s CPU during the backfill",
                policy,
                policy / share
            ),
            _ => format!("{:.2} s CPU during the backfill", backfill.cpu_s),
        },
        "under 5%".into(),
    ]);
    let (plain, hostile) = (&m.hostile.plain, &m.hostile.hostile);
    t.row(&[
        "9 hostile reconcile".into(),
        "`hostile_reconcile_ratio`".into(),
        format!("{:.2}", f.hostile_reconcile_ratio),
        format!(
            "{} documents in {} indices: {} + {} (essync's CPU {:.2} s); with one more index of \
             max_result_window {} ({} documents): {} + {} (essync's CPU {:.2} s); run in the \
             order plain, hostile, hostile, plain",
            thousands(m.n as f64),
            hostile::INDICES,
            seconds(plain[0].round_s),
            seconds(plain[1].round_s),
            Hostile::cpu(plain),
            hostile::SMALL_WINDOW,
            hostile::SMALL_DOCS,
            seconds(hostile[0].round_s),
            seconds(hostile[1].round_s),
            Hostile::cpu(hostile),
        ),
        "at most 1.3".into(),
    ]);
}

/// Step 10: the shared backfills, one row each.
fn shared_rows(t: &mut Table, m: &Measured) {
    for (at, run) in m.shared.iter().enumerate() {
        let each: Vec<String> = run
            .written
            .iter()
            .zip(&run.cpu_s)
            .map(|(written, cpu)| format!("{} ({cpu:.1} s CPU)", thousands(*written as f64)))
            .collect();
        t.row(&[
            if at == 0 {
                "10 shared".into()
            } else {
                String::new()
            },
            format!("`shared_backfill_s_{}`", run.processes),
            seconds(run.backfill_s),
            format!(
                "{} process(es), --ranges {}: {} documents/s; written by each: {}",
                run.processes,
                run.processes,
                thousands((2 * m.n) as f64 / run.backfill_s),
                each.join(", ")
            ),
            String::new(),
        ]);
    }
}

/// What the servers spent while the benchmark did nothing: the CPU figures of the servers count
/// all their work, their own background work and other clients' included.
fn quiet_servers(quiet: &Span) -> String {
    let rate = |cpu: Option<f64>| {
        cpu.map_or("not measured".to_string(), |c| {
            format!("{:.2} s ({})", c, percent(c / quiet.wall_s))
        })
    };
    format!(
        "\nWhile the benchmark paused {} before the idle round at N, the servers used CPU \
         anyway: Elasticsearch {}, Cassandra {} of a core. Their CPU figures above count all \
         their work, their background work and other clients' included.\n",
        seconds(quiet.wall_s),
        rate(quiet.cpu.elasticsearch),
        rate(quiet.cpu.cassandra),
    )
}

/// The backfill's requests per store and kind, from essync's metrics.
fn requests_by_kind(backfill: &Run, copied: usize) -> String {
    if backfill.requests_by_kind.is_empty() {
        return "\nRequests by kind: not read (this essync serves no essync_requests_total, or it \
                exited before they could be read).\n"
            .into();
    }
    let mut requests: Vec<_> = backfill.requests_by_kind.iter().collect();
    // Cassandra first, the most frequent kinds first.
    requests.sort_by(|a, b| a.store.cmp(&b.store).then(b.count.total_cmp(&a.count)));
    let mut table = Table::new(&["store", "kind", "requests", "per document copied"]);
    for r in requests {
        table.row(&[
            r.store.clone(),
            r.kind.clone(),
            thousands(r.count),
            format!("{:.3}", r.count / copied as f64),
        ]);
    }
    format!(
        "\nRequests of the backfill by kind (essync_requests_total after its round):\n\n{}",
        table.render()
    )
}

/// The grid, and every run of essync.
fn details(limit: &Limit, runs: &Runs, load_4n: f64, docs_4n: usize) -> String {
    let mut out = format!(
        "\nRaw limit grid ({} documents per setting; best: {}, {}, {}, {}):\n\n",
        thousands(limit.grid_docs as f64),
        limit.best.es_writes,
        limit.best.es_reads,
        limit.best.cql_writes,
        limit.best.cql_reads,
    );
    let mut grid = Table::new(&["setting", "documents/s"]);
    for (what, rate) in &limit.grid {
        grid.row(&[what.clone(), thousands(*rate)]);
    }
    out.push_str(&grid.render());
    out.push_str(&format!(
        "\nAlone, N documents: Elasticsearch write {} + read {}, Cassandra write {} + read {}. \
         Both at once: write {} + read {}. 4N loaded at once in {} ({} documents/s).\n",
        seconds(limit.alone[0]),
        seconds(limit.alone[1]),
        seconds(limit.alone[2]),
        seconds(limit.alone[3]),
        seconds(limit.both[0]),
        seconds(limit.both[1]),
        seconds(load_4n),
        thousands((2 * docs_4n) as f64 / load_4n),
    ));
    out.push_str("\nessync runs:\n\n");
    let mut table = Table::new(&[
        "run",
        "round",
        "process",
        "read es / cassandra",
        "wrote es / cassandra",
        "errors",
        "peak RSS",
        "CPU",
    ]);
    for (what, run) in &runs.0 {
        table.row(&[
            what.clone(),
            seconds(run.round_s),
            seconds(run.process_s),
            format!(
                "{} / {}",
                thousands(run.round.read[0] as f64),
                thousands(run.round.read[1] as f64)
            ),
            format!(
                "{} / {}",
                thousands(run.round.written[0] as f64),
                thousands(run.round.written[1] as f64)
            ),
            run.round.errors.to_string(),
            format!("{:.1} MiB", run.peak_rss_mib),
            format!("{:.2} s", run.cpu_s),
        ]);
    }
    out.push_str(&table.render());
    out
}
