//! One round's reading: the failed ids due again, the Elasticsearch change feed, then the
//! Cassandra change feed (recent rows, then the write-time sweep beside the ledger). Every feed
//! goes through one loop ([`each_page`]): a page is synced as a batch while the next one is
//! read, then the checkpoint is saved.

use std::collections::{BTreeSet, HashMap};

use futures::{Stream, StreamExt};
use uuid::Uuid;

use super::batch::{Context, Effects, KnownLedger, Source, sync_batch};
use super::report::RoundReport;
use super::state::{Checkpoint, State};
use super::{Progress, Stop, SyncError, deletes, sweep};
use crate::cassandra::{FeedOptions, SweepLimits, SweepPage, TokenRange};
use crate::store::Read;
use crate::store::Side;

/// Pages (of the Cassandra page size, 1,000 rows) per page of the reads of ids and write times
/// only (the write-time sweep, the recent rows): the sweep reads the table's and the ledger's
/// token ranges in fewer, larger requests, and each such page becomes one batch of the rows
/// that changed in it, rather than several small ones that each pay a batch's fixed cost.
const STAMP_PAGES: usize = 5;

/// A round that has used its period takes no sweep page unless the sweep has taken none for
/// this long: under a steady load the sweep still moves, and the rounds stay close to their
/// period (a sweep page and the rows it finds cost a busy round up to a second).
pub(crate) const SWEEP_AT_LEAST_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// What a round works on.
pub(crate) struct Round<'r, 'c> {
    pub ctx: &'r Context<'c>,
    pub state: &'r mut State,
    pub report: &'r mut RoundReport,
    pub checkpoint: &'r mut Checkpoint,
    pub feed: FeedOptions,
    /// When the round's period is used up: the write-time sweep takes no page after it (and
    /// none at all unless it took none for [`SWEEP_AT_LEAST_EVERY`]), so that a busy round
    /// does not overrun its period for the sweep's sake. A reconciliation reads its whole pass
    /// regardless.
    pub sweep_until: Option<std::time::Instant>,
    /// When the sweep last took a page (kept across rounds).
    pub swept_at: &'r mut Option<std::time::Instant>,
    pub progress: Option<&'r dyn Progress>,
    pub stop: &'r Stop,
    /// The part of the table this sync keeps (the whole ring unless processes share it): the
    /// feeds keep only its ids, and the sweep passes over only its tokens.
    pub range: TokenRange,
}

/// Syncs each page of `pages` with `sync` while the next one is read: the slower of the two
/// sets the pace. `sync` returns whether to stop; so does this, once the pages run out.
async fn each_page<T, E>(
    pages: impl Stream<Item = Result<T, E>>,
    mut sync: impl AsyncFnMut(T) -> Result<bool, SyncError>,
) -> Result<bool, SyncError>
where
    SyncError: From<E>,
{
    let mut pages = std::pin::pin!(pages);
    let mut next = pages.next().await;
    while let Some(page) = next {
        let (stop, following) = tokio::join!(sync(page?), pages.next());
        if stop? {
            return Ok(true);
        }
        next = following;
    }
    Ok(false)
}

impl Round<'_, '_> {
    /// The round's stages: the failed ids due again, the Elasticsearch change feed, then, once
    /// that was read to its end, the Cassandra change feed.
    pub async fn run(mut self, retries: usize) -> Result<(), SyncError> {
        let started = std::time::Instant::now();
        self.retry(retries).await?;
        let retried = started.elapsed();
        if self.follow_elasticsearch().await? {
            let followed = started.elapsed();
            self.follow_cassandra().await?;
            tracing::debug!(
                "round {}: retries {:.3}s, Elasticsearch feed {:.3}s, Cassandra feed {:.3}s",
                self.report.number,
                retried.as_secs_f64(),
                (followed - retried).as_secs_f64(),
                (started.elapsed() - followed).as_secs_f64()
            );
        }
        Ok(())
    }

    /// Syncs the ids recorded as failed whose backoff has passed.
    async fn retry(&mut self, limit: usize) -> Result<(), SyncError> {
        let due = self.state.due(self.ctx.now, limit);
        if due.is_empty() {
            return Ok(());
        }
        self.report.retried = due.len() as u64;
        self.batch(Source::Ids(due)).await
    }

