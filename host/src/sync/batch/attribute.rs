//! Attribution: which side changed an id since the last sync, found by comparing each side's
//! version with the ledger's. Pure functions, tested without stores or a policy.
//!
//! | Elasticsearch | Cassandra | attribution |
//! | --- | --- | --- |
//! | unchanged | unchanged | nothing to do |
//! | changed | unchanged | take Elasticsearch's change (whatever the timestamps) |
//! | unchanged | changed | take Cassandra's change |
//! | changed | changed, to the same | in sync: record it |
//! | changed | changed, differently | conflict: the policy resolves |
//! | deleted | unchanged | take the delete: delete from Cassandra |
//! | unchanged | deleted | take the delete: delete from Elasticsearch |
//! | deleted | changed (or the mirror) | conflict: the policy resolves |
//! | deleted | deleted | forget the id |
//! | created | absent (no ledger entry) | take the creation (or the mirror) |
//! | created | created, the same | in sync: record it |
//! | created | created, differently | conflict with no base: the policy resolves |
//!
//! A version is *changed* when its digest differs from the ledger's, *deleted* when it is
//! absent while the ledger has the id, *created* when there is no ledger entry. Without a
//! ledger entry an absent side never counts as a delete.
//!
//! When the ledger holds an *intent* (essync stopped between deciding a write and confirming
//! it), each side is first compared with the decision: a side that holds what it held then, or
//! what was being written, has not changed since; anything else (a delete included) is a change
//! made after the decision. Then:
//!
//! | Elasticsearch | Cassandra | attribution |
//! | --- | --- | --- |
//! | the version written | the version written | in sync: record it |
//! | the version written | what it held then | finish the decision: copy it to Cassandra |
//! | what it held then | what it held then | nothing was written: decide again, as above |
//! | changed since | either of the decision's | take the change (or the mirror) |
//! | changed since | changed since | conflict |
//! | absent | absent | nothing: the intent stays, for the write that may still land |
//!
//! A version in Elasticsearch that essync wrote (its metadata's mark says so) but that the
//! ledger does not know, neither synced nor named by an intent, is a write that landed late
//! (see [`late_write`]): it counts as no change, and Cassandra's version, or its delete, is
//! copied over it.

use chrono::{DateTime, Utc};

use super::{Examined, Seen};
use crate::cassandra::CassandraVersion;
use crate::document::{Digest, truncate_to_millis};
use crate::elasticsearch::EsVersion;
use crate::policy::Stamp;
use crate::store::{Side, Stored, WrittenOver};
use crate::sync::state::{Intent, LedgerEntry, Synced};

/// What happened to an id on one side since the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The side holds the ledger's version.
    Unchanged,
    /// The side holds another version than the ledger's.
    Changed,
    /// The side holds a version and the ledger has none.
    Created,
    /// The side holds nothing and the ledger has a version.
    Deleted,
    /// The side holds nothing and neither does the ledger.
    Absent,
}

/// The first decision about an id, before the policy is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attribution {
    /// Neither side changed: nothing to do.
    Nothing,
    /// Both sides hold the same version: record it as synced.
    InSync,
    /// Neither side holds the id any more: forget it.
    Forget,
    /// One side changed (`Changed`, `Created` or `Deleted`) and the other did not: its change
    /// is taken.
    Take(Side, Change),
    /// Both sides changed differently: the policy resolves.
    Conflict,
}

/// One side's change, compared with the synced version.
pub(crate) fn change(base: Option<&Synced>, present: Option<Digest>) -> Change {
    match (base, present) {
        (Some(base), Some(digest)) if base.digest == digest => Change::Unchanged,
        (Some(_), Some(_)) => Change::Changed,
        (None, Some(_)) => Change::Created,
        (Some(_), None) => Change::Deleted,
        (None, None) => Change::Absent,
    }
}

