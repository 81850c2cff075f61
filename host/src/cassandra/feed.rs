//! The change feed: "what changed since checkpoint C", from two reads that cover each other.
//!
//! Cassandra cannot select rows by write time, and a row's own `timestamp` column says what its
//! writer claims, not when the write happened. So a round reads:
//!
//! 1. **recent rows**, by a range query on `timestamp` served by a storage-attached index (SAI):
//!    rows whose timestamp is at or after the checkpoint, which starts each round a safety
//!    window before the previous round's start so clock skew between writers and late
//!    arrivals are re-read (harmless: writes are idempotent and equal versions are skipped).
//!    It reads ids and write times only; the sync reads in full the rows it does not know
//!    unchanged since it synced them;
//! 2. **the write-time sweep**: a scan in token order that reads only ids and cell write times
//!    (`WRITETIME`), at most a budget of rows per round, and picks the rows written since the
//!    sweep's threshold; a pass over the whole ring moves the threshold to the pass's start
//!    minus the safety window. This catches what the first read cannot: a write that carries
//!    an old timestamp (a backdating or skewed writer), a row with no timestamp at all.
//!
//! A full reconciliation (`-s`) is a sweep pass in which every row counts as changed, read with
//! its content. Positions are tokens, so a pass resumes where it stopped after a restart.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How far the change feed has read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CassandraCheckpoint {
    /// Recent-rows read: rows whose `timestamp` is at or after this (ms since the epoch).
    pub recent_since: i64,
    /// The write-time sweep.
    pub sweep: Sweep,
}

/// Where the write-time sweep is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    /// Rows with a cell written at or after this time (µs since the epoch) count as changed;
    /// `None` makes every row count (a full reconciliation pass).
    pub written_since: Option<i64>,
    /// When the current pass started (µs since the epoch).
    pub pass_started: i64,
    /// Where the current pass stopped; `None` before its first page.
    pub position: Option<TokenPosition>,
    /// How many passes were completed.
    #[serde(default)]
    pub passes: u64,
}

/// A position in token order: the last token read, and the ids read at that token (distinct
/// partitions can share a token, so the next page starts at the token, skipping these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPosition {
    /// The last token read.
    pub token: i64,
    /// The ids already read at that token.
    pub ids: Vec<Uuid>,
}

impl CassandraCheckpoint {
    /// The checkpoint of a sync that starts now and leaves existing rows alone.
    pub fn starting_at(now: DateTime<Utc>) -> Self {
        Self {
            recent_since: now.timestamp_millis(),
            sweep: Sweep {
                written_since: Some(now.timestamp_micros()),
                pass_started: now.timestamp_micros(),
                position: None,
                passes: 0,
            },
        }
    }

    /// The checkpoint of a sync that starts now and reconciles every existing row first.
    pub fn reconciling_from(now: DateTime<Utc>) -> Self {
        let mut checkpoint = Self::starting_at(now);
        checkpoint.sweep.written_since = None;
        checkpoint
    }

    /// Whether a full reconciliation pass is under way.
    pub fn reconciling(&self) -> bool {
        self.sweep.written_since.is_none()
    }
}

impl Sweep {
    /// Called before reading a page at `now_us`: a pass that has not read anything yet starts
    /// now.
    pub fn begin_page(&mut self, now_us: i64) {
        if self.position.is_none() {
            self.pass_started = now_us;
        }
    }

    /// Records a page read up to `position`; `done` ends the pass, which moves the threshold to
    /// the pass's start minus `window_us` (never back): a row written while the pass ran,
    /// behind its position, is read by the next pass.
    pub fn advance(&mut self, position: Option<TokenPosition>, done: bool, window_us: i64) {
        if done {
            // Never back past the previous threshold: rows written before it were the concern
            // of earlier passes (or, for the first, existed before the sync started).
            let next = self.pass_started - window_us;
            self.written_since = Some(self.written_since.map_or(next, |w| w.max(next)));
            self.position = None;
            self.passes += 1;
        } else if position.is_some() {
            self.position = position;
        }
    }
}

/// One row of a token-ordered scan.
#[derive(Debug)]
pub struct ScanRow {
    /// The row's token.
    pub token: i64,
    /// The row's id.
    pub id: Uuid,
    /// The newest write time of its cells (µs since the epoch).
    pub written_at: Option<i64>,
    /// The whole row, when the scan read it.
    pub read: Option<crate::store::Read<super::CassandraVersion>>,
}

/// One page of a token-ordered scan.
#[derive(Debug)]
pub struct ScanPage {
    /// The rows not read before, in token order.
    pub rows: Vec<ScanRow>,
    /// Where the scan is after this page.
    pub position: Option<TokenPosition>,
    /// Whether the scan reached the end of the ring.
    pub done: bool,
}

