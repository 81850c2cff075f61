//! The sync engine: three-way sync of Elasticsearch and one Cassandra table.
//!
//! essync remembers, per id, the version both stores held after it last synced them (the
//! ledger, see [`state::ledger`]). A round reads what changed on each side since its checkpoint
//! and compares each side's version with the ledger's: a change on one side only (an update, a
//! creation, a delete) is copied to the other side whatever the timestamps say; only when both
//! sides changed does the policy resolve (see [`batch`]). A round:
//!
//! 1. retries the ids recorded as failed whose backoff has passed ([`state::errors`]);
//! 2. reads the Elasticsearch change feed page by page, and syncs each page as a batch
//!    (gather, attribute, decide, plan, apply, settle: [`batch`]) while the next page is read,
//!    then saves the checkpoint;
//! 3. does the same from the Cassandra change feed: recent rows, then the write-time sweep
//!    beside the ledger, which also finds deletes on both sides ([`sweep`], [`deletes`]).
//!
//! The rooms, in the order a round goes through them: this driver ([`Syncer`]), the round's
//! feeds ([`round`], [`sweep`]), the batch's stages ([`batch`]), and the state they settle
//! into ([`state`]: checkpoints, failures, the ledger).
//!
//! Rounds start every period; a round longer than the period delays the next one instead of
//! overlapping it. A store lost mid-round fails the round without moving any checkpoint past
//! unapplied work; the next attempt comes after a backoff. A stop request ends the round after
//! the current page, with the checkpoint saved.
//!
//! Echo-free: a document essync wrote is read back by the next round and recognised from the
//! ledger (its `_seq_no` or write time); idle rounds write nothing.

mod batch;
mod deletes;
pub mod metrics;
pub mod ranges;
pub mod report;
mod round;
pub mod state;
mod stop;
mod sweep;

use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

pub use metrics::Metrics;
pub use report::RoundReport;
pub use state::{Checkpoint, DeleteWatch, ErrorEntry, Holder, LEASE_TTL, Lease, Reconciliation};
pub use stop::Stop;

use crate::cassandra::{
    CassandraCheckpoint, CassandraError, CassandraStore, FeedOptions, TokenRange,
};
use crate::document::now_millis;
use crate::elasticsearch::{ElasticsearchError, ElasticsearchStore, EsCheckpoint};
use crate::policy::{Policy, PolicyReload};
use crate::store::Side;
use batch::Context;
use round::Round;
use state::State;

/// How much longer than the safety window what was synced lately serves to recognise the
/// recent rows that did not change (rounds under load can take several seconds).
const RECENT_MARGIN: Duration = Duration::from_secs(30);

/// Where a sync starts: a reconciliation left unfinished is resumed; a new ledger beside a
/// saved checkpoint (an upgrade, a dropped ledger) is filled by a reconciliation; `-s` starts
/// one; otherwise the saved checkpoint, or the stores as they are now. A range of a table shared
/// by several processes that has no checkpoint reconciles: its starting point was given to
/// every range at once ([`ranges::prepare`]), so missing one means that start was cut short.
async fn first_checkpoint(
    saved: Option<Checkpoint>,
    new_ledger: bool,
    options: &SyncOptions,
    elasticsearch: &ElasticsearchStore,
) -> Result<Checkpoint, SyncError> {
    let now = now_millis();
    Ok(match saved {
        Some(saved) if saved.reconciling() => {
            if let Some(r) = &saved.reconciliation {
                tracing::info!(
                    "resuming the reconciliation started at {}",
                    crate::document::format_timestamp(r.started_at)
                );
            }
            saved
        }
        Some(_) if new_ledger => {
            tracing::info!(
                "the ledger of what was last synced is new: reconciling every existing \
                 document once to fill it, then following changes"
            );
            Checkpoint::reconciling_from(now)
        }
        Some(saved) if !options.reconcile => {
            tracing::info!("resuming from the saved checkpoint");
            saved
        }
        _ if options.reconcile || !options.range.is_whole() => {
            tracing::info!("reconciling every existing document before following changes");
            Checkpoint::reconciling_from(now)
        }
        _ => {
            tracing::info!(
                "following changes from now on (existing documents are left alone; -s syncs them)"
            );
            Checkpoint::following_from(now, elasticsearch).await?
        }
    })
}

impl Checkpoint {
    /// The checkpoint of a sync that reconciles every existing document first, from `now`.
    pub fn reconciling_from(now: chrono::DateTime<chrono::Utc>) -> Self {
        Checkpoint {
            elasticsearch: EsCheckpoint::default(),
            cassandra: CassandraCheckpoint::reconciling_from(now),
            reconciliation: Some(Reconciliation {
                started_at: now,
                elasticsearch_done: false,
            }),
            deletes: DeleteWatch::default(),
        }
    }