    /// Follows the Elasticsearch change feed to its end (or a stop). Returns whether it was
    /// read to the end. A part of the feed that cannot be read (an index, a shard) fails only
    /// itself: it is recorded, skipped with its position kept, and tried again after a backoff.
    async fn follow_elasticsearch(&mut self) -> Result<bool, SyncError> {
        let ctx = self.ctx;
        let from = self.checkpoint.elasticsearch.clone();
        let held = self.state.feed_held(ctx.now);
        let pages = ctx.elasticsearch.changes_holding(
            &from,
            ctx.now,
            held.clone(),
            self.checkpoint.deletes.written.clone(),
        );
        let mut failed = BTreeSet::new();
        let mut first = true;
        let stopped = each_page(pages, async |page| {
            self.feed_failures(&page.failed, &mut failed).await?;
            if std::mem::take(&mut first) {
                self.watch_deletes(&from.counters, &page.checkpoint.counters);
            }
            let mut reads = page.reads;
            reads.retain(|read| self.keeps(read));
            let count = reads.len() as u64;
            self.report.elasticsearch.read += count;
            if count > 0 {
                self.batch(Source::Elasticsearch(reads)).await?;
            }
            self.checkpoint.elasticsearch = page.checkpoint;
            self.page_done(Side::Elasticsearch, count).await
        })
        .await?;
        if stopped {
            return Ok(false);
        }
        self.state.feed_recovered(&failed, &held, ctx.now).await?;
        if let Some(reconciliation) = &mut self.checkpoint.reconciliation {
            reconciliation.elasticsearch_done = true;
        }
        Ok(true)
    }

    /// Records the parts of the Elasticsearch feed a page could not read (the first failure of
    /// each is logged).
    async fn feed_failures(
        &mut self,
        failures: &[crate::store::FeedFailure],
        failed: &mut BTreeSet<String>,
    ) -> Result<(), SyncError> {
        for failure in failures {
            failed.insert(failure.location.clone());
            self.report.errors += 1;
            if self.state.fail_feed(failure, self.ctx.now).await? {
                tracing::warn!(
                    "cannot read Elasticsearch's {}: {}; skipped (its position is kept) and tried again later",
                    failure.location,
                    failure.reason
                );
            }
        }
        Ok(())
    }

    /// Marks the indices whose delete counters moved beyond essync's own deletes.
    fn watch_deletes(
        &mut self,
        before: &std::collections::BTreeMap<String, crate::elasticsearch::DeleteCounters>,
        after: &std::collections::BTreeMap<String, crate::elasticsearch::DeleteCounters>,
    ) {
        let watch = &mut self.checkpoint.deletes;
        let suspect = deletes::suspects(before, after, &watch.own);
        // Both counts start again with the plan that read them.
        watch.own.clear();
        watch.written.clear();
        if !suspect.is_empty() {
            tracing::debug!(
                "deletes may have happened in {}; their ids are checked as the sweep passes",
                suspect.iter().cloned().collect::<Vec<_>>().join(", ")
            );
            let sweep = &self.checkpoint.cassandra.sweep;
            deletes::watch(watch, suspect, sweep.passes, sweep.position.is_some());
        }
    }

    /// Follows the Cassandra change feed: the recent rows, then the write-time sweep (at most
    /// the feed's budget of rows, and no page more once the round has used its period; a
    /// whole pass while reconciling).
    async fn follow_cassandra(&mut self) -> Result<(), SyncError> {
        let started = std::time::Instant::now();
        if self.follow_recent().await? {
            return Ok(());
        }
        tracing::debug!(
            "recent rows read in {:.3}s",
            started.elapsed().as_secs_f64()
        );
        let ctx = self.ctx;
        let full = self.checkpoint.cassandra.reconciling();
        if !full && (self.feed.sweep_rows == 0 || self.sweep_waits()) {
            return Ok(());
        }
        *self.swept_at = Some(std::time::Instant::now());
        // A reconciliation reads whole rows, a page at a time; the write-time sweep reads only
        // ids and write times, in larger pages (fewer round trips for the same rows).
        let page_rows = ctx.cassandra.config().page_size.max(1) as usize;
        let limits = SweepLimits {
            page_rows: if full {
                page_rows
            } else {
                page_rows * STAMP_PAGES
            },
            budget: self.feed.sweep_rows,
            full,
            until: self.sweep_until,
            range: self.range,
        };
        let sweep = &mut self.checkpoint.cassandra.sweep;
        sweep.begin_page(ctx.now.timestamp_micros());
        let pages = ctx.cassandra.sweep(sweep.position.clone(), limits);
        each_page(pages, async |page| self.sweep_page(page).await).await?;
        Ok(())
    }

