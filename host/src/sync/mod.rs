//! The sync engine: rounds that read both change feeds since their checkpoints, let the policy
//! filter and resolve, apply the decisions with race-safe writes, and move the checkpoints.
//!
//! A round:
//!
//! 1. retries the ids recorded as failed whose backoff has passed ([`errors`]);
//! 2. reads the Elasticsearch change feed page by page; for each page, looks up the Cassandra
//!    version of every id, triages (equal versions need nothing), asks the policy to filter
//!    and resolve in batches, writes each side that does not hold the winner (compare-and-set
//!    against the version read), records what failed, then saves the checkpoint;
//! 3. does the same from the Cassandra change feed.
//!
//! Rounds start every period; a round longer than the period delays the next one instead of
//! overlapping it. A store lost mid-round fails the round without moving any checkpoint past
//! unapplied work; the next attempt comes after a backoff. A stop request ends the round after
//! the current page, with the checkpoint saved.
//!
//! Echo-free: a document essync wrote is read back once by the next round (it is a change like
//! any other), found equal on both sides, and left alone; idle rounds write nothing.

pub mod checkpoint;
mod decide;
pub mod errors;
pub mod metrics;
pub mod report;
mod round;
mod stop;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use thiserror::Error;

pub use checkpoint::{Checkpoint, Reconciliation};
pub use errors::ErrorEntry;
pub use metrics::Metrics;
pub use report::RoundReport;
pub use stop::Stop;

use crate::cassandra::{CassandraCheckpoint, CassandraError, CassandraStore, FeedOptions};
use crate::document::now_millis;
use crate::elasticsearch::{ElasticsearchError, ElasticsearchStore, EsCheckpoint};
use crate::policy::{Policy, PolicyReload};
use crate::store::{ChangePage, Read, Side};
use checkpoint::CheckpointStore;
use errors::ErrorLog;
use round::{Context, Source, sync_batch};

