//! Step 1, the raw limit: what the servers take from the same client crates essync uses, at
//! the best of a small grid of batch sizes and concurrencies, each store alone and both at once.

use std::future::Future;
use std::time::Instant;

use anyhow::bail;

use crate::data::{Doc, documents};
use crate::servers::{ServerCpu, Servers, Span};
use crate::stores::{Cql, CqlReads, CqlWrites, Es, EsReads, EsWrites};

/// The grid's documents per setting, at most (fewer when N is smaller).
const GRID_DOCS: usize = 20_000;
/// Documents written before the grid, untimed, so the servers' JIT is warm for every point.
const WARM_UP_DOCS: usize = 2_000;

const ES_WRITES: [EsWrites; 9] = {
    const fn w(batch: usize, concurrency: usize) -> EsWrites {
        EsWrites { batch, concurrency }
    }
    [
        w(500, 1),
        w(500, 2),
        w(500, 4),
        w(1000, 1),
        w(1000, 2),
        w(1000, 4),
        w(2000, 1),
        w(2000, 2),
        w(2000, 4),
    ]
};
const CQL_WRITES: [CqlWrites; 6] = {
    const fn w(batch: usize, concurrency: usize) -> CqlWrites {
        CqlWrites { batch, concurrency }
    }
    [
        w(1, 32),
        w(1, 128),
        w(1, 512),
        w(10, 32),
        w(10, 128),
        w(10, 512),
    ]
};
const ES_READS: [EsReads; 4] = [
    EsReads {
        page: 1000,
        slices: 1,
    },
    EsReads {
        page: 1000,
        slices: 2,
    },
    EsReads {
        page: 5000,
        slices: 1,
    },
    EsReads {
        page: 5000,
        slices: 2,
    },
];
const CQL_READS: [CqlReads; 4] = [
    CqlReads {
        page: 1000,
        ranges: 1,
    },
    CqlReads {
        page: 1000,
        ranges: 4,
    },
    CqlReads {
        page: 5000,
        ranges: 1,
    },
    CqlReads {
        page: 5000,
        ranges: 4,
    },
];

/// The best settings found by the grid; the default is what it picked on the project's test
/// machine, for steps that run without it (`--lag-only`).
#[derive(Debug, Clone, Copy)]
pub struct Best {
    /// Elasticsearch bulk writes.
    pub es_writes: EsWrites,
    /// Elasticsearch reads.
    pub es_reads: EsReads,
    /// Cassandra writes.
    pub cql_writes: CqlWrites,
    /// Cassandra reads.
    pub cql_reads: CqlReads,
}

impl Default for Best {
    fn default() -> Self {
        Self {
            es_writes: EsWrites {
                batch: 500,
                concurrency: 2,
            },
            es_reads: EsReads {
                page: 1000,
                slices: 2,
            },
            cql_writes: CqlWrites {
                batch: 10,
                concurrency: 512,
            },
            cql_reads: CqlReads {
                page: 5000,
                ranges: 4,
            },
        }
    }
}

/// What step 1 measured.
#[derive(Debug, Clone)]
pub struct Limit {
    /// Documents per grid point.
    pub grid_docs: usize,
    /// Every grid point: what, and documents per second.
    pub grid: Vec<(String, f64)>,
    /// The best settings.
    pub best: Best,
    /// N documents alone: Elasticsearch write, read; Cassandra write, read (seconds).
    pub alone: [f64; 4],
    /// N documents each, both stores at once: writes, reads (seconds).
    pub both: [f64; 2],
    /// The servers' CPU seconds during both at once (writes and reads).
    pub both_cpu: ServerCpu,
}

impl Limit {
    /// Elasticsearch alone: write N and read them back.
    pub fn es_alone_s(&self) -> f64 {
        self.alone[0] + self.alone[1]
    }

    /// Cassandra alone: write N and read them back.
    pub fn cql_alone_s(&self) -> f64 {
        self.alone[2] + self.alone[3]
    }

    /// The slower store alone: the limit if the two overlapped perfectly.
    pub fn slower_s(&self) -> f64 {
        self.es_alone_s().max(self.cql_alone_s())
    }

    /// Both alone, one after the other: the limit if they could not overlap at all.
    pub fn sum_s(&self) -> f64 {
        self.es_alone_s() + self.cql_alone_s()
    }

    /// The limit: both stores written and read at once, as measured (on a machine where the
    /// servers share the cores, neither the slower store's time nor the sum is reachable
    /// exactly; this is).
    pub fn limit_s(&self) -> f64 {
        self.both[0] + self.both[1]
    }

