//! Several processes sharing one table (step 10): the backfill of N + N documents (of their
//! own, on a table of its own) by K = 1, 2 and 3 processes started together, each
//! `essync --ranges K -s ... 1`, timed from their start until every range has finished its
//! reconciliation; and how the work was split: the documents each process wrote, and its CPU.
//! Processes that start together hand ranges over while they find each other, as they would
//! in a deployment: that is part of the time.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::Names;
use crate::data::documents;
use crate::limit::{self, Best};
use crate::process::{Essync, cpu_seconds};
use crate::servers::Servers;
use crate::stores::{Cql, Es};

/// The numbers of processes measured.
pub const PROCESSES: [u32; 3] = [1, 2, 3];
/// The longest a shared backfill may take.
const DEADLINE: Duration = Duration::from_secs(900);

/// One shared backfill.
#[derive(Debug, Clone)]
pub struct SharedRun {
    /// Processes (and ranges).
    pub processes: u32,
    /// From their start until every range finished its reconciliation.
    pub backfill_s: f64,
    /// Documents each process wrote, both sides.
    pub written: Vec<u64>,
    /// Each process's CPU seconds.
    pub cpu_s: Vec<f64>,
}

impl SharedRun {
    /// The largest share of the writes one process made, over an even share (1: even).
    pub fn unevenness(&self) -> f64 {
        let total: u64 = self.written.iter().sum();
        let most = self.written.iter().copied().max().unwrap_or(0);
        if total == 0 {
            return 1.0;
        }
        most as f64 * self.written.len() as f64 / total as f64
    }
}

fn index(names: &Names, processes: u32) -> String {
    names.index(&format!("shared{processes}"))
}

fn table(names: &Names, processes: u32) -> String {
    names.table(&format!("shared{processes}"))
}

/// Every index the step makes (for the clean-up).
pub fn indices(names: &Names) -> Vec<String> {
    PROCESSES.iter().map(|k| index(names, *k)).collect()
}

/// Every table the step syncs (for the clean-up).
pub fn tables(names: &Names) -> Vec<String> {
    PROCESSES.iter().map(|k| table(names, *k)).collect()
}

/// Loads each table's documents and runs its shared backfill.
#[allow(clippy::too_many_arguments)]
pub async fn measure(
    n: usize,
    seed: u64,
    essync: &Essync,
    es: &Es,
    cql: &Cql,
    servers: &Servers,
    best: Best,
    names: &Names,
) -> anyhow::Result<Vec<SharedRun>> {
    let mut runs = Vec::new();
    for k in PROCESSES {
        let (index, table) = (index(names, k), table(names, k));
        tracing::info!("shared backfill: {n} + {n} documents by {k} process(es), --ranges {k}");
        let es_docs = documents(seed + u64::from(k), &index, n);
        let cql_docs = documents(seed + 100 + u64::from(k), &index, n);
        limit::load_both(es, cql, servers, &index, &table, &es_docs, &cql_docs, best).await?;
        drop((es_docs, cql_docs));
        let ranges = k.to_string();
        let args = ["--ranges", ranges.as_str(), "-s"];
        let started = Instant::now();
        let mut running = Vec::new();
        for _ in 0..k {
            running.push(essync.start_with(&table, &index, 1, &args).await?);
        }
        loop {
            let done: usize = running
                .iter()
                .map(|r| r.lines_with("reconciliation complete"))
                .sum();
            if done >= k as usize {
                break;
            }
            if started.elapsed() > DEADLINE {
                bail!("{k} process(es) did not finish the shared backfill in {DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let backfill_s = started.elapsed().as_secs_f64();
        let written = running
            .iter()
            .map(|r| r.rounds().iter().map(|r| r.written[0] + r.written[1]).sum())
            .collect();
        let cpu_s = running
            .iter()
            .map(|r| r.pid().and_then(cpu_seconds).unwrap_or(0.0))
            .collect();
        for process in running {
            process.stop().await?;
        }
        runs.push(SharedRun {
            processes: k,
            backfill_s,
            written,
            cpu_s,
        });
    }
    Ok(runs)
}
