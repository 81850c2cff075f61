//! One round's reading: the failed ids due again, the Elasticsearch change feed, then the
//! Cassandra change feed (recent rows, then the write-time sweep beside the ledger), each page
//! synced as a batch and followed by a saved checkpoint.
//!
//! The sweep reads the table and the ledger in the same token order, a page at a time:
//!
//! - a row written since the sweep's threshold is read and synced, unless its write time is
//!   the one essync's own write left (the ledger says so);
//! - an id in the ledger but no longer in the table was deleted in Cassandra;
//! - an id of an index suspected of deletes in Elasticsearch (see [`super::deletes`]) is looked
//!   up there; if it is gone, it was deleted in Elasticsearch.

use std::collections::HashSet;

use futures::StreamExt;
use uuid::Uuid;

use super::batch::{Context, Effects, KnownLedger, Source, sync_batch};
use super::report::RoundReport;
use super::state::{Checkpoint, LedgerEntry, State};
use super::{Progress, Stop, SyncError, deletes};
use crate::cassandra::{FeedOptions, ScanPage};
use crate::store::{Lookup, Side};

/// Pages (of the Cassandra page size, 1,000 rows) per page of the write-time sweep, which reads only
/// ids and write times: the table's and the ledger's token ranges are read in fewer, larger
/// requests. The rows that changed are then synced a page at a time.
const SWEEP_PAGES: usize = 5;

/// What a round works on.
pub(crate) struct Round<'r, 'c> {
    pub ctx: &'r Context<'c>,
    pub state: &'r mut State,
    pub report: &'r mut RoundReport,
    pub checkpoint: &'r mut Checkpoint,
    pub feed: FeedOptions,
    /// When the round's period is used up: the write-time sweep takes no page after it (it
    /// always takes one), so that a busy round does not overrun its period for the sweep's
    /// sake. A reconciliation reads its whole pass regardless.
    pub sweep_until: Option<std::time::Instant>,
    pub progress: Option<&'r dyn Progress>,
    pub stop: &'r Stop,
}