    /// How far doing both at once got from the sum towards the slower store alone: 1 when
    /// they overlap perfectly, 0 when the time is the sum.
    pub fn overlap(&self) -> f64 {
        let gain = self.sum_s() - self.slower_s();
        if gain <= 0.0 {
            return 1.0;
        }
        ((self.sum_s() - self.limit_s()) / gain).clamp(0.0, 1.0)
    }

    /// In words: which of the two the measured limit is close to.
    pub fn verdict(&self) -> &'static str {
        match self.overlap() {
            o if o >= 0.67 => "they overlap: the slower store sets the limit",
            o if o <= 0.33 => "they do not overlap: the limit is the sum",
            _ => "they overlap in part: the limit lies between the slower store and the sum",
        }
    }
}

/// Names of the scratch index and table of step 1.
pub struct Scratch<'a> {
    /// Elasticsearch index for the grid and for each store alone.
    pub index: &'a str,
    /// Cassandra table for the same.
    pub table: &'a str,
}

/// Runs step 1 and leaves `es_docs` in `index` and `cql_docs` in `table` (the backfill's data,
/// written by the measurement of both stores at once, during which the `servers`' CPU is
/// measured too).
#[allow(clippy::too_many_arguments)]
pub async fn measure(
    es: &Es,
    cql: &Cql,
    servers: &Servers,
    scratch: Scratch<'_>,
    seed: u64,
    index: &str,
    table: &str,
    es_docs: &[Doc],
    cql_docs: &[Doc],
) -> anyhow::Result<Limit> {
    let n = es_docs.len();
    let grid_docs = n.min(GRID_DOCS);
    let docs = documents(seed, scratch.index, grid_docs);
    let mut grid = Vec::new();

    tracing::info!("raw limit: Elasticsearch bulk writes, {grid_docs} documents per setting");
    es.create_index(scratch.index).await?;
    es.bulk_write(
        scratch.index,
        Es::bulk_bodies(&documents(seed ^ 1, scratch.index, WARM_UP_DOCS), 500),
        2,
    )
    .await?;
    let mut es_writes = (ES_WRITES[0], 0.0);
    for setting in ES_WRITES {
        es.create_index(scratch.index).await?;
        let bodies = Es::bulk_bodies(&docs, setting.batch);
        let s = timed(es.bulk_write(scratch.index, bodies, setting.concurrency)).await?;
        let rate = grid_docs as f64 / s;
        grid.push((format!("Elasticsearch write, {setting}"), rate));
        if rate > es_writes.1 {
            es_writes = (setting, rate);
        }
    }
    tracing::info!("raw limit: Elasticsearch reads");
    let mut es_reads = (ES_READS[0], 0.0);
    for setting in ES_READS {
        let (s, read) = timed_value(es.read_all(scratch.index, setting)).await?;
        expect(read, grid_docs, scratch.index)?;
        let rate = grid_docs as f64 / s;
        grid.push((format!("Elasticsearch read, {setting}"), rate));
        if rate > es_reads.1 {
            es_reads = (setting, rate);
        }
    }

    tracing::info!("raw limit: Cassandra writes, {grid_docs} rows per setting");
    cql.create_table(scratch.table).await?;
    let insert = cql.insert(scratch.table).await?;
    cql.write(
        &insert,
        &documents(seed ^ 1, scratch.index, WARM_UP_DOCS),
        CqlWrites {
            batch: 1,
            concurrency: 128,
        },
    )
    .await?;
    // The same rows at every point: a Cassandra write is blind, an overwrite costs what an
    // insert does, and the table does not grow between points.
    let mut cql_writes = (CQL_WRITES[0], 0.0);
    for setting in CQL_WRITES {
        let s = timed(cql.write(&insert, &docs, setting)).await?;
        let rate = grid_docs as f64 / s;
        grid.push((format!("Cassandra write, {setting}"), rate));
        if rate > cql_writes.1 {
            cql_writes = (setting, rate);
        }
    }
    tracing::info!("raw limit: Cassandra reads");
    let mut cql_reads = (CQL_READS[0], 0.0);
    for setting in CQL_READS {
        let (s, read) = timed_value(cql.read_all(scratch.table, setting)).await?;
        expect(read, grid_docs + WARM_UP_DOCS, scratch.table)?;
        let rate = read as f64 / s;
        grid.push((format!("Cassandra read, {setting}"), rate));
        if rate > cql_reads.1 {
            cql_reads = (setting, rate);
        }
    }
    let best = Best {
        es_writes: es_writes.0,
        es_reads: es_reads.0,
        cql_writes: cql_writes.0,
        cql_reads: cql_reads.0,
    };

    tracing::info!("raw limit: {n} documents, each store alone");
    let alone_docs = documents(seed ^ 2, scratch.index, n);
    es.create_index(scratch.index).await?;
    let bodies = Es::bulk_bodies(&alone_docs, best.es_writes.batch);
    let es_write = timed(es.bulk_write(scratch.index, bodies, best.es_writes.concurrency)).await?;
    let (es_read, read) = timed_value(es.read_all(scratch.index, best.es_reads)).await?;
    expect(read, n, scratch.index)?;
    es.delete_indices(scratch.index).await?;
    cql.create_table(scratch.table).await?;
    let insert = cql.insert(scratch.table).await?;
    let cql_write = timed(cql.write(&insert, &alone_docs, best.cql_writes)).await?;
    let (cql_read, read) = timed_value(cql.read_all(scratch.table, best.cql_reads)).await?;
    expect(read, n, scratch.table)?;
    cql.drop_table(scratch.table).await?;

    tracing::info!("raw limit: {n} documents on each store at once (the backfill's data)");
    let write_both = load_both(es, cql, servers, index, table, es_docs, cql_docs, best).await?;
    let (read_both, (es_read_n, cql_read_n)) = servers
        .span(async {
            futures::try_join!(
                es.read_all(index, best.es_reads),
                cql.read_all(table, best.cql_reads)
            )
        })
        .await?;
    expect(es_read_n, n, index)?;
    expect(cql_read_n, cql_docs.len(), table)?;

    Ok(Limit {
        grid_docs,
        grid,
        best,
        alone: [es_write, es_read, cql_write, cql_read],
        both: [write_both.wall_s, read_both.wall_s],
        both_cpu: write_both.plus(&read_both).cpu,
    })
}

