//! One batch of ids through a round, as a sequence of small stages:
//!
//! 1. **gather** ([`gather`]): each id's ledger entry and its version on each side; what essync
//!    wrote itself and nobody changed since is recognised there and goes no further;
//! 2. **attribute** ([`attribute`], pure): each side compared with the ledger says who changed
//!    what: nothing, one side (a change, a creation, a delete), or both (a conflict);
//! 3. **decide** ([`decide`]): the policy filters every change and resolves the conflicts; a
//!    change on one side only is taken as it is;
//! 4. **plan** ([`plan`], pure): the writes that bring both sides to the decision, and what the
//!    ledger records once they applied;
//! 5. **apply** ([`apply`]): both stores written at once, then the ledger; failures recorded
//!    for a later attempt.

mod apply;
mod attribute;
mod decide;
mod gather;
mod plan;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub(crate) use apply::Effects;

use super::SyncError;
use super::report::RoundReport;
use super::state::{LedgerEntry, State};
use crate::cassandra::{CassandraStore, CassandraVersion};
use crate::elasticsearch::{ElasticsearchStore, EsVersion};
use crate::policy::{Policy, Stamp};
use crate::store::{Read, Stored};

/// What a batch works with.
pub(crate) struct Context<'a> {
    pub elasticsearch: &'a ElasticsearchStore,
    pub cassandra: &'a CassandraStore,
    pub policy: &'a Policy,
    /// The round's start: when a change with no timestamp of its own was seen in
    /// Elasticsearch.
    pub now: DateTime<Utc>,
}

/// Where a batch of ids comes from.
pub(crate) enum Source {
    /// A page of the Elasticsearch change feed.
    Elasticsearch(Vec<Read<EsVersion>>),
    /// Rows the Cassandra change feed read; with `recognise_own`, a row essync wrote itself
    /// and nobody changed since goes no further (a reconciliation looks at every row).
    Cassandra {
        reads: Vec<Read<CassandraVersion>>,
        recognise_own: bool,
    },
    /// Ids to look up on both sides: retries, deletes the sweep found.
    Ids(Vec<Uuid>),
}

/// One side's version of an id, as the round sees it: the document's timestamp is its
/// effective one (see [`attribute::observe_elasticsearch`]), the digest what is stored.
#[derive(Debug, Clone)]
pub(crate) struct Seen<V> {
    pub stored: Stored<V>,
    pub stamp: Stamp,
}

/// Everything a round knows of one id.
#[derive(Debug, Clone)]
pub(crate) struct Examined {
    pub id: Uuid,
    pub ledger: Option<LedgerEntry>,
    pub elasticsearch: Option<Seen<EsVersion>>,
    pub cassandra: Option<Seen<CassandraVersion>>,
    /// When the Cassandra side was read (a row written where there was none is fenced then).
    pub cassandra_read_at: DateTime<Utc>,
}

/// Syncs one batch of ids.
pub(crate) async fn sync_batch(
    ctx: &Context<'_>,
    state: &mut State,
    report: &mut RoundReport,
    source: Source,
) -> Result<Effects, SyncError> {
    let started = std::time::Instant::now();
    let examined = gather::gather(ctx, state, report, source).await?;
    if examined.is_empty() {
        return Ok(Effects::default());
    }
    let gathered = started.elapsed();
    let count = examined.len();
    let plans = decide::decide(ctx, state, report, examined).await?;
    let decided = started.elapsed();
    let effects = apply::apply(ctx, state, report, plans).await?;
    tracing::debug!(
        "batch of {count}: gathered in {:.3}s, decided in {:.3}s, applied in {:.3}s",
        gathered.as_secs_f64(),
        (decided - gathered).as_secs_f64(),
        (started.elapsed() - decided).as_secs_f64()
    );
    Ok(effects)
}
