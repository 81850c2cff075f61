//! Applying: the ledger's intents first, then every write of a batch at once on both stores;
//! each plan comes back with what its writes did ([`Written`]), for the settlement.

use super::Context;
use super::plan::{CassandraOp, EsOp, Plan};
use crate::cassandra::CassandraVersion;
use crate::elasticsearch::{EsExpected, EsVersion};
use crate::store::Applied;
use crate::sync::SyncError;
use crate::sync::state::State;

/// A plan (its writes taken out once made), and what they did: `None` where the plan had no
/// write, and everywhere in a dry run (whose plans keep their writes).
#[derive(Debug)]
pub(crate) struct Written {
    pub plan: Plan,
    pub elasticsearch: Option<(EsWrite, Applied<EsVersion>)>,
    pub cassandra: Option<Applied<CassandraVersion>>,
}

/// What an Elasticsearch write was, for what the round keeps track of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EsWrite {
    /// A document written; moved from another index, if it was.
    Put { moved_from: Option<String> },
    /// A document deleted from this index.
    Delete { index: String },
}

/// Writes of one kind, taken out of their plans, with the position of each plan.
struct Ops<T> {
    at: Vec<usize>,
    ops: Vec<T>,
}

impl<T> Default for Ops<T> {
    fn default() -> Self {
        Self {
            at: Vec::new(),
            ops: Vec::new(),
        }
    }
}

impl<T> Ops<T> {
    fn push(&mut self, at: usize, op: T) {
        self.at.push(at);
        self.ops.push(op);
    }

    /// Sends the writes, if there are any.
    async fn send<'o, V, E, F>(
        &'o self,
        send: impl FnOnce(&'o [T]) -> F,
    ) -> Result<Vec<Applied<V>>, E>
    where
        F: std::future::Future<Output = Result<Vec<Applied<V>>, E>>,
    {
        if self.ops.is_empty() {
            return Ok(Vec::new());
        }
        send(&self.ops).await
    }
}

/// Records the intents, then writes every plan's writes at once on both stores. A dry run
/// writes nothing.
pub(crate) async fn apply(
    ctx: &Context<'_>,
    state: &mut State,
    plans: Vec<Plan>,
) -> Result<Vec<Written>, SyncError> {
    let mut written: Vec<Written> = plans
        .into_iter()
        .map(|plan| Written {
            plan,
            elasticsearch: None,
            cassandra: None,
        })
        .collect();
    if state.dry_run() {
        return Ok(written);
    }
    // The ledger learns of the writes before they are made: a crash between them and their
    // confirmation leaves an intent, not a change credited to the wrong side.
    let intents: Vec<_> = written
        .iter()
        .filter_map(|w| w.plan.intent.map(|intent| (w.plan.id, intent)))
        .collect();
    let started = std::time::Instant::now();
    state.intend(&intents).await?;
    // A process frozen past its lease while its intents were under way must not send the
    // writes after another process took over: the lease is confirmed again, from the monotonic
    // clock alone unless it is due for renewal. A write that a freeze still holds up after this
    // point lands late; the next holder knows it from essync's mark (see `attribute`).
    state.confirm_lease().await?;
    let intended = started.elapsed();
    Sorted::take(&mut written).send(ctx, &mut written).await?;
    tracing::debug!(
        "applied: intents {:.3}s, writes {:.3}s",
        intended.as_secs_f64(),
        (started.elapsed() - intended).as_secs_f64(),
    );
    Ok(written)
}

/// A batch's writes, taken out of their plans, by store and kind.
#[derive(Default)]
struct Sorted {
    es_puts: Ops<crate::elasticsearch::EsWrite>,
    es_deletes: Ops<crate::elasticsearch::EsDelete>,
    cassandra_puts: Ops<crate::cassandra::CassandraWrite>,
    cassandra_deletes: Ops<crate::cassandra::CassandraDelete>,
}

impl Sorted {
    fn take(written: &mut [Written]) -> Self {
        let mut sorted = Self::default();
        for (n, w) in written.iter_mut().enumerate() {
            match w.plan.elasticsearch.take() {
                Some(EsOp::Put(write)) => sorted.es_puts.push(n, write),
                Some(EsOp::Delete(delete)) => sorted.es_deletes.push(n, delete),
                None => {}
            }
            match w.plan.cassandra.take() {
                Some(CassandraOp::Put(write)) => sorted.cassandra_puts.push(n, write),
                Some(CassandraOp::Delete(delete)) => sorted.cassandra_deletes.push(n, delete),
                None => {}
            }
        }
        sorted
    }

    /// Sends the four kinds at once, and gives each plan what its writes did.
    async fn send(self, ctx: &Context<'_>, written: &mut [Written]) -> Result<(), SyncError> {
        let (es_put, es_delete, cassandra_put, cassandra_delete) = tokio::join!(
            self.es_puts.send(|ops| ctx.elasticsearch.write_batch(ops)),
            self.es_deletes
                .send(|ops| ctx.elasticsearch.delete_batch(ops)),
            self.cassandra_puts
                .send(|ops| ctx.cassandra.write_batch(ops)),
            self.cassandra_deletes
                .send(|ops| ctx.cassandra.delete_batch(ops)),
        );
        let mut es_put = es_put?.into_iter();
        for (n, write) in self.es_puts.at.into_iter().zip(&self.es_puts.ops) {
            let moved_from = match &write.expected {
                EsExpected::Version(old) if old.index != write.document.index => {
                    Some(old.index.clone())
                }
                _ => None,
            };
            written[n].elasticsearch = es_put.next().map(|a| (EsWrite::Put { moved_from }, a));
        }
        let mut es_delete = es_delete?.into_iter();
        for (n, delete) in self.es_deletes.at.into_iter().zip(&self.es_deletes.ops) {
            let index = delete.expected.index.clone();
            written[n].elasticsearch = es_delete.next().map(|a| (EsWrite::Delete { index }, a));
        }
        for (ops, applied) in [
            (self.cassandra_puts.at, cassandra_put?),
            (self.cassandra_deletes.at, cassandra_delete?),
        ] {
            for (n, applied) in ops.into_iter().zip(applied) {
                written[n].cassandra = Some(applied);
            }
        }
        Ok(())
    }
}