/// Creates `index` and `table` and writes `es_docs` to the one and `cql_docs` to the other at
/// once, with the best settings; returns the time it took and the `servers`' CPU meanwhile
/// (then, untimed, waits until Elasticsearch has settled: see [`Es::settle`]).
#[allow(clippy::too_many_arguments)]
pub async fn load_both(
    es: &Es,
    cql: &Cql,
    servers: &Servers,
    index: &str,
    table: &str,
    es_docs: &[Doc],
    cql_docs: &[Doc],
    best: Best,
) -> anyhow::Result<Span> {
    es.create_index(index).await?;
    cql.create_table(table).await?;
    let insert = cql.insert(table).await?;
    let bodies = Es::bulk_bodies(es_docs, best.es_writes.batch);
    let (span, _) = servers
        .span(async {
            futures::try_join!(
                es.bulk_write(index, bodies, best.es_writes.concurrency),
                cql.write(&insert, cql_docs, best.cql_writes)
            )
        })
        .await?;
    es.settle(index).await?;
    Ok(span)
}

fn expect(read: usize, wanted: usize, what: &str) -> anyhow::Result<()> {
    if read != wanted {
        bail!("read {read} documents back from {what}, not {wanted}");
    }
    Ok(())
}

/// Seconds a future took to succeed.
pub async fn timed<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<f64> {
    Ok(timed_value(work).await?.0)
}

/// Seconds a future took to succeed, and its value.
pub async fn timed_value<T>(
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(f64, T)> {
    let start = Instant::now();
    let value = work.await?;
    Ok((start.elapsed().as_secs_f64().max(1e-9), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(alone: [f64; 4], both: [f64; 2]) -> Limit {
        Limit {
            grid_docs: 0,
            grid: Vec::new(),
            best: Best {
                es_writes: ES_WRITES[0],
                es_reads: ES_READS[0],
                cql_writes: CQL_WRITES[0],
                cql_reads: CQL_READS[0],
            },
            alone,
            both,
            both_cpu: ServerCpu::default(),
        }
    }

    #[test]
    fn the_verdict_says_whether_both_at_once_is_near_the_slower_store_or_the_sum() {
        // Elasticsearch alone 6 s, Cassandra alone 4 s: max 6, sum 10.
        let perfect = limit([4.0, 2.0, 3.0, 1.0], [4.0, 2.0]);
        assert_eq!(perfect.overlap(), 1.0);
        assert!(perfect.verdict().starts_with("they overlap:"));
        let summed = limit([4.0, 2.0, 3.0, 1.0], [7.0, 3.0]);
        assert_eq!(summed.overlap(), 0.0);
        assert!(summed.verdict().contains("the sum"));
        let half = limit([4.0, 2.0, 3.0, 1.0], [5.0, 3.0]);
        assert!((half.overlap() - 0.5).abs() < 1e-9);
        assert_eq!(half.limit_s(), 8.0);
    }
}