/// A failure that stops a round (per-document failures are recorded, not raised).
#[derive(Debug, Error)]
pub enum SyncError {
    /// Elasticsearch failed.
    #[error(transparent)]
    Elasticsearch(#[from] ElasticsearchError),
    /// Cassandra failed.
    #[error(transparent)]
    Cassandra(#[from] CassandraError),
}

impl SyncError {
    /// Whether waiting and trying again may help.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Elasticsearch(e) => e.is_transient(),
            SyncError::Cassandra(e) => e.is_transient(),
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
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            reconcile: false,
            dry_run: false,
            feed: FeedOptions::default(),
            retries_per_round: 1000,
            retry_backoff: Duration::from_secs(10),
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
    elasticsearch: ElasticsearchStore,
    cassandra: CassandraStore,
    policy: Policy,
    options: SyncOptions,
    checkpoints: CheckpointStore,
    checkpoint: Checkpoint,
    errors: ErrorLog,
    rounds: u64,
    last_round: Option<Instant>,
    progress: Option<Arc<dyn Progress>>,
    metrics: Option<Arc<Metrics>>,
    policy_reload: Option<PolicyReload>,
}

impl Syncer {
    /// Prepares a sync: creates essync's state tables beside the synced one and loads the
    /// checkpoint. Without one, the sync starts now (existing documents are left alone) or,
    /// with `reconcile`, with a full reconciliation. A reconciliation left unfinished by an
    /// earlier run is resumed.
    pub async fn start(
        elasticsearch: ElasticsearchStore,
        cassandra: CassandraStore,
        policy: Policy,
        options: SyncOptions,
    ) -> Result<Self, SyncError> {
        let session = cassandra.session();
        let keyspace = cassandra.config().keyspace.clone();
        let sync = cassandra.config().table.clone();
        let checkpoints = CheckpointStore::open(session, &keyspace, &sync).await?;
        let errors = ErrorLog::open(
            session,
            &keyspace,
            &sync,
            options.retry_backoff,
            options.dry_run,
        )
        .await?;
        let now = now_millis();
        let checkpoint = match checkpoints.load(session).await? {
            Some(saved) if saved.reconciling() => {
                if let Some(r) = &saved.reconciliation {
                    tracing::info!(
                        "resuming the reconciliation started at {}",
                        crate::document::format_timestamp(r.started_at)
                    );
                }
                saved
            }
            Some(saved) if !options.reconcile => {
                tracing::info!("resuming from the saved checkpoint");
                saved
            }
            _ if options.reconcile => {
                tracing::info!("reconciling every existing document before following changes");
                Checkpoint {
                    elasticsearch: EsCheckpoint::default(),
                    cassandra: CassandraCheckpoint::reconciling_from(now),
                    reconciliation: Some(Reconciliation {
                        started_at: now,
                        elasticsearch_done: false,
                    }),
                }
            }
            _ => {
                tracing::info!(
                    "following changes from now on (existing documents are left alone; -s syncs them)"
                );
                Checkpoint {
                    elasticsearch: elasticsearch.current_positions().await?,
                    cassandra: CassandraCheckpoint::starting_at(now),
                    reconciliation: None,
                }
            }
        };
        if errors.len() > 0 {
            tracing::info!(
                "{} document(s) recorded as failed earlier; they are retried (list them with `essync errors`)",
                errors.len()
            );
        }
        let syncer = Self {
            elasticsearch,
            cassandra,
            policy,
            options,
            checkpoints,
            checkpoint,
            errors,
            rounds: 0,
            last_round: None,
            progress: None,
            metrics: None,
            policy_reload: None,
        };
        save(
            &syncer.checkpoints,
            syncer.cassandra.session(),
            &syncer.checkpoint,
            syncer.options.dry_run,
        )
        .await?;
        Ok(syncer)
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

    /// Uses `policy` from the next round on.
    pub fn replace_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// The current checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// How many documents are recorded as failed.
    pub fn failed_documents(&self) -> usize {
        self.errors.len()
    }

    /// Runs one round. Stops early, with the checkpoint saved, when `stop` is set.
    pub async fn round(&mut self, stop: &Stop) -> Result<RoundReport, SyncError> {
        let started = Instant::now();
        self.rounds += 1;
        let mut report = RoundReport {
            number: self.rounds,
            lag: self.last_round.map(|t| t.elapsed()).unwrap_or_default(),
            ..RoundReport::default()
        };
        self.last_round = Some(started);
        let now = now_millis();
        // Progress is for reconciliations; following changes reports once per round.
        let progress = self
            .progress
            .clone()
            .filter(|_| self.checkpoint.reconciling());
        if let Some(progress) = &progress {
            let es_total = self.elasticsearch.count_documents().await.ok();
            let cassandra_estimate = self.cassandra.estimate_rows().await.ok().flatten();
            progress.reconciliation(es_total, cassandra_estimate);
        }
        let ctx = Context {
            elasticsearch: &self.elasticsearch,
            cassandra: &self.cassandra,
            policy: &self.policy,
            dry_run: self.options.dry_run,
            now,
        };

        let due = self.errors.due(now, self.options.retries_per_round);
        if !due.is_empty() {
            report.retried = due.len() as u64;
            sync_batch(&ctx, &mut self.errors, &mut report, Source::Retry(due)).await?;
        }

        let mut feed = Feed {
            ctx: &ctx,
            errors: &mut self.errors,
            report: &mut report,
            checkpoints: &self.checkpoints,
            checkpoint: &mut self.checkpoint,
            progress: progress.as_deref(),
            stop,
        };
        let es_from = feed.checkpoint.elasticsearch.clone();
        let finished = feed
            .follow(
                self.elasticsearch.changes(&es_from, now),
                Side::Elasticsearch,
                |checkpoint, position| checkpoint.elasticsearch = position,
                Source::Elasticsearch,
            )
            .await?;
        if finished {
            if let Some(reconciliation) = &mut feed.checkpoint.reconciliation {
                reconciliation.elasticsearch_done = true;
            }
            let cassandra_from = feed.checkpoint.cassandra.clone();
            feed.follow(
                self.cassandra
                    .changes(&cassandra_from, now, self.options.feed),
                Side::Cassandra,
                |checkpoint, position| checkpoint.cassandra = position,
                Source::Cassandra,
            )
            .await?;
        }

        if self.checkpoint.finish_reconciliation_if_done() {
            tracing::info!("reconciliation complete; following changes");
        }
        save(
            &self.checkpoints,
            ctx.cassandra.session(),
            &self.checkpoint,
            ctx.dry_run,
        )
        .await?;
        report.duration = started.elapsed();
        if let Some(progress) = &progress {
            progress.round_finished(&report);
        }
        Ok(report)
    }

    /// Runs rounds every `period` until `stop` is set (or once). A failed round is logged and
    /// retried after a backoff (1 s, doubling, at most a minute), unless `once`: then it is
    /// the result.
    pub async fn run(
        &mut self,
        period: Duration,
        once: bool,
        stop: &Stop,
    ) -> Result<(), SyncError> {
        let mut failures: u32 = 0;
        loop {
            let started = Instant::now();
            if let Some(reload) = &mut self.policy_reload
                && let Some(policy) = reload.check().await
            {
                self.replace_policy(policy);
            }
            match self.round(stop).await {
                Ok(report) => {
                    failures = 0;
                    if let Some(metrics) = &self.metrics {
                        metrics.round(&report, self.errors.len(), self.checkpoint.reconciling());
                    }
                    if self.options.dry_run {
                        tracing::info!("{report} (dry run: nothing written)");
                    } else {
                        tracing::info!("{report}");
                    }
                }
                Err(e) if once => return Err(e),
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if let Some(metrics) = &self.metrics {
                        metrics.failed_round();
                    }
                    let wait =
                        Duration::from_secs(1u64 << failures.min(6)).min(Duration::from_secs(60));
                    tracing::error!(
                        "round {} failed: {e}; trying again in {}s",
                        self.rounds,
                        wait.as_secs()
                    );
                    if stop.sleep(wait).await {
                        break;
                    }
                    continue;
                }
            }
            if once || stop.is_set() {
                break;
            }
            let next = started + period;
            if stop
                .sleep(next.saturating_duration_since(Instant::now()))
                .await
            {
                break;
            }
        }
        tracing::info!("stopped; checkpoint saved");
        Ok(())
    }
}

/// One round's reading of the change feeds.
struct Feed<'r, 'c> {
    ctx: &'r Context<'c>,
    errors: &'r mut ErrorLog,
    report: &'r mut RoundReport,
    checkpoints: &'r CheckpointStore,
    checkpoint: &'r mut Checkpoint,
    progress: Option<&'r dyn Progress>,
    stop: &'r Stop,
}

impl Feed<'_, '_> {
    /// Applies one side's change feed page by page, saving the checkpoint after each page.
    /// Returns whether the feed was read to its end (not stopped early).
    async fn follow<V, C, E>(
        &mut self,
        pages: impl futures::Stream<Item = Result<ChangePage<V, C>, E>>,
        side: Side,
        advance: impl Fn(&mut Checkpoint, C),
        source: impl Fn(Vec<Read<V>>) -> Source,
    ) -> Result<bool, SyncError>
    where
        SyncError: From<E>,
    {
        let mut pages = std::pin::pin!(pages);
        while let Some(page) = pages.next().await {
            let page = page?;
            let count = page.reads.len() as u64;
            self.report.side_mut(side).read += count;
            if count > 0 {
                sync_batch(self.ctx, self.errors, self.report, source(page.reads)).await?;
            }
            advance(self.checkpoint, page.checkpoint);
            save(
                self.checkpoints,
                self.ctx.cassandra.session(),
                self.checkpoint,
                self.ctx.dry_run,
            )
            .await?;
            if let Some(progress) = self.progress {
                progress.read(side, count);
            }
            if self.stop.is_set() {
                self.report.interrupted = true;
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Saves a checkpoint (not in a dry run).
async fn save(
    checkpoints: &CheckpointStore,
    session: &scylla::client::session::Session,
    checkpoint: &Checkpoint,
    dry_run: bool,
) -> Result<(), SyncError> {
    if !dry_run {
        checkpoints.save(session, checkpoint).await?;
    }
    Ok(())
}