/// Who changed the id, per the tables above.
pub(crate) fn attribute(examined: &Examined) -> Attribution {
    let base = examined.ledger.as_ref().and_then(|l| l.base.as_ref());
    let es_digest = examined.elasticsearch.as_ref().map(|s| s.stored.digest);
    let cassandra_digest = examined.cassandra.as_ref().map(|s| s.stored.digest);
    let late = late_write(examined);
    if let Some(intent) = examined.ledger.as_ref().and_then(|l| l.intent.as_ref())
        && let Some(attribution) = after_intent(intent, base, es_digest, cassandra_digest, late)
    {
        return attribution;
    }
    let es = change(base, es_digest);
    let cassandra = change(base, cassandra_digest);
    use Change::*;
    if late && cassandra != Absent {
        // Elasticsearch holds no application's change: Cassandra's version (or its delete) is
        // copied over the late write.
        return Attribution::Take(
            Side::Cassandra,
            if cassandra == Unchanged {
                Changed
            } else {
                cassandra
            },
        );
    }
    match (es, cassandra) {
        (Unchanged, Unchanged) | (Absent, Absent) => Attribution::Nothing,
        (Deleted, Deleted) => Attribution::Forget,
        (Changed | Created, Changed | Created) if es_digest == cassandra_digest => {
            Attribution::InSync
        }
        (Changed | Created | Deleted, Unchanged | Absent) => {
            Attribution::Take(Side::Elasticsearch, es)
        }
        (Unchanged | Absent, Changed | Created | Deleted) => {
            Attribution::Take(Side::Cassandra, cassandra)
        }
        _ => Attribution::Conflict,
    }
}

/// Whether Elasticsearch holds a write that landed late: a version essync wrote (its mark
/// says so), written over the version the ledger last recorded there (or over nothing, when
/// the ledger has no synced version), that the ledger does not know (neither the synced
/// version nor one an intent names). Only a process that lost the lease leaves one: frozen
/// past its lease while its writes were under way, it sends a write decided before the next
/// holder decided the id, and the write lands, conditional as it is only on the version its
/// writer read, which nobody changed since. It is no application's change, and never counts
/// as one: the other side's version is copied over it. An application that writes back, mark
/// included, a version essync wrote long ago writes over another version than the ledger's:
/// that is a change. Without a ledger entry essync knows nothing of the id, and the rule does
/// not apply.
fn late_write(examined: &Examined) -> bool {
    let (Some(entry), Some(es)) = (&examined.ledger, &examined.elasticsearch) else {
        return false;
    };
    let Some(over) = es.stored.essync_wrote else {
        return false;
    };
    let digest = es.stored.digest;
    let known = entry.base.as_ref().is_some_and(|b| b.digest == digest)
        || entry
            .intent
            .as_ref()
            .is_some_and(|intent| intent.target == digest || intent.elasticsearch == Some(digest));
    let recorded = match &entry.base {
        None => WrittenOver::Nothing,
        Some(base) => match &base.elasticsearch {
            Some(v) if v.index == es.stored.version.index => WrittenOver::Version {
                seq_no: v.seq_no,
                primary_term: v.primary_term,
            },
            _ => return false,
        },
    };
    !known && over == recorded
}

/// Where one side stands against an intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Against {
    /// It holds the version being written.
    Written,
    /// It holds what it held when the write was decided.
    Before,
    /// It changed since (a delete included).
    Since,
}

/// Attribution against an unconfirmed write (see the module documentation); `None` when
/// nothing of it was written, and the id is decided again against the synced version.
fn after_intent(
    intent: &Intent,
    base: Option<&Synced>,
    elasticsearch: Option<Digest>,
    cassandra: Option<Digest>,
    late: bool,
) -> Option<Attribution> {
    let against = |present: Option<Digest>, before: Option<Digest>| {
        if present == Some(intent.target) {
            Against::Written
        } else if present == before {
            Against::Before
        } else {
            Against::Since
        }
    };
    if elasticsearch.is_none() && cassandra.is_none() {
        // The intent stays: the write it records may still land, late (a process frozen past
        // its lease, then thawed, sends what it had decided). A document that appears then as
        // the intent's target is known as that write, against a side deleted since, and is
        // deleted again, not copied back as if the application had created it.
        return Some(Attribution::Nothing);
    }
    // A late write of essync's is no change since the decision.
    let es_against = if late {
        Against::Before
    } else {
        against(elasticsearch, intent.elasticsearch)
    };
    let cassandra_against = against(cassandra, intent.cassandra);
    // What a change made since the decision is.
    let kind = |present: Option<Digest>| match (present, base) {
        (None, _) => Change::Deleted,
        (Some(_), Some(_)) => Change::Changed,
        (Some(_), None) => Change::Created,
    };
    use Against::*;
    Some(match (es_against, cassandra_against) {
        (Written, Written) => Attribution::InSync,
        (Written, Before) => Attribution::Take(Side::Elasticsearch, Change::Changed),
        (Before, Written) => Attribution::Take(Side::Cassandra, Change::Changed),
        (Before, Before) => return None,
        (Since, Written | Before) => Attribution::Take(Side::Elasticsearch, kind(elasticsearch)),
        (Written | Before, Since) => Attribution::Take(Side::Cassandra, kind(cassandra)),
        (Since, Since) => Attribution::Conflict,
    })
}

