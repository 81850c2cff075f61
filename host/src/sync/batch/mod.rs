//! One batch of ids through a round, as a value passed through small stages:
//!
//! 1. **gather** ([`gather`]): each id's ledger entry and its version on each side; what essync
//!    wrote itself and nobody changed since is recognised there and goes no further;
//! 2. **attribute** ([`attribute`], pure): each side compared with the ledger says who changed
//!    what: nothing, one side (a change, a creation, a delete), or both (a conflict);
//! 3. **decide** ([`decide`]): the policy filters every change and resolves the conflicts; a
//!    change on one side only is taken as it is;
//! 4. **plan** ([`plan`], pure): the writes that bring both sides to the decision, and what the
//!    ledger records once they applied;
//! 5. **apply** ([`apply`]): the intents, then both stores written at once;
//! 6. **settle** ([`settle`], pure): the counts, the failures to try again and the ledger's
//!    records, written by the state all at once when the batch ends.
//!
//! An id that goes no further than a stage (bad data, a policy's refusal, a filtered change)
//! leaves what it needs recorded in the batch's [`Settlement`], settled with the rest.

mod apply;
mod attribute;
mod decide;
mod gather;
mod plan;
mod settle;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub(crate) use settle::Effects;

use super::SyncError;
use super::report::RoundReport;
use super::state::{LedgerEntry, Settlement, State};
use crate::cassandra::{CassandraStore, CassandraVersion};
use crate::elasticsearch::{ElasticsearchStore, EsVersion};
use crate::policy::{Policy, Stamp};
use crate::store::{Read, Side, Stored};

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
    /// and nobody changed since goes no further (a reconciliation looks at every row). The
    /// sweep gives the ledger entries it read beside the rows (`None`: read them by id).
    Cassandra {
        reads: Vec<Read<CassandraVersion>>,
        recognise_own: bool,
        ledger: Option<KnownLedger>,
    },
    /// Ids to look up on both sides: retries, deletes the sweep found.
    Ids(Vec<Uuid>),
}

impl Source {
    /// The side the versions were read from (`None`: ids only).
    fn side(&self) -> Option<Side> {
        match self {
            Source::Elasticsearch(_) => Some(Side::Elasticsearch),
            Source::Cassandra { .. } => Some(Side::Cassandra),
            Source::Ids(_) => None,
        }
    }

    /// Whether a version essync wrote itself and nobody changed since goes no further.
    fn recognises_own(&self) -> bool {
        match self {
            Source::Cassandra { recognise_own, .. } => *recognise_own,
            Source::Elasticsearch(_) => true,
            Source::Ids(_) => false,
        }
    }
}

/// The ledger entries a feed read beside its rows (the sweep reads the ledger's token range
/// with the table's), for the ids it covers: an id covered without an entry has none. Ids not
/// covered are read by id.
#[derive(Debug, Clone, Default)]
pub(crate) struct KnownLedger {
    pub entries: HashMap<Uuid, LedgerEntry>,
    pub covered: std::collections::HashSet<Uuid>,
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
    let mut settlement = Settlement::default();
    let examined = gather::gather(ctx, state, source, report, &mut settlement).await?;
    let count = examined.len();
    let gathered = started.elapsed();
    let decided = decide::decide(ctx, state, examined, report, &mut settlement).await?;
    let keep_content = state.keeps_content();
    let plans = decided
        .into_iter()
        .map(|(examined, outcome)| plan::plan(&examined, outcome, keep_content))
        .collect();
    let decided_at = started.elapsed();
    let written = apply::apply(ctx, state, plans).await?;
    let applied = started.elapsed();
    let effects = settle::settle(written, state.dry_run(), report, &mut settlement);
    state.settle(settlement, ctx.now).await?;
    tracing::debug!(
        "batch of {count}: gathered in {:.3}s, decided in {:.3}s, applied in {:.3}s, settled in {:.3}s",
        gathered.as_secs_f64(),
        (decided_at - gathered).as_secs_f64(),
        (applied - decided_at).as_secs_f64(),
        (started.elapsed() - applied).as_secs_f64()
    );
    Ok(effects)
}

/// What a test reads from Elasticsearch: `document` exactly, at sequence number 1, with
/// essync's metadata, not written by essync.
#[cfg(test)]
pub(crate) fn read_from_elasticsearch(document: crate::Document) -> Stored<EsVersion> {
    Stored {
        digest: document.digest(),
        version: EsVersion::new(document.index.clone(), 1, 1),
        document,
        stamped: true,
        exact: true,
        essync_wrote: None,
    }
}
