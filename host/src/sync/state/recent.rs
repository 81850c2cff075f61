//! What this process recorded in the ledger lately: for each id whose document carries a recent
//! timestamp, the write time of the Cassandra row it recorded as synced.
//!
//! The Cassandra change feed re-reads a safety window of recent rows every round (see
//! [`crate::cassandra::feed`]); under a steady load most of those rows are ones the previous
//! rounds already synced, or essync's own copies. The feed first reads only each row's id and
//! write time, and a row whose write time is the one recorded here is unchanged since it was
//! synced: it is not read in full, and its ledger entry is not read. This holds because one
//! process at a time writes a sync's ledger (the lease), and a row's write time changes with
//! every write to it. A process that starts knows nothing: its first rounds read in full.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// The ids recorded lately, each with the Cassandra write time recorded.
#[derive(Debug)]
pub(crate) struct RecentWrites {
    entries: HashMap<Uuid, (i64, Instant)>,
    /// How long an entry can serve: the safety window and a margin for long rounds. Only
    /// documents whose timestamp is at most this old are noted (older ones are not in the
    /// feed's recent range), which keeps a backfill from filling the record.
    keep: Duration,
    pruned_at: Instant,
}

impl RecentWrites {
    /// A record whose entries serve for `keep`.
    pub fn new(keep: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            keep,
            pruned_at: Instant::now(),
        }
    }

    /// Notes that `id`'s row, written at `written_at`, holds the synced version of a document
    /// whose timestamp is `timestamp` (ms since the epoch), as of `now_ms`.
    pub fn note(&mut self, id: Uuid, written_at: Option<i64>, timestamp: Option<i64>, now_ms: i64) {
        let recent = timestamp.is_some_and(|t| t >= now_ms - self.keep.as_millis() as i64);
        match written_at {
            Some(written_at) if recent => {
                self.entries.insert(id, (written_at, Instant::now()));
            }
            _ => self.forget(id),
        }
        self.prune();
    }

    /// Forgets `id` (its sync failed, or it is gone).
    pub fn forget(&mut self, id: Uuid) {
        self.entries.remove(&id);
    }

    /// Whether `id`'s row, written at `written_at`, is the one recorded as synced.
    pub fn holds(&self, id: Uuid, written_at: Option<i64>) -> bool {
        match (self.entries.get(&id), written_at) {
            (Some((recorded, at)), Some(written_at)) => {
                *recorded == written_at && at.elapsed() < self.keep
            }
            _ => false,
        }
    }

    /// How many ids are noted.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops the entries past their use, at most once per `keep`.
    fn prune(&mut self) {
        if self.pruned_at.elapsed() < self.keep {
            return;
        }
        let keep = self.keep;
        self.entries.retain(|_, (_, at)| at.elapsed() < keep);
        self.pruned_at = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_known_at_the_write_time_recorded_and_no_other() {
        let mut recent = RecentWrites::new(Duration::from_secs(60));
        let id = Uuid::new_v4();
        recent.note(id, Some(10), Some(1_000_000), 1_000_000);
        assert!(recent.holds(id, Some(10)));
        assert!(!recent.holds(id, Some(11)), "written again since");
        assert!(!recent.holds(id, None));
        assert!(!recent.holds(Uuid::new_v4(), Some(10)));
        recent.forget(id);
        assert!(!recent.holds(id, Some(10)));
    }

    #[test]
    fn documents_with_old_timestamps_are_not_noted() {
        let mut recent = RecentWrites::new(Duration::from_secs(60));
        let (old, new) = (Uuid::new_v4(), Uuid::new_v4());
        let now = 10_000_000;
        recent.note(old, Some(1), Some(now - 61_000), now);
        recent.note(new, Some(1), Some(now - 59_000), now);
        assert_eq!(recent.len(), 1);
        assert!(recent.holds(new, Some(1)));
        // A later record of an old version replaces what was noted.
        recent.note(new, Some(2), None, now);
        assert!(!recent.holds(new, Some(1)) && !recent.holds(new, Some(2)));
    }
}