/// An Elasticsearch version as the round sees it: a timestamp its writer did not set (none at
/// all, or the ledger's one kept through a change) is replaced by `seen_at`, when essync saw
/// the change (Elasticsearch keeps no write time).
pub(crate) fn observe_elasticsearch(
    mut stored: Stored<EsVersion>,
    ledger: Option<&LedgerEntry>,
    seen_at: DateTime<Utc>,
) -> Seen<EsVersion> {
    let stamp = if !stored.stamped {
        Stamp::Observed
    } else if kept_the_stamp(&stored.document, stored.digest, ledger) {
        stored.document.timestamp = Some(truncate_to_millis(seen_at));
        stored.exact = false;
        Stamp::Observed
    } else {
        Stamp::Written
    };
    Seen { stored, stamp }
}

/// A Cassandra version as the round sees it: a timestamp its writer did not set (a null
/// column, or the ledger's one kept through a change) is replaced by the row's write time,
/// when the change was made.
pub(crate) fn observe_cassandra(
    mut stored: Stored<CassandraVersion>,
    ledger: Option<&LedgerEntry>,
    seen_at: DateTime<Utc>,
) -> Seen<CassandraVersion> {
    let written_at = || {
        stored
            .version
            .written_at
            .and_then(DateTime::from_timestamp_micros)
            .map(truncate_to_millis)
            .unwrap_or_else(|| truncate_to_millis(seen_at))
    };
    let stamp = if stored.version.timestamp.is_none() {
        // The store already gave it its write time.
        Stamp::Observed
    } else if kept_the_stamp(&stored.document, stored.digest, ledger) {
        stored.document.timestamp = Some(written_at());
        stored.exact = false;
        Stamp::Observed
    } else {
        Stamp::Written
    };
    Seen { stored, stamp }
}

