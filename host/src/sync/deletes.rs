//! Where Elasticsearch may have deleted documents. A search cannot see a deleted document, but
//! `_stats` counts every index's delete operations: an index whose count moved by more than
//! essync's own deletes, whose shards were reopened (the counters start again; their primary
//! terms move), or that went away (deleted, closed) is *suspect*. The write-time sweep then looks
//! up, in Elasticsearch, the ledger's ids of the suspect indices as it passes over them (see
//! [`super::round`]); a round in which nothing was deleted checks nothing.
//!
//! A suspicion ends when a whole sweep pass that started after it is done: then every id of
//! the index has been looked up once since.

use std::collections::{BTreeMap, BTreeSet};

use crate::elasticsearch::DeleteCounters;

use super::state::DeleteWatch;

/// The indices (by name) whose deletes are not explained by essync's own: `before` and `after`
/// are the counters of two consecutive plans (by index uuid), `own` essync's deletes between them.
pub(crate) fn suspects(
    before: &BTreeMap<String, DeleteCounters>,
    after: &BTreeMap<String, DeleteCounters>,
    own: &BTreeMap<String, i64>,
) -> BTreeSet<String> {
    let mut suspect = BTreeSet::new();
    let known_names: BTreeSet<&str> = before.values().map(|c| c.name.as_str()).collect();
    for (uuid, now) in after {
        match before.get(uuid) {
            Some(then) => {
                let expected = then.deletes + own.get(&now.name).copied().unwrap_or(0);
                if now.primary_terms != then.primary_terms || now.deletes != expected {
                    suspect.insert(now.name.clone());
                }
            }
            // The same name under a new uuid: the index was deleted and created again.
            None if known_names.contains(now.name.as_str()) => {
                suspect.insert(now.name.clone());
            }
            // An index first seen now: essync may have created it (by writing to it) since the
            // last plan, and an application may have deleted in it since. Deletes beyond
            // essync's own make it suspect; an index with none costs nothing.
            None => {
                if now.deletes > own.get(&now.name).copied().unwrap_or(0) {
                    suspect.insert(now.name.clone());
                }
            }
        }
    }
    for (uuid, then) in before {
        if !after.contains_key(uuid) {
            // Deleted or closed: the sweep's lookups tell which (a closed index's documents
            // are unknown, never taken for deleted).
            suspect.insert(then.name.clone());
        }
    }
    suspect
}

/// Marks indices suspect until `passes` sweep passes are complete (the one under way, if any,
/// started before the suspicion and does not count).
pub(crate) fn watch(
    watch: &mut DeleteWatch,
    indices: BTreeSet<String>,
    passes: u64,
    sweeping: bool,
) {
    let until = passes + if sweeping { 2 } else { 1 };
    for index in indices {
        let entry = watch.suspects.entry(index).or_insert(until);
        *entry = (*entry).max(until);
    }
}

/// Ends the suspicions that `passes` complete sweep passes have checked.
pub(crate) fn clear_checked(watch: &mut DeleteWatch, passes: u64) {
    watch.suspects.retain(|_, until| *until > passes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(name: &str, deletes: i64, terms: &[i64]) -> DeleteCounters {
        DeleteCounters {
            name: name.to_string(),
            deletes,
            primary_terms: terms.to_vec(),
        }
    }

    fn of(entries: &[(&str, DeleteCounters)]) -> BTreeMap<String, DeleteCounters> {
        entries
            .iter()
            .map(|(uuid, c)| (uuid.to_string(), c.clone()))
            .collect()
    }

    #[test]
    fn deletes_beyond_essyncs_own_make_an_index_suspect() {
        let before = of(&[
            ("u1", counters("a", 5, &[1])),
            ("u2", counters("b", 0, &[1])),
        ]);
        let own = BTreeMap::from([("a".to_string(), 2)]);
        // a moved by exactly essync's own deletes; b moved by one more than none.
        let after = of(&[
            ("u1", counters("a", 7, &[1])),
            ("u2", counters("b", 1, &[1])),
        ]);
        assert_eq!(
            suspects(&before, &after, &own),
            BTreeSet::from(["b".to_string()])
        );
        // Nothing moved: nothing is suspect.
        assert!(suspects(&before, &before, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn reopened_recreated_and_vanished_indices_are_suspect() {
        let before = of(&[
            ("u1", counters("a", 5, &[1, 1])),
            ("u2", counters("b", 0, &[1])),
            ("u3", counters("c", 0, &[1])),
        ]);
        let after = of(&[
            // A node restart: counters start again, the primary term moved.
            ("u1", counters("a", 0, &[2, 1])),
            // Deleted and created again.
            ("u9", counters("b", 0, &[1])),
            // A new index.
            ("u8", counters("d", 0, &[1])),
        ]);
        assert_eq!(
            suspects(&before, &after, &BTreeMap::new()),
            BTreeSet::from(["a".to_string(), "b".to_string(), "c".to_string()])
        );
    }

    #[test]
    fn an_index_first_seen_with_deletes_beyond_essyncs_own_is_suspect() {
        // essync created "e" by writing to it after the last plan; an application then deleted
        // one of its documents before this plan saw the index at all.
        let before = of(&[("u1", counters("a", 0, &[1]))]);
        let after = of(&[
            ("u1", counters("a", 0, &[1])),
            ("u2", counters("e", 1, &[1])),
            ("u3", counters("f", 2, &[1])),
        ]);
        let own = BTreeMap::from([("f".to_string(), 2)]);
        assert_eq!(
            suspects(&before, &after, &own),
            BTreeSet::from(["e".to_string()])
        );
    }

    #[test]
    fn a_suspicion_lasts_until_a_pass_started_after_it_is_done() {
        let mut w = DeleteWatch::default();
        // No pass under way: the next one checks everything.
        watch(&mut w, BTreeSet::from(["a".to_string()]), 3, false);
        clear_checked(&mut w, 3);
        assert!(w.suspects.contains_key("a"));
        clear_checked(&mut w, 4);
        assert!(w.suspects.is_empty());
        // A pass under way started before the suspicion: it takes the one after.
        watch(&mut w, BTreeSet::from(["b".to_string()]), 4, true);
        clear_checked(&mut w, 5);
        assert!(w.suspects.contains_key("b"));
        clear_checked(&mut w, 6);
        assert!(w.suspects.is_empty());
    }
}