    /// Whether the round has used its period and the sweep took a page recently enough to
    /// wait for a quieter round.
    fn sweep_waits(&self) -> bool {
        let now = std::time::Instant::now();
        let used = self.sweep_until.is_some_and(|until| now >= until);
        let recent = self
            .swept_at
            .is_some_and(|at| now.duration_since(at) < SWEEP_AT_LEAST_EVERY);
        if used && recent {
            tracing::debug!("the round used its period: the sweep waits for a quieter round");
        }
        used && recent
    }

    /// The rows whose `timestamp` is recent: their ids and write times first, then, in full,
    /// the rows not known unchanged since this process synced them. Returns whether the round
    /// was stopped.
    async fn follow_recent(&mut self) -> Result<bool, SyncError> {
        let ctx = self.ctx;
        let page_size = ctx.cassandra.config().page_size.max(1) as usize;
        let window_ms = self.feed.safety_window.as_millis() as i64;
        let until = ctx.now.timestamp_millis() + window_ms;
        let since = self.checkpoint.cassandra.recent_since;
        let pages = ctx
            .cassandra
            .read_recent(since, until, self.range)
            .chunks(page_size * STAMP_PAGES)
            .map(|chunk| chunk.into_iter().collect::<Result<Vec<_>, _>>());
        let mut building = false;
        let stopped = each_page(pages.map(Ok::<_, SyncError>), async |stamps| {
            let mut stamps = match stamps {
                Ok(stamps) => stamps,
                Err(e) if e.is_index_building() => {
                    building = true;
                    return Ok(true);
                }
                Err(e) => return Err(e.into()),
            };
            stamps.retain(|&(id, _)| self.range.holds_id(id));
            let count = stamps.len() as u64;
            self.report.cassandra.read += count;
            let (changed, ledger) = self.changed_rows(stamps).await?;
            self.report.unchanged += count.saturating_sub(changed.len() as u64);
            if !changed.is_empty() {
                let reads = ctx.cassandra.get_by_ids(&changed).await?;
                let source = Source::Cassandra {
                    reads: reads.into_values().collect(),
                    recognise_own: true,
                    ledger: Some(ledger),
                };
                self.batch(source).await?;
            }
            self.page_done(Side::Cassandra, count).await
        })
        .await?;
        if building {
            // The sweep covers this round; the recent rows are read again, from the same
            // point, once the index is built.
            tracing::info!(
                "the time index of {} is still being built; this round finds changes by the sweep",
                self.ctx.cassandra.table()
            );
            return Ok(false);
        }
        if stopped {
            return Ok(true);
        }
        // Every recent row is read: the next round re-reads only the window.
        let next = self.ctx.now.timestamp_millis() - window_ms;
        let recent = &mut self.checkpoint.cassandra.recent_since;
        *recent = (*recent).max(next);
        self.page_done(Side::Cassandra, 0).await
    }

    /// Of recent rows (ids and write times), those changed since they were last synced, with
    /// their ledger entries: a row at the write time this process recorded lately, or the
    /// ledger holds, is unchanged (one process writes a sync's ledger, and every write to a row
    /// changes its write time), and is not read in full.
    async fn changed_rows(
        &self,
        mut stamps: Vec<(Uuid, Option<i64>)>,
    ) -> Result<(Vec<Uuid>, KnownLedger), SyncError> {
        stamps.retain(|&(id, written_at)| !self.state.synced_lately(id, written_at));
        // A row written again while it was paged: its latest write time counts.
        stamps.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        stamps.dedup_by_key(|stamp| stamp.0);
        let ids: Vec<Uuid> = stamps.iter().map(|stamp| stamp.0).collect();
        let mut entries = if ids.is_empty() {
            HashMap::new()
        } else {
            self.state.ledger(&ids).await?
        };
        stamps.retain(|(id, written_at)| {
            !entries
                .get(id)
                .is_some_and(|entry| entry.holds_cassandra_write(*written_at))
        });
        let changed: Vec<Uuid> = stamps.into_iter().map(|stamp| stamp.0).collect();
        entries.retain(|id, _| changed.binary_search(id).is_ok());
        let covered = changed.iter().copied().collect();
        Ok((changed, KnownLedger { entries, covered }))
    }