/// A changed version that still carries the synced version's timestamp: its writer changed the
/// content but not the stamp (a partial update, an update of one column, a read-modify-write).
fn kept_the_stamp(
    document: &crate::Document,
    digest: Digest,
    ledger: Option<&LedgerEntry>,
) -> bool {
    ledger
        .and_then(|entry| entry.base.as_ref())
        .is_some_and(|base| {
            base.digest != digest && document.timestamp_millis() == Some(base.timestamp)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Document;
    use crate::cassandra::CassandraVersion;
    use serde_json::json;
    use uuid::Uuid;

    fn id() -> Uuid {
        Uuid::from_u128(7)
    }

    fn doc(millis: i64, v: i64) -> Document {
        Document::with_id(id(), "books", "book", json!({ "v": v }))
            .at(DateTime::from_timestamp_millis(millis).unwrap())
    }

    fn es(document: Document) -> Seen<EsVersion> {
        Seen {
            stored: crate::sync::batch::read_from_elasticsearch(document),
            stamp: Stamp::Written,
        }
    }

    fn cassandra(document: Document) -> Seen<CassandraVersion> {
        Seen {
            stored: Stored {
                digest: document.digest(),
                version: CassandraVersion {
                    index: Some(document.index.clone()),
                    doc_type: Some(document.doc_type.clone()),
                    timestamp: document.timestamp_millis(),
                    content: Some(document.content.to_string()),
                    written_at: Some(1),
                    ttl: None,
                },
                document,
                stamped: true,
                exact: true,
                essync_wrote: None,
            },
            stamp: Stamp::Written,
        }
    }

    fn ledger(document: &Document) -> LedgerEntry {
        LedgerEntry {
            id: document.id,
            base: Some(Synced {
                digest: document.digest(),
                timestamp: document.timestamp_millis().unwrap(),
                index: document.index.clone(),
                doc_type: document.doc_type.clone(),
                elasticsearch: None,
                cassandra_written_at: None,
            }),
            intent: None,
        }
    }

    fn examined(
        base: Option<&Document>,
        elasticsearch: Option<Document>,
        cassandra_version: Option<Document>,
    ) -> Examined {
        Examined {
            id: id(),
            ledger: base.map(ledger),
            elasticsearch: elasticsearch.map(es),
            cassandra: cassandra_version.map(cassandra),
            cassandra_read_at: DateTime::from_timestamp_millis(0).unwrap(),
        }
    }

    /// Every case of the table in the module documentation. (Longer than a screen: it is that
    /// table, one case a few lines, and reads best in one piece beside it.)
    #[test]
    fn every_case_of_the_attribution_table() {
        use Attribution::*;
        let base = doc(10, 1);
        let es_change = doc(5, 2); // older than the base: timestamps do not matter
        let cassandra_change = doc(20, 3);
        let cases: Vec<(&str, Examined, Attribution)> = vec![
            (
                "unchanged on both sides",
                examined(Some(&base), Some(base.clone()), Some(base.clone())),
                Nothing,
            ),
            (
                "changed in Elasticsearch only",
                examined(Some(&base), Some(es_change.clone()), Some(base.clone())),
                Take(Side::Elasticsearch, Change::Changed),
            ),
            (
                "changed in Cassandra only",
                examined(
                    Some(&base),
                    Some(base.clone()),
                    Some(cassandra_change.clone()),
                ),
                Take(Side::Cassandra, Change::Changed),
            ),
            (
                "changed on both sides, differently",
                examined(
                    Some(&base),
                    Some(es_change.clone()),
                    Some(cassandra_change.clone()),
                ),
                Conflict,
            ),
            (
                "changed on both sides, to the same",
                examined(
                    Some(&base),
                    Some(es_change.clone()),
                    Some(es_change.clone()),
                ),
                InSync,
            ),
            (
                "created in Elasticsearch",
                examined(None, Some(es_change.clone()), None),
                Take(Side::Elasticsearch, Change::Created),
            ),
            (
                "created in Cassandra",
                examined(None, None, Some(cassandra_change.clone())),
                Take(Side::Cassandra, Change::Created),
            ),
            (
                "created on both sides, differently",
                examined(
                    None,
                    Some(es_change.clone()),
                    Some(cassandra_change.clone()),
                ),
                Conflict,
            ),
            (
                "created on both sides, the same",
                examined(None, Some(es_change.clone()), Some(es_change.clone())),
                InSync,
            ),
            (
                "deleted in Elasticsearch",
                examined(Some(&base), None, Some(base.clone())),
                Take(Side::Elasticsearch, Change::Deleted),
            ),
            (
                "deleted in Cassandra",
                examined(Some(&base), Some(base.clone()), None),
                Take(Side::Cassandra, Change::Deleted),
            ),
            (
                "deleted in Elasticsearch, changed in Cassandra",
                examined(Some(&base), None, Some(cassandra_change.clone())),
                Conflict,
            ),
            (
                "deleted in Cassandra, changed in Elasticsearch",
                examined(Some(&base), Some(es_change.clone()), None),
                Conflict,
            ),
            (
                "deleted on both sides",
                examined(Some(&base), None, None),
                Forget,
            ),
            ("unknown on both sides", examined(None, None, None), Nothing),
        ];
        for (name, examined, expected) in cases {
            assert_eq!(attribute(&examined), expected, "{name}");
        }
    }

    /// essync stopped between deciding a write and confirming it: every way the stores may have
    /// been left, and what applications did since. (A table of cases, like the one above.)
    #[test]
    fn an_unconfirmed_write_is_finished_or_decided_again_and_later_changes_win() {
        use Attribution::*;
        let base = doc(10, 1);
        let changed = doc(20, 2); // Elasticsearch's change, being copied to Cassandra
        let later = doc(30, 3);
        let intent = |base: Option<&Document>, es: Option<&Document>, c: Option<&Document>| {
            let mut entry = base.map(ledger).unwrap_or(LedgerEntry {
                id: id(),
                base: None,
                intent: None,
            });
            entry.intent = Some(Intent {
                target: changed.digest(),
                elasticsearch: es.map(Document::digest),
                cassandra: c.map(Document::digest),
            });
            entry
        };
        let with = |entry: LedgerEntry, es: Option<Document>, c: Option<Document>| {
            let mut e = examined(None, es, c);
            e.ledger = Some(entry);
            e
        };
        // An update being copied (base held by Cassandra) ...
        let update = intent(Some(&base), Some(&changed), Some(&base));
        let cases: Vec<(&str, Examined, Attribution)> = vec![
            (
                "copied: recorded",
                with(update.clone(), Some(changed.clone()), Some(changed.clone())),
                InSync,
            ),
            (
                "not copied yet: copied again",
                with(update.clone(), Some(changed.clone()), Some(base.clone())),
                Take(Side::Elasticsearch, Change::Changed),
            ),
            (
                "copied, then deleted in Elasticsearch: the delete is taken",
                with(update.clone(), None, Some(changed.clone())),
                Take(Side::Elasticsearch, Change::Deleted),
            ),
            (
                "copied, then changed in Cassandra: the change is taken",
                with(update.clone(), Some(changed.clone()), Some(later.clone())),
                Take(Side::Cassandra, Change::Changed),
            ),
            (
                "changed since on both sides: a conflict",
                with(update, Some(later.clone()), Some(doc(31, 4))),
                Conflict,
            ),
        ];
        for (name, e, expected) in cases {
            assert_eq!(attribute(&e), expected, "{name}");
        }
        // ... and a creation being copied (no synced version yet).
        let creation = intent(None, Some(&changed), None);
        assert_eq!(
            attribute(&with(creation.clone(), Some(changed.clone()), None)),
            Take(Side::Elasticsearch, Change::Changed),
            "not copied yet: copied again"
        );
        assert_eq!(
            attribute(&with(creation.clone(), None, Some(changed.clone()))),
            Take(Side::Elasticsearch, Change::Deleted),
            "copied, then deleted at its source: deleted"
        );
        assert_eq!(
            attribute(&with(creation, None, None)),
            Nothing,
            "deleted at its source before the copy landed: the intent stays, so that a copy \
             landing late (above) is deleted, not taken for a creation"
        );
        // A merge of two changes, written nowhere yet: decided again against the synced
        // version (the same conflict).
        let (es_change, cassandra_change) = (doc(21, 5), doc(22, 6));
        let mut merge = ledger(&base);
        merge.intent = Some(Intent {
            target: doc(23, 7).digest(),
            elasticsearch: Some(es_change.digest()),
            cassandra: Some(cassandra_change.digest()),
        });
        assert_eq!(
            attribute(&with(merge, Some(es_change), Some(cassandra_change))),
            Conflict
        );
    }

    /// A process frozen past its lease sends, once thawed, a write it had decided: it lands
    /// after the next holder decided the id, and Elasticsearch then holds a version essync
    /// wrote, over the version the ledger recorded, that the ledger does not know. Never an
    /// application's change: Cassandra's version, or its delete, goes over it. The failures
    /// this prevents were an old Cassandra version copied back over a newer one, and a document
    /// deleted in Cassandra brought back.
    #[test]
    fn a_late_write_of_a_process_that_lost_the_lease_is_no_change() {
        use Attribution::*;
        let (base, stale, newer) = (doc(10, 1), doc(20, 2), doc(30, 3));
        // What the ledger recorded in Elasticsearch: the version `es` reads (seq_no 1).
        let recorded = WrittenOver::Version {
            seq_no: 1,
            primary_term: 1,
        };
        let written_over = |over: WrittenOver, document: Document| {
            let mut seen = es(document);
            seen.stored.essync_wrote = Some(over);
            seen
        };
        let late = |document: Document| written_over(recorded, document);
        let synced = |document: &Document| {
            let mut entry = ledger(document);
            if let Some(base) = &mut entry.base {
                base.elasticsearch = Some(EsVersion::new(document.index.clone(), 1, 1));
            }
            entry
        };
        let with =
            |entry: Option<LedgerEntry>, es: Option<Seen<EsVersion>>, c: Option<Document>| {
                let mut e = examined(None, None, c);
                e.elasticsearch = es;
                e.ledger = entry;
                e
            };
        // The next holder copies Cassandra's newer version: its intent names it.
        let mut copying = synced(&base);
        copying.intent = Some(Intent {
            target: newer.digest(),
            elasticsearch: Some(base.digest()),
            cassandra: Some(newer.digest()),
        });
        // A creation being copied by the next holder; the late write created the document.
        let creating = LedgerEntry {
            id: id(),
            base: None,
            intent: Some(Intent {
                target: newer.digest(),
                elasticsearch: None,
                cassandra: Some(newer.digest()),
            }),
        };
        let cases: Vec<(&str, Examined, Attribution)> = vec![
            (
                "the stale version landed before the copy: the copy is made again",
                with(
                    Some(copying.clone()),
                    Some(late(stale.clone())),
                    Some(newer.clone()),
                ),
                Take(Side::Cassandra, Change::Changed),
            ),
            (
                "then Cassandra deleted the document: the delete is taken",
                with(Some(copying), Some(late(stale.clone())), None),
                Take(Side::Cassandra, Change::Deleted),
            ),
            (
                "a late creation, the document deleted in Cassandra since: deleted",
                with(
                    Some(creating),
                    Some(written_over(WrittenOver::Nothing, stale.clone())),
                    None,
                ),
                Take(Side::Cassandra, Change::Deleted),
            ),
            (
                "after a record: the synced version goes back over it",
                with(
                    Some(synced(&base)),
                    Some(late(stale.clone())),
                    Some(base.clone()),
                ),
                Take(Side::Cassandra, Change::Changed),
            ),
            (
                "after a record, Cassandra changed: its change is taken",
                with(
                    Some(synced(&base)),
                    Some(late(stale.clone())),
                    Some(newer.clone()),
                ),
                Take(Side::Cassandra, Change::Changed),
            ),
            (
                "an application's change of that version is a change",
                with(
                    Some(synced(&base)),
                    Some(es(stale.clone())),
                    Some(newer.clone()),
                ),
                Conflict,
            ),
            (
                "an application writing back, mark included, a version essync wrote over \
                 another: a change",
                with(
                    Some(synced(&base)),
                    Some(written_over(
                        WrittenOver::Version {
                            seq_no: 0,
                            primary_term: 1,
                        },
                        stale.clone(),
                    )),
                    Some(newer.clone()),
                ),
                Conflict,
            ),
            (
                "no ledger entry: a creation, as ever",
                with(None, Some(written_over(WrittenOver::Nothing, stale)), None),
                Take(Side::Elasticsearch, Change::Created),
            ),
        ];
        for (name, e, expected) in cases {
            assert_eq!(attribute(&e), expected, "{name}");
        }
    }

    #[test]
    fn a_change_that_kept_the_synced_stamp_is_dated_when_it_was_observed() {
        let base = doc(10, 1);
        // A partial update: new content, the synced timestamp kept.
        let updated = doc(10, 2);
        let seen_at = DateTime::from_timestamp_millis(99).unwrap();
        let seen = observe_elasticsearch(es(updated.clone()).stored, Some(&ledger(&base)), seen_at);
        assert_eq!(seen.stamp, Stamp::Observed);
        assert_eq!(seen.stored.document.timestamp_millis(), Some(99));
        // The digest still says what is stored: the change is attributed all the same.
        assert_eq!(seen.stored.digest, updated.digest());

        let mut row = cassandra(updated).stored;
        row.version.written_at = Some(77_000);
        let seen = observe_cassandra(row, Some(&ledger(&base)), seen_at);
        assert_eq!(seen.stamp, Stamp::Observed);
        assert_eq!(seen.stored.document.timestamp_millis(), Some(77));

        // A new timestamp is the writer's; the synced version itself is written too.
        let newer = doc(11, 2);
        let seen = observe_elasticsearch(es(newer).stored, Some(&ledger(&base)), seen_at);
        assert_eq!(seen.stamp, Stamp::Written);
        let seen = observe_elasticsearch(es(base.clone()).stored, Some(&ledger(&base)), seen_at);
        assert_eq!(seen.stamp, Stamp::Written);
        assert_eq!(seen.stored.document.timestamp_millis(), Some(10));
        // Without a ledger entry, a stamp is the writer's.
        let seen = observe_elasticsearch(es(doc(10, 5)).stored, None, seen_at);
        assert_eq!(seen.stamp, Stamp::Written);
    }

    #[test]
    fn versions_without_a_timestamp_are_observed() {
        let mut stored = es(doc(10, 1)).stored;
        stored.stamped = false;
        let seen = observe_elasticsearch(stored, None, DateTime::from_timestamp_millis(5).unwrap());
        assert_eq!(seen.stamp, Stamp::Observed);
        let mut row = cassandra(doc(10, 1)).stored;
        row.version.timestamp = None;
        let seen = observe_cassandra(row, None, DateTime::from_timestamp_millis(5).unwrap());
        assert_eq!(seen.stamp, Stamp::Observed);
    }
}