/// Continues a token position with the rows of a page (in token order): returns the rows not
/// read before, and the new position.
pub(crate) fn continue_position<T>(
    position: Option<&TokenPosition>,
    rows: Vec<(i64, Uuid, T)>,
) -> (Vec<(i64, Uuid, T)>, Option<TokenPosition>) {
    let mut next = position.cloned();
    let mut fresh = Vec::with_capacity(rows.len());
    for (token, id, row) in rows {
        if let Some(p) = &position
            && p.token == token
            && p.ids.contains(&id)
        {
            continue;
        }
        match &mut next {
            Some(p) if p.token == token => p.ids.push(id),
            _ => {
                next = Some(TokenPosition {
                    token,
                    ids: vec![id],
                })
            }
        }
        fresh.push((token, id, row));
    }
    (fresh, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_page_starts_only_if_it_would_end_within_the_period() {
        use std::time::{Duration, Instant};
        let now = Instant::now();
        let previous = now - Duration::from_millis(300);
        // A page took 0.3 s: with 0.5 s left another fits, with 0.2 s it does not.
        assert!(!would_overrun(
            Some(now + Duration::from_millis(500)),
            previous
        ));
        assert!(would_overrun(
            Some(now + Duration::from_millis(200)),
            previous
        ));
        assert!(would_overrun(Some(now - Duration::from_millis(1)), now));
        // No period (a single round run without one): no limit.
        assert!(!would_overrun(None, previous));
    }

    #[test]
    fn positions_skip_rows_already_read_at_the_same_token() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (fresh, position) = continue_position(None, vec![(1, a, ()), (5, b, ())]);
        assert_eq!(fresh.len(), 2);
        assert_eq!(
            position,
            Some(TokenPosition {
                token: 5,
                ids: vec![b]
            })
        );
        // The next page starts at token 5 again: b is skipped, c (same token) is new.
        let (fresh, position) = continue_position(position.as_ref(), vec![(5, b, ()), (5, c, ())]);
        assert_eq!(fresh.len(), 1);
        assert_eq!(
            position,
            Some(TokenPosition {
                token: 5,
                ids: vec![b, c]
            })
        );
    }

    #[test]
    fn the_threshold_never_moves_back_before_the_start() {
        let start = DateTime::from_timestamp_micros(10_000_000).unwrap();
        let mut checkpoint = CassandraCheckpoint::starting_at(start);
        checkpoint.sweep.begin_page(10_500_000);
        checkpoint.sweep.advance(None, true, 5_000_000);
        assert_eq!(checkpoint.sweep.written_since, Some(10_000_000));
    }

    #[test]
    fn a_finished_pass_moves_the_threshold_to_its_start_minus_the_window() {
        let now = DateTime::from_timestamp_micros(10_000_000).unwrap();
        let mut checkpoint = CassandraCheckpoint::reconciling_from(now);
        assert!(checkpoint.reconciling());
        checkpoint.sweep.begin_page(11_000_000);
        let position = Some(TokenPosition {
            token: 3,
            ids: vec![],
        });
        checkpoint.sweep.advance(position, false, 1_000);
        checkpoint.sweep.begin_page(12_000_000);
        assert!(checkpoint.reconciling());
        checkpoint.sweep.advance(None, true, 1_000);
        assert_eq!(checkpoint.sweep.written_since, Some(11_000_000 - 1_000));
        assert_eq!(checkpoint.sweep.position, None);
    }
}

/// How much a round's write-time sweep reads.
#[derive(Debug, Clone, Copy)]
pub struct SweepLimits {
    /// Rows per page (each page is one request).
    pub page_rows: usize,
    /// The most rows the sweep examines this round (ignored by a full pass).
    pub budget: usize,
    /// A reconciliation pass: whole rows, and the whole ring whatever the budget and the time.
    pub full: bool,
    /// No page starts that would end after this instant, at the pace of the page before (the
    /// first is always read).
    pub until: Option<std::time::Instant>,
    /// The part of the ring swept (a pass ends at its last token).
    pub range: super::TokenRange,
}

/// Whether a page started now, taking as long as the one before (from its start to now: its
/// read, and its rows' sync beside the next read), would end after `until`.
fn would_overrun(until: Option<std::time::Instant>, previous: std::time::Instant) -> bool {
    let now = std::time::Instant::now();
    until.is_some_and(|until| now + now.saturating_duration_since(previous) > until)
}

/// One page of the sweep, with where it started.
#[derive(Debug)]
pub struct SweepPage {
    /// Where the page started (`None`: the start of the ring).
    pub start: Option<TokenPosition>,
    /// What it read.
    pub page: ScanPage,
}

impl super::CassandraStore {
    /// The pages of the write-time sweep from `position`, in token order, until the end of the
    /// ring or the end of the limits. The first page is always read.
    pub fn sweep(
        &self,
        position: Option<TokenPosition>,
        limits: SweepLimits,
    ) -> impl futures::Stream<Item = Result<SweepPage, super::CassandraError>> + '_ {
        let next = Some((position, limits.budget, None));
        futures::stream::unfold(next, move |next| async move {
            let (start, budget, previous) = next?;
            if let Some(previous) = previous
                && !limits.full
                && would_overrun(limits.until, previous)
            {
                tracing::debug!(
                    "the round used its period: the sweep goes on from here next round"
                );
                return None;
            }
            let started = std::time::Instant::now();
            let rows = if limits.full {
                limits.page_rows
            } else {
                limits.page_rows.min(budget)
            };
            let page = match self
                .scan_page(start.as_ref(), rows, limits.full, limits.range)
                .await
            {
                Ok(page) => page,
                Err(e) => return Some((Err(e), None)),
            };
            let budget = budget.saturating_sub(rows);
            let more = !page.done && (limits.full || budget > 0);
            let next = more.then(|| (page.position.clone(), budget, Some(started)));
            Some((Ok(SweepPage { start, page }), next))
        })
    }
}