    /// Syncs one page of the sweep (see [`sweep`]) and saves where the sweep is. Returns
    /// whether to stop.
    async fn sweep_page(&mut self, page: SweepPage) -> Result<bool, SyncError> {
        let SweepPage { start, mut page } = page;
        let (from, to) = sweep::ledger_range(start.as_ref(), &page, self.range);
        let started = std::time::Instant::now();
        let ledger = self.state.ledger_range(from, to).await?;
        tracing::debug!(
            "sweep page of {} rows: ledger range of {} read in {:.3}s",
            page.rows.len(),
            ledger.len(),
            started.elapsed().as_secs_f64()
        );
        let examined = page.rows.len() as u64;
        let since = self.checkpoint.cassandra.sweep.written_since;
        let reconciliation = self.checkpoint.reconciliation.as_ref();
        let began = reconciliation.map(|r| r.started_at.timestamp_micros());
        let swept = sweep::split(start.as_ref(), &mut page, ledger, to, since, began);
        self.sync_swept(swept).await?;
        let window_us = self.feed.safety_window.as_micros() as i64;
        let sweep = &mut self.checkpoint.cassandra.sweep;
        sweep.advance(page.position, page.done, window_us);
        if page.done {
            let passes = sweep.passes;
            deletes::clear_checked(&mut self.checkpoint.deletes, passes);
        }
        self.page_done(Side::Cassandra, examined).await
    }

    /// Syncs what a sweep page found: the rows (read by the page, or by id), then the ids
    /// deleted on either side.
    async fn sync_swept(&mut self, swept: sweep::Swept) -> Result<(), SyncError> {
        let batch_size = self.ctx.cassandra.config().page_size.max(1) as usize;
        self.report.unchanged += swept.own;
        let gone = sweep::gone_from_elasticsearch(
            self.ctx.elasticsearch,
            &swept,
            &self.checkpoint.deletes.suspects,
        )
        .await?;
        let ledger = Some(swept.known);
        let read_by_page = !swept.reads.is_empty();
        if read_by_page {
            self.report.cassandra.read += swept.reads.len() as u64;
            let source = Source::Cassandra {
                reads: swept.reads,
                recognise_own: false,
                ledger: ledger.clone(),
            };
            self.batch(source).await?;
        }
        for chunk in swept.changed.chunks(batch_size) {
            let mut found = self.ctx.cassandra.get_by_ids(chunk).await?;
            let reads: Vec<_> = chunk.iter().filter_map(|id| found.remove(id)).collect();
            self.report.cassandra.read += reads.len() as u64;
            let source = Source::Cassandra {
                reads,
                recognise_own: true,
                ledger: ledger.clone(),
            };
            self.batch(source).await?;
        }
        let deleted: Vec<Uuid> = swept.deleted.into_iter().chain(gone).collect();
        if !deleted.is_empty() {
            tracing::debug!("the sweep found {} id(s) deleted on a side", deleted.len());
        }
        for chunk in deleted.chunks(batch_size) {
            self.batch(Source::Ids(chunk.to_vec())).await?;
        }
        Ok(())
    }

    /// Whether a document read from Elasticsearch is this sync's: its id's token is in the
    /// range (one whose `_id` is no uuid goes to the first range, which reports it).
    fn keeps<V>(&self, read: &Read<V>) -> bool {
        match read {
            Read::Document(stored) => self.range.holds_id(stored.document.id),
            Read::Bad(bad) => match bad.id {
                Some(id) => self.range.holds_id(id),
                None => self.range.index == 0,
            },
        }
    }

    /// Syncs a batch and keeps track of essync's own deletes in Elasticsearch.
    async fn batch(&mut self, source: Source) -> Result<(), SyncError> {
        // A process that lost its lease writes no more.
        self.state.confirm_lease().await?;
        let Effects {
            elasticsearch_deletes,
            elasticsearch_operations,
        } = sync_batch(self.ctx, self.state, self.report, source).await?;
        let watch = &mut self.checkpoint.deletes;
        for (index, count) in elasticsearch_deletes {
            *watch.own.entry(index).or_default() += count;
        }
        for (index, count) in elasticsearch_operations {
            *watch.written.entry(index).or_default() += count;
        }
        Ok(())
    }

    /// After a page: saves the checkpoint, reports progress. Returns whether to stop.
    async fn page_done(&mut self, side: Side, count: u64) -> Result<bool, SyncError> {
        self.state.save(self.checkpoint).await?;
        if let Some(progress) = self.progress {
            progress.read(side, count);
        }
        if self.stop.is_set() {
            self.report.interrupted = true;
            return Ok(true);
        }
        Ok(false)
    }
}