    /// The checkpoint of a sync that leaves existing documents alone and follows the changes
    /// made from `now` on.
    pub async fn following_from(
        now: chrono::DateTime<chrono::Utc>,
        elasticsearch: &ElasticsearchStore,
    ) -> Result<Self, SyncError> {
        Ok(Checkpoint {
            elasticsearch: elasticsearch.current_positions().await?,
            cassandra: CassandraCheckpoint::starting_at(now),
            reconciliation: None,
            deletes: DeleteWatch::default(),
        })
    }
}

/// The one backoff: `first`, doubled for each earlier `attempt`, at most `max`.
pub(crate) fn backoff(first: Duration, attempt: u32, max: Duration) -> Duration {
    first.saturating_mul(1u32 << attempt.min(20)).min(max)
}

/// A failure that stops a round (per-document failures are recorded, not raised).
#[derive(Debug, Error)]
pub enum SyncError {
    /// Elasticsearch failed.
    #[error(transparent)]
    Elasticsearch(#[from] ElasticsearchError),
    /// Cassandra failed.
    #[error(transparent)]
    Cassandra(#[from] CassandraError),
    /// Another process took the table's lease (this one was frozen or cut off past its TTL).
    #[error(
        "another essync took the lease of the table ({holder}, in {table}) while this one was \
         frozen or cut off; stopping without saving a checkpoint (a restart waits its turn)"
    )]
    LeaseLost {
        /// The lease table.
        table: String,
        /// Who holds the lease now.
        holder: String,
    },
}

impl SyncError {
    /// Whether waiting and trying again may help.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Elasticsearch(e) => e.is_transient(),
            SyncError::Cassandra(e) => e.is_transient(),
            SyncError::LeaseLost { .. } => false,
        }
    }
}

/// How the sync runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Reconcile every existing document at start (`-s`).
    pub reconcile: bool,
    /// Decide and report, but write nothing and save no checkpoint.
    pub dry_run: bool,
    /// How the Cassandra change feed reads.
    pub feed: FeedOptions,
    /// The most failed ids retried per round.
    pub retries_per_round: usize,
    /// The first wait before a failed document is tried again (doubles each time).
    pub retry_backoff: Duration,
    /// The part of the table this sync keeps (see [`ranges`]): the whole ring by default.
    pub range: TokenRange,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            reconcile: false,
            dry_run: false,
            feed: FeedOptions::default(),
            retries_per_round: 1000,
            retry_backoff: Duration::from_secs(10),
            range: TokenRange::WHOLE,
        }
    }
}

/// Hears about progress, for a display (the library prints nothing itself).
pub trait Progress: Send + Sync {
    /// A reconciliation starts (or resumes): how many documents there are, if known.
    fn reconciliation(&self, _elasticsearch: Option<u64>, _cassandra: Option<u64>) {}
    /// Documents were read from a side and handled.
    fn read(&self, _side: Side, _count: u64) {}
    /// A round ended.
    fn round_finished(&self, _report: &RoundReport) {}
}

/// A sync of one Elasticsearch cluster with one Cassandra table.
pub struct Syncer {
    elasticsearch: Arc<ElasticsearchStore>,
    cassandra: Arc<CassandraStore>,
    policy: Policy,
    options: SyncOptions,
    state: State,
    checkpoint: Checkpoint,
    /// No checkpoint was saved before this start: the sync meets the table for the first time.
    first_start: bool,
    rounds: u64,
    last_round: Option<Instant>,
    /// The period [`Syncer::run`] runs rounds at: the write-time sweep of a round stops taking
    /// pages once the round has used it (see [`round::Round::follow_cassandra`]).
    period: Option<Duration>,
    /// When the write-time sweep last took a page.
    swept_at: Option<Instant>,
    progress: Option<Arc<dyn Progress>>,
    metrics: Option<Arc<Metrics>>,
    policy_reload: Option<PolicyReload>,
    /// Policies published by whoever reloads them for several syncs at once (one per range).
    policy_updates: Option<tokio::sync::watch::Receiver<Policy>>,
}