impl Round<'_, '_> {
    /// Syncs the ids recorded as failed whose backoff has passed.
    pub async fn retry(&mut self, limit: usize) -> Result<(), SyncError> {
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
    pub async fn follow_elasticsearch(&mut self) -> Result<bool, SyncError> {
        let ctx = self.ctx;
        let from = self.checkpoint.elasticsearch.clone();
        let held = self.state.feed_held(ctx.now);
        let mut pages = std::pin::pin!(ctx.elasticsearch.changes_holding(
            &from,
            ctx.now,
            held.clone(),
            self.checkpoint.deletes.written.clone(),
        ));
        let mut failed = std::collections::BTreeSet::new();
        let mut first = true;
        let mut next = pages.next().await;
        while let Some(page) = next {
            let page = page?;
            for failure in &page.failed {
                failed.insert(failure.location.clone());
                self.report.errors += 1;
                if self.state.fail_feed(failure, ctx.now).await? {
                    tracing::warn!(
                        "cannot read Elasticsearch's {}: {}; skipped (its position is kept) and tried again later",
                        failure.location,
                        failure.reason
                    );
                }
            }
            if first {
                first = false;
                self.watch_deletes(&from.counters, &page.checkpoint.counters);
            }
            let count = page.reads.len() as u64;
            self.report.elasticsearch.read += count;
            // The next page is read while this one is synced: the slower server sets the pace.
            let (synced, following) = tokio::join!(
                async {
                    if count > 0 {
                        self.batch(Source::Elasticsearch(page.reads)).await
                    } else {
                        Ok(())
                    }
                },
                pages.next()
            );
            synced?;
            self.checkpoint.elasticsearch = page.checkpoint;
            if self.page_done(Side::Elasticsearch, count).await? {
                return Ok(false);
            }
            next = following;
        }
        self.state.feed_recovered(&failed, &held, ctx.now).await?;
        if let Some(reconciliation) = &mut self.checkpoint.reconciliation {
            reconciliation.elasticsearch_done = true;
        }
        Ok(true)
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
    pub async fn follow_cassandra(&mut self) -> Result<(), SyncError> {
        let started = std::time::Instant::now();
        if self.follow_recent().await? {
            return Ok(());
        }
        tracing::debug!(
            "recent rows read in {:.3}s",
            started.elapsed().as_secs_f64()
        );
        let ctx = self.ctx;
        let window_us = self.feed.safety_window.as_micros() as i64;
        let full = self.checkpoint.cassandra.reconciling();
        // A reconciliation reads whole rows, a page at a time; the write-time sweep reads only
        // ids and write times, in larger pages (fewer round trips for the same rows).
        let page_size =
            ctx.cassandra.config().page_size.max(1) as usize * if full { 1 } else { SWEEP_PAGES };
        // How many rows the next page may examine (all of a page while reconciling).
        let mut budget = self.feed.sweep_rows;
        let limit = |budget: &mut usize| {
            let limit = if full {
                page_size
            } else {
                page_size.min(*budget)
            };
            *budget = budget.saturating_sub(limit);
            limit
        };
        if !full && budget == 0 {
            return Ok(());
        }
        self.checkpoint
            .cassandra
            .sweep
            .begin_page(ctx.now.timestamp_micros());
        let mut position = self.checkpoint.cassandra.sweep.position.clone();
        let mut page = ctx
            .cassandra
            .scan_page(position.as_ref(), limit(&mut budget), full)
            .await?;
        loop {
            let done = page.done;
            let overrun = self
                .sweep_until
                .is_some_and(|until| std::time::Instant::now() >= until);
            if overrun && !done && !full && budget > 0 {
                tracing::debug!(
                    "the round used its period: the sweep goes on from here next round"
                );
            }
            let more = !done && (full || (budget > 0 && !overrun));
            let next_limit = if more { limit(&mut budget) } else { 0 };
            // The next page is scanned while this one is synced.
            let (synced, following) =
                tokio::join!(self.sweep_page(position.as_ref(), &page, full), async {
                    if more {
                        Some(
                            ctx.cassandra
                                .scan_page(page.position.as_ref(), next_limit, full)
                                .await,
                        )
                    } else {
                        None
                    }
                });
            synced?;
            let examined = page.rows.len() as u64;
            self.checkpoint
                .cassandra
                .sweep
                .advance(page.position.clone(), done, window_us);
            if done {
                let passes = self.checkpoint.cassandra.sweep.passes;
                deletes::clear_checked(&mut self.checkpoint.deletes, passes);
            }
            if self.page_done(Side::Cassandra, examined).await? {
                return Ok(());
            }
            match following {
                Some(next) => {
                    position = page.position.take();
                    page = next?;
                }
                None => return Ok(()),
            }
        }
    }

    /// The rows whose `timestamp` is recent. Returns whether the round was stopped.
    async fn follow_recent(&mut self) -> Result<bool, SyncError> {
        let ctx = self.ctx;
        let page_size = ctx.cassandra.config().page_size.max(1) as usize;
        let window_ms = self.feed.safety_window.as_millis() as i64;
        let until = ctx.now.timestamp_millis() + window_ms;
        let since = self.checkpoint.cassandra.recent_since;
        let mut pages = std::pin::pin!(ctx.cassandra.read_recent(since, until).chunks(page_size));
        let mut next = pages.next().await;
        while let Some(chunk) = next {
            let reads = match chunk.into_iter().collect::<Result<Vec<_>, _>>() {
                Ok(reads) => reads,
                Err(e) if e.is_index_building() => {
                    // The sweep covers this round; the recent rows are read again, from the
                    // same point, once the index is built.
                    tracing::info!(
                        "the time index of {} is still being built; this round finds changes by the sweep",
                        self.ctx.cassandra.table()
                    );
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            };
            let count = reads.len() as u64;
            self.report.cassandra.read += count;
            // The next rows are read while these are synced.
            let (synced, following) = tokio::join!(
                self.batch(Source::Cassandra {
                    reads,
                    recognise_own: true,
                    ledger: None,
                }),
                pages.next()
            );
            synced?;
            if self.page_done(Side::Cassandra, count).await? {
                return Ok(true);
            }
            next = following;
        }
        // Every recent row is read: the next round re-reads only the window.
        let next = self.ctx.now.timestamp_millis() - window_ms;
        let recent = &mut self.checkpoint.cassandra.recent_since;
        *recent = (*recent).max(next);
        self.page_done(Side::Cassandra, 0).await
    }

    /// Syncs one page of the sweep: the rows that changed, the ids deleted in Cassandra, and
    /// the ids of suspect indices gone from Elasticsearch.
    async fn sweep_page(
        &mut self,
        position: Option<&crate::cassandra::TokenPosition>,
        page: &ScanPage,
        full: bool,
    ) -> Result<(), SyncError> {
        // A sweep page holds several batches' worth of ids.
        let batch_size = self.ctx.cassandra.config().page_size.max(1) as usize;
        let from = position.map(|p| p.token).unwrap_or(i64::MIN);
        // The ledger's ids at the page's last token wait for the next page, which starts there
        // (the table may hold more rows at that token than this page read).
        let to = match page.rows.last() {
            _ if page.done => i64::MAX,
            Some(last) => last.token.saturating_sub(1),
            None => from.saturating_sub(1),
        };
        let started = std::time::Instant::now();
        let ledger = self.state.ledger_range(from, to).await?;
        tracing::debug!(
            "sweep page of {} rows: ledger range of {} read in {:.3}s",
            page.rows.len(),
            ledger.len(),
            started.elapsed().as_secs_f64()
        );
        // The ledger entries of the rows this page covers (those before its last token), which
        // its batches need not read again.
        let known = KnownLedger {
            entries: ledger
                .iter()
                .map(|(_, entry)| (entry.id, entry.clone()))
                .collect(),
            covered: page
                .rows
                .iter()
                .filter(|row| row.token <= to)
                .map(|row| row.id)
                .collect(),
        };
        let in_table: HashSet<Uuid> = page
            .rows
            .iter()
            .map(|row| row.id)
            .chain(position.into_iter().flat_map(|p| p.ids.iter().copied()))
            .collect();
        let by_id: std::collections::HashMap<Uuid, &LedgerEntry> =
            ledger.iter().map(|(_, entry)| (entry.id, entry)).collect();

        // Rows to sync.
        let since = self.checkpoint.cassandra.sweep.written_since;
        if full {
            // A reconciliation looks at every row beside its Elasticsearch version, essync's
            // own earlier writes included: that is how it repairs whatever slipped through.
            // Rows essync wrote during this reconciliation were just decided with both sides
            // in view; a change since is the next rounds' to find, as after any write.
            let started = self
                .checkpoint
                .reconciliation
                .as_ref()
                .map(|r| r.started_at.timestamp_micros());
            let mut reads = Vec::with_capacity(page.rows.len());
            for row in &page.rows {
                let this_pass = row.written_at.zip(started).is_some_and(|(w, s)| w >= s);
                if this_pass
                    && by_id
                        .get(&row.id)
                        .is_some_and(|e| e.holds_cassandra_write(row.written_at))
                {
                    self.report.unchanged += 1;
                } else if let Some(read) = &row.read {
                    reads.push(read.clone());
                }
            }
            self.report.cassandra.read += reads.len() as u64;
            if !reads.is_empty() {
                self.batch(Source::Cassandra {
                    reads,
                    recognise_own: false,
                    ledger: Some(known.clone()),
                })
                .await?;
            }
        } else {
            let changed: Vec<Uuid> = page
                .rows
                .iter()
                .filter(|row| {
                    !by_id
                        .get(&row.id)
                        .is_some_and(|e| e.holds_cassandra_write(row.written_at))
                        && row
                            .written_at
                            .zip(since)
                            .is_some_and(|(written, since)| written >= since)
                })
                .map(|row| row.id)
                .collect();
            for chunk in changed.chunks(batch_size) {
                let mut found = self.ctx.cassandra.get_by_ids(chunk).await?;
                let reads: Vec<_> = chunk.iter().filter_map(|id| found.remove(id)).collect();
                self.report.cassandra.read += reads.len() as u64;
                self.batch(Source::Cassandra {
                    reads,
                    recognise_own: true,
                    ledger: Some(known.clone()),
                })
                .await?;
            }
        }

        // Deletes in Cassandra: in the ledger, no longer in the table.
        let deleted: Vec<Uuid> = ledger
            .iter()
            .map(|(_, entry)| entry.id)
            .filter(|id| !in_table.contains(id))
            .collect();
        // Deletes in Elasticsearch: the ids of suspect indices it no longer holds.
        let suspects = &self.checkpoint.deletes.suspects;
        let wanted: Vec<(Uuid, Option<String>)> = ledger
            .iter()
            .filter(|(_, entry)| in_table.contains(&entry.id))
            .filter_map(|(_, entry)| {
                let index = &entry.base.as_ref()?.index;
                suspects
                    .contains_key(index)
                    .then(|| (entry.id, Some(index.clone())))
            })
            .collect();
        let mut gone = Vec::new();
        if !wanted.is_empty() {
            for (id, lookup) in self.ctx.elasticsearch.locate(&wanted).await? {
                if lookup == Lookup::Absent {
                    gone.push(id);
                }
            }
        }
        if !deleted.is_empty() || !gone.is_empty() {
            tracing::debug!(
                "the sweep found {} id(s) deleted in Cassandra and {} in Elasticsearch",
                deleted.len(),
                gone.len()
            );
            let ids: Vec<Uuid> = deleted.into_iter().chain(gone).collect();
            for chunk in ids.chunks(batch_size) {
                self.batch(Source::Ids(chunk.to_vec())).await?;
            }
        }
        Ok(())
    }

    /// Syncs a batch and keeps track of essync's own deletes in Elasticsearch.
    async fn batch(&mut self, source: Source) -> Result<(), SyncError> {
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
