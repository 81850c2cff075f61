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

use chrono::{DateTime, Utc};

use super::{Examined, Seen};
use crate::cassandra::CassandraVersion;
use crate::document::{Digest, truncate_to_millis};
use crate::elasticsearch::EsVersion;
use crate::policy::Stamp;
use crate::store::{Side, Stored};
use crate::sync::state::LedgerEntry;

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

/// One side's change, compared with the ledger.
pub(crate) fn change(ledger: Option<&LedgerEntry>, present: Option<Digest>) -> Change {
    match (ledger, present) {
        (Some(entry), Some(digest)) if entry.digest == digest => Change::Unchanged,
        (Some(_), Some(_)) => Change::Changed,
        (None, Some(_)) => Change::Created,
        (Some(_), None) => Change::Deleted,
        (None, None) => Change::Absent,
    }
}

/// Who changed the id, per the table above.
pub(crate) fn attribute(examined: &Examined) -> Attribution {
    let ledger = examined.ledger.as_ref();
    let es_digest = examined.elasticsearch.as_ref().map(|s| s.stored.digest);
    let cassandra_digest = examined.cassandra.as_ref().map(|s| s.stored.digest);
    let es = change(ledger, es_digest);
    let cassandra = change(ledger, cassandra_digest);
    use Change::*;
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
    ledger.is_some_and(|entry| {
        entry.digest != digest && document.timestamp_millis() == Some(entry.timestamp)
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
            stored: Stored {
                digest: document.digest(),
                version: EsVersion::new(document.index.clone(), 1, 1),
                document,
                stamped: true,
            },
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
            },
            stamp: Stamp::Written,
        }
    }

    fn ledger(document: &Document) -> LedgerEntry {
        LedgerEntry {
            id: document.id,
            digest: document.digest(),
            timestamp: document.timestamp_millis().unwrap(),
            index: document.index.clone(),
            elasticsearch: None,
            cassandra_written_at: None,
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

    /// Every case of the table in the module documentation.
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
