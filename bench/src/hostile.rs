//! The hostile reconciliation: what one index with a tiny result window costs the others.
//! N documents spread over 100 indices, reconciled by `essync -s --once` on a new table; and
//! the same on another new table with one more index in the selection whose
//! `index.max_result_window` is 10 (holding a few documents too). Each is run twice, in the
//! order plain, hostile, hostile, plain, each on a table of its own: a reconciliation run
//! after another pays for the compactions the one before left to the servers, and the order
//! cancels that drift. The figure is the two hostile times over the two plain ones: 1 when
//! such an index costs the others nothing.

use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::json;

use crate::Names;
use crate::data::{Doc, documents};
use crate::process::{Essync, Run};
use crate::stores::{Cql, Es};

/// Indices the documents are spread over.
pub const INDICES: usize = 100;
/// Documents in the index with the small result window.
pub const SMALL_DOCS: usize = 5;
/// Its `index.max_result_window`.
pub const SMALL_WINDOW: u32 = 10;
/// Index creations and bulk writes in flight.
const IN_FLIGHT: usize = 4;

/// The reconciliations, two of each kind.
#[derive(Debug, Clone)]
pub struct Hostile {
    /// N documents in [`INDICES`] indices: the first and the last run.
    pub plain: [Run; 2],
    /// The same with the small-window index in the selection: the second and third.
    pub hostile: [Run; 2],
}

impl Hostile {
    /// The hostile reconciliations' time over the plain ones'.
    pub fn ratio(&self) -> f64 {
        Self::total(&self.hostile) / Self::total(&self.plain).max(1e-9)
    }

    /// The time of two runs together.
    pub fn total(runs: &[Run; 2]) -> f64 {
        runs.iter().map(|r| r.round_s).sum()
    }

    /// essync's CPU in two runs together.
    pub fn cpu(runs: &[Run; 2]) -> f64 {
        runs.iter().map(|r| r.cpu_s).sum()
    }
}

/// The spread indices of this run.
fn spread_index(names: &Names, i: usize) -> String {
    names.index(&format!("spread_{i:03}"))
}

/// Every index the step makes (for the clean-up).
pub fn indices(names: &Names) -> Vec<String> {
    let mut all: Vec<String> = (0..INDICES).map(|i| spread_index(names, i)).collect();
    all.push(names.index("small"));
    all
}

/// Every table the step syncs (for the clean-up), in the order they are synced.
pub fn tables(names: &Names) -> [String; 4] {
    [
        names.table("spread"),
        names.table("spread_small"),
        names.table("spread_small2"),
        names.table("spread2"),
    ]
}

/// Writes the indices and runs both reconciliations.
pub async fn measure(
    n: usize,
    seed: u64,
    essync: &Essync,
    es: &Es,
    cql: &Cql,
    names: &Names,
) -> anyhow::Result<Hostile> {
    tracing::info!(
        "hostile reconciliation: {n} documents in {INDICES} indices, and {SMALL_DOCS} more in \
         one of max_result_window {SMALL_WINDOW}"
    );
    let mut docs = documents(seed, "", n + SMALL_DOCS);
    let small_docs = docs.split_off(n);
    let spread: Vec<(String, Vec<Doc>)> = (0..INDICES)
        .map(|i| {
            let index = spread_index(names, i);
            let docs = docs
                .iter()
                .skip(i)
                .step_by(INDICES)
                .map(|d| Doc {
                    index: index.clone(),
                    ..d.clone()
                })
                .collect();
            (index, docs)
        })
        .collect();
    drop(docs);
    let small = names.index("small");
    let small_docs: Vec<Doc> = small_docs
        .into_iter()
        .map(|d| Doc {
            index: small.clone(),
            ..d
        })
        .collect();
    let one_copy = json!({"index": {"number_of_shards": 1, "number_of_replicas": 0}});
    futures::stream::iter(&spread)
        .map(|(index, docs)| write_index(es, index, docs, one_copy.clone()))
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<()>()
        .await?;
    let small_settings = json!({"index": {"number_of_shards": 1, "number_of_replicas": 0,
        "max_result_window": SMALL_WINDOW}});
    write_index(es, &small, &small_docs, small_settings).await?;

    let tables = tables(names);
    for table in &tables {
        cql.drop_table(table).await?;
    }
    let selection = names.index("spread_*");
    let with_small = format!("{selection},{small}");
    let [plain_1, hostile_1, hostile_2, plain_2] = &tables;
    let plain_first = essync.once(plain_1, &selection, true).await?;
    let hostile_first = essync.once(hostile_1, &with_small, true).await?;
    let hostile_second = essync.once(hostile_2, &with_small, true).await?;
    let plain_second = essync.once(plain_2, &selection, true).await?;
    Ok(Hostile {
        plain: [plain_first, plain_second],
        hostile: [hostile_first, hostile_second],
    })
}

/// Creates `index` with `settings`, writes `docs` into it and waits until they are settled.
async fn write_index(
    es: &Es,
    index: &str,
    docs: &[Doc],
    settings: serde_json::Value,
) -> anyhow::Result<()> {
    es.create_index_with(index, settings).await?;
    es.bulk_write(index, Es::bulk_bodies(docs, 1000), 1).await?;
    es.settle(index).await
}