impl Syncer {
    /// Prepares a sync: creates essync's state tables beside the synced one and loads the
    /// checkpoint. Without one, the sync starts now (existing documents are left alone) or,
    /// with `reconcile`, with a full reconciliation. A reconciliation left unfinished by an
    /// earlier run is resumed; a ledger created now beside an existing checkpoint (an upgrade,
    /// a dropped ledger) is filled by a reconciliation too.
    pub async fn start(
        elasticsearch: impl Into<Arc<ElasticsearchStore>>,
        cassandra: impl Into<Arc<CassandraStore>>,
        policy: Policy,
        options: SyncOptions,
    ) -> Result<Self, SyncError> {
        let (elasticsearch, cassandra) = (elasticsearch.into(), cassandra.into());
        let keyspace = cassandra.config().keyspace.clone();
        let sync = cassandra.config().table.clone();
        let unit = ranges::unit_name(&sync, options.range);
        let state_options = state::StateOptions {
            retry_backoff: options.retry_backoff,
            dry_run: options.dry_run,
            keep_content: policy.wants_base_content(),
            recent_for: options.feed.safety_window + RECENT_MARGIN,
        };
        let opened = State::open(cassandra.cql(), &keyspace, &sync, &unit, state_options).await?;
        let mut state = opened.state;
        let first_start = opened.checkpoint.is_none();
        let checkpoint = first_checkpoint(
            opened.checkpoint,
            opened.new_ledger,
            &options,
            &elasticsearch,
        )
        .await?;
        if state.failures() > 0 {
            tracing::info!(
                "{} document(s) recorded as failed earlier; they are retried (list them with `essync errors`)",
                state.failures()
            );
        }
        state.save(&checkpoint).await?;
        Ok(Self {
            elasticsearch,
            cassandra,
            policy,
            options,
            state,
            checkpoint,
            first_start,
            rounds: 0,
            last_round: None,
            period: None,
            swept_at: None,
            progress: None,
            metrics: None,
            policy_reload: None,
            policy_updates: None,
        })
    }

    /// Syncs under `lease` (see [`Lease::acquire`]): a checkpoint is saved only while the lease
    /// holds, the lease is renewed between rounds, and [`Syncer::run`] gives it up when it ends.
    pub fn with_lease(mut self, lease: Lease) -> Self {
        self.state.hold(lease);
        self
    }

    /// Reports progress to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Counts every round in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Asks `reload` for a new policy at every round boundary of [`Syncer::run`].
    pub fn with_policy_reload(mut self, reload: PolicyReload) -> Self {
        self.policy_reload = Some(reload);
        self
    }

    /// Takes up each policy published on `updates`, at the round boundary after it (the
    /// syncs of the ranges a process holds share one reload this way).
    pub fn with_policy_updates(mut self, updates: tokio::sync::watch::Receiver<Policy>) -> Self {
        self.policy_updates = Some(updates);
        self
    }

    /// Uses `policy` from the next round on.
    pub fn replace_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// The current checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Whether no checkpoint was saved before this start: the first start on the table (a dry
    /// run saves none, so every dry run on a table never synced is one).
    pub fn first_start(&self) -> bool {
        self.first_start
    }

    /// The Elasticsearch store being synced.
    pub fn elasticsearch(&self) -> &ElasticsearchStore {
        &self.elasticsearch
    }

    /// How many documents are recorded as failed.
    pub fn failed_documents(&self) -> usize {
        self.state.failures()
    }

    /// Runs one round: its feeds, one after the other ([`Round::run`]), then the checkpoint
    /// saved. Stops early, with the checkpoint saved, when `stop` is set.
    pub async fn round(&mut self, stop: &Stop) -> Result<RoundReport, SyncError> {
        let started = Instant::now();
        let sent = self.requests_sent();
        self.rounds += 1;
        let mut report = RoundReport {
            number: self.rounds,
            lag: self.last_round.map(|t| t.elapsed()).unwrap_or_default(),
            ..RoundReport::default()
        };
        self.last_round = Some(started);
        let progress = self.reconciliation_progress().await;
        let ctx = Context {
            elasticsearch: &self.elasticsearch,
            cassandra: &self.cassandra,
            policy: &self.policy,
            now: now_millis(),
        };
        Round {
            ctx: &ctx,
            state: &mut self.state,
            report: &mut report,
            checkpoint: &mut self.checkpoint,
            feed: self.options.feed,
            sweep_until: self.period.map(|period| started + period),
            swept_at: &mut self.swept_at,
            progress: progress.as_deref(),
            stop,
            range: self.options.range,
        }
        .run(self.options.retries_per_round)
        .await?;
        if self.checkpoint.finish_reconciliation_if_done() {
            tracing::info!("reconciliation complete; following changes");
        }
        self.state.save(&self.checkpoint).await?;
        report.duration = started.elapsed();
        report.requests = report::Requests::between(
            &sent,
            self.elasticsearch.requests().snapshot(),
            self.cassandra.requests().snapshot(),
        );
        if let Some(progress) = &progress {
            progress.round_finished(&report);
        }
        Ok(report)
    }

    /// The requests sent to each store so far (a round reports the difference).
    fn requests_sent(&self) -> report::Requests {
        report::Requests {
            elasticsearch: self.elasticsearch.requests().snapshot(),
            cassandra: self.cassandra.requests().snapshot(),
        }
    }

    /// The progress display, told how many documents there are, while reconciling (following
    /// changes reports once per round instead).
    async fn reconciliation_progress(&self) -> Option<Arc<dyn Progress>> {
        let progress = self
            .progress
            .clone()
            .filter(|_| self.checkpoint.reconciling())?;
        let es_total = self.elasticsearch.count_documents().await.ok();
        let cassandra_estimate = self.cassandra.estimate_rows().await.ok().flatten();
        progress.reconciliation(es_total, cassandra_estimate);
        Some(progress)
    }

    /// Runs rounds every `period` until `stop` is set (or once). A failed round is logged and
    /// retried after a backoff (1 s, doubling, at most a minute), unless `once`: then it is
    /// the result. A lost lease ends the run with an error. The lease, if any, is given up at
    /// the end.
    pub async fn run(
        &mut self,
        period: Duration,
        once: bool,
        stop: &Stop,
    ) -> Result<(), SyncError> {
        let result = self.run_rounds(period, once, stop).await;
        if !matches!(result, Err(SyncError::LeaseLost { .. })) {
            self.state.release_lease().await;
        }
        result
    }

    /// Waits `duration` (or until `stop`), renewing the lease meanwhile; returns whether `stop`
    /// was set.
    async fn pause(&mut self, duration: Duration, stop: &Stop) -> Result<bool, SyncError> {
        let until = Instant::now() + duration;
        loop {
            match self.state.confirm_lease().await {
                Err(e @ SyncError::LeaseLost { .. }) => return Err(e),
                // Out of reach: the next round says so, and saves nothing unless it holds.
                Err(e) => tracing::debug!("cannot renew the lease now: {e}"),
                Ok(()) => {}
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let renewal = self.state.lease_renewal().unwrap_or(left);
            if stop.sleep(left.min(renewal)).await {
                return Ok(true);
            }
        }
    }

    async fn run_rounds(
        &mut self,
        period: Duration,
        once: bool,
        stop: &Stop,
    ) -> Result<(), SyncError> {
        let mut failing = Failing::default();
        self.period = Some(period);
        loop {
            let started = Instant::now();
            if let Some(reload) = &mut self.policy_reload
                && let Some(policy) = reload.check().await
            {
                self.replace_policy(policy);
            }
            if let Some(updates) = &mut self.policy_updates
                && updates.has_changed().unwrap_or(false)
            {
                let policy = updates.borrow_and_update().clone();
                self.replace_policy(policy);
            }
            match self.round(stop).await {
                Ok(report) => {
                    failing.over(self.rounds);
                    if let Some(metrics) = &self.metrics {
                        metrics.round(
                            &report,
                            self.state.failures(),
                            self.checkpoint.reconciling(),
                        );
                    }
                    report.log(self.options.dry_run);
                }
                Err(e) if once || matches!(e, SyncError::LeaseLost { .. }) => return Err(e),
                Err(e) => {
                    if let Some(metrics) = &self.metrics {
                        metrics.failed_round();
                    }
                    let wait = failing.another(started, self.rounds, &e);
                    if self.pause(wait, stop).await? {
                        break;
                    }
                    continue;
                }
            }
            if once || stop.is_set() {
                break;
            }
            let next = started + period;
            if self
                .pause(next.saturating_duration_since(Instant::now()), stop)
                .await?
            {
                break;
            }
        }
        tracing::info!("stopped; checkpoint saved");
        Ok(())
    }
}

/// The rounds failing in a row, and since when: each waits longer before the next attempt.
#[derive(Default)]
struct Failing {
    count: u32,
    since: Option<Instant>,
}

impl Failing {
    /// Round `number`, which started at `started`, failed with `error`: logs it and returns how
    /// long to wait before the next attempt (2 s, doubling, at most a minute).
    fn another(&mut self, started: Instant, number: u64, error: &SyncError) -> Duration {
        self.count = self.count.saturating_add(1);
        self.since.get_or_insert(started);
        let wait = backoff(
            Duration::from_secs(2),
            self.count - 1,
            Duration::from_secs(60),
        );
        tracing::error!(
            "round {number} failed: {}; trying again in {}s",
            crate::store::one_line(&error.to_string()),
            wait.as_secs()
        );
        wait
    }

    /// Round `number` succeeded: says so if rounds had failed before it.
    fn over(&mut self, number: u64) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                "round {number} succeeded after {} failed rounds over {:.0}s; the sync goes on \
                 from its saved checkpoint",
                self.count,
                since.elapsed().as_secs_f64()
            );
        }
        self.count = 0;
    }
}
