//! Planning: from what both sides should hold to the writes that get them there, and what the
//! ledger records once they applied. Pure functions, tested without stores.

use uuid::Uuid;

use super::Examined;
use crate::Document;
use crate::cassandra::{CassandraDelete, CassandraExpected, CassandraWrite};
use crate::document::Digest;
use crate::elasticsearch::{EsDelete, EsExpected, EsVersion, EsWrite};
use crate::sync::state::{Intent, Synced, SyncedVersion};

/// What both sides should end with, as decided for one id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Leave both sides (and the ledger) as they are.
    Leave,
    /// Both sides hold the same version already: record it in the ledger.
    Record,
    /// Neither side holds the id: forget it.
    Forget,
    /// Both sides get this document.
    Target(Document),
    /// Both sides get this document: one side's version, untouched, whose digest is known.
    Copy(Document, Digest),
    /// The document is deleted wherever it is.
    Delete,
}

/// A write to Elasticsearch.
#[derive(Debug, Clone)]
pub(crate) enum EsOp {
    Put(EsWrite),
    Delete(EsDelete),
}

/// A write to Cassandra.
#[derive(Debug, Clone)]
pub(crate) enum CassandraOp {
    Put(CassandraWrite),
    Delete(CassandraDelete),
}

/// What the ledger records once the writes applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LedgerOp {
    /// Nothing.
    Keep,
    /// This version (and its digest) is what both sides hold. `elasticsearch` and
    /// `cassandra_written_at` say where the sides that are not written hold it.
    Record {
        version: SyncedVersion,
        elasticsearch: Option<EsVersion>,
        cassandra_written_at: Option<i64>,
    },
    /// The same version as before, held at other store versions.
    Refresh(Synced),
    /// Forget the id.
    Forget,
}

/// The writes of one id.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub id: Uuid,
    pub elasticsearch: Option<EsOp>,
    pub cassandra: Option<CassandraOp>,
    pub ledger: LedgerOp,
    /// What the ledger records before the writes, when a version is written.
    pub intent: Option<Intent>,
}

/// The plan that brings both sides of `examined` to `outcome`. A side that already holds the
/// target (the same digest, metadata included) is not written. The ledger's record carries the
/// synced content only when `keep_content`.
pub(crate) fn plan(examined: &Examined, outcome: Outcome, keep_content: bool) -> Plan {
    let id = examined.id;
    let es = examined.elasticsearch.as_ref();
    let cassandra = examined.cassandra.as_ref();
    let none = |ledger| Plan {
        id,
        elasticsearch: None,
        cassandra: None,
        ledger,
        intent: None,
    };
    match outcome {
        Outcome::Leave => none(refresh(examined)),
        Outcome::Forget => none(LedgerOp::Forget),
        Outcome::Record => match (es, cassandra) {
            (Some(es), Some(cassandra)) => none(LedgerOp::Record {
                version: SyncedVersion::of(&es.stored.document, es.stored.digest, keep_content),
                elasticsearch: Some(es.stored.version.clone()),
                cassandra_written_at: cassandra.stored.version.written_at,
            }),
            _ => none(LedgerOp::Keep),
        },
        Outcome::Delete => Plan {
            id,
            elasticsearch: es.map(|es| {
                EsOp::Delete(EsDelete {
                    id,
                    expected: es.stored.version.clone(),
                })
            }),
            cassandra: cassandra.map(|cassandra| {
                CassandraOp::Delete(CassandraDelete {
                    id,
                    expected: cassandra.stored.version.clone(),
                })
            }),
            ledger: LedgerOp::Forget,
            intent: None,
        },
        Outcome::Target(target) => plan_target(examined, target, None, keep_content),
        Outcome::Copy(target, digest) => plan_target(examined, target, Some(digest), keep_content),
    }
}

/// The plan that brings both sides to `target`: each side that does not hold it already (the
/// same digest, metadata included) is written, compare-and-set against what it held, with an
/// intent recorded first. The target goes into its writes (cloned only when both sides are
/// written). Its digest is computed unless `known`.
fn plan_target(
    examined: &Examined,
    target: Document,
    known: Option<Digest>,
    keep_content: bool,
) -> Plan {
    let es = examined.elasticsearch.as_ref();
    let cassandra = examined.cassandra.as_ref();
    let digest = known.unwrap_or_else(|| target.digest());
    debug_assert_eq!(
        digest,
        target.digest(),
        "a copy's known digest is not its own"
    );
    let es_holds = es.filter(|es| es.stored.digest == digest);
    let cassandra_holds = cassandra.filter(|c| c.stored.digest == digest);
    let version = SyncedVersion::of(&target, digest, keep_content);
    let writes = es_holds.is_none() || cassandra_holds.is_none();
    let cassandra_write = |document| {
        CassandraOp::Put(CassandraWrite {
            document,
            expected: match cassandra {
                Some(c) => CassandraExpected::Row(c.stored.version.clone()),
                None => CassandraExpected::Absent,
            },
            read_at: examined.cassandra_read_at,
        })
    };
    let es_write = |document| {
        EsOp::Put(EsWrite {
            document,
            expected: match es {
                Some(es) => EsExpected::Version(es.stored.version.clone()),
                None => EsExpected::Absent,
            },
            digest: Some(digest),
        })
    };
    let (elasticsearch, cassandra_op) = match (es_holds.is_none(), cassandra_holds.is_none()) {
        (true, true) => (
            Some(es_write(target.clone())),
            Some(cassandra_write(target)),
        ),
        (true, false) => (Some(es_write(target)), None),
        (false, true) => (None, Some(cassandra_write(target))),
        (false, false) => (None, None),
    };
    Plan {
        intent: writes.then(|| Intent {
            target: digest,
            elasticsearch: es.map(|es| es.stored.digest),
            cassandra: cassandra.map(|c| c.stored.digest),
        }),
        id: examined.id,
        elasticsearch,
        cassandra: cassandra_op,
        ledger: LedgerOp::Record {
            version,
            elasticsearch: es_holds.map(|es| es.stored.version.clone()),
            cassandra_written_at: cassandra_holds.and_then(|c| c.stored.version.written_at),
        },
    }
}

/// When both sides still hold the ledger's version but at other store versions (rewritten
/// with the same data), the ledger learns them, so the next round recognises them unread.
fn refresh(examined: &Examined) -> LedgerOp {
    let (Some(entry), Some(es), Some(cassandra)) = (
        &examined.ledger,
        &examined.elasticsearch,
        &examined.cassandra,
    ) else {
        return LedgerOp::Keep;
    };
    let Some(base) = entry.confirmed() else {
        return LedgerOp::Keep;
    };
    if es.stored.digest != base.digest || cassandra.stored.digest != base.digest {
        return LedgerOp::Keep;
    }
    let refreshed = Synced {
        elasticsearch: Some(es.stored.version.clone()),
        cassandra_written_at: cassandra.stored.version.written_at,
        ..base.clone()
    };
    if refreshed == *base {
        LedgerOp::Keep
    } else {
        LedgerOp::Refresh(refreshed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassandra::CassandraVersion;
    use crate::policy::Stamp;
    use crate::store::Stored;
    use crate::sync::batch::Seen;
    use chrono::DateTime;
    use serde_json::json;

    fn doc(millis: i64, v: i64) -> Document {
        Document::with_id(Uuid::from_u128(3), "books", "book", json!({ "v": v }))
            .at(DateTime::from_timestamp_millis(millis).unwrap())
    }

    fn examined(es: Option<Document>, cassandra: Option<Document>) -> Examined {
        Examined {
            id: Uuid::from_u128(3),
            ledger: None,
            elasticsearch: es.map(|document| Seen {
                stored: Stored {
                    digest: document.digest(),
                    version: EsVersion::new("books", 4, 1),
                    document,
                    stamped: true,
                    exact: true,
                    essync_wrote: None,
                },
                stamp: Stamp::Written,
            }),
            cassandra: cassandra.map(|document| Seen {
                stored: Stored {
                    digest: document.digest(),
                    version: CassandraVersion {
                        index: Some("books".into()),
                        doc_type: Some("book".into()),
                        timestamp: document.timestamp_millis(),
                        content: Some(document.content.to_string()),
                        written_at: Some(42),
                        ttl: None,
                    },
                    document,
                    stamped: true,
                    exact: true,
                    essync_wrote: None,
                },
                stamp: Stamp::Written,
            }),
            cassandra_read_at: DateTime::from_timestamp_millis(1).unwrap(),
        }
    }

    #[test]
    fn the_target_is_written_where_it_is_missing_and_recorded_with_where_it_is_held() {
        let (newer, older) = (doc(9, 2), doc(5, 1));
        let plan = plan(
            &examined(Some(newer.clone()), Some(older)),
            Outcome::Target(newer.clone()),
            false,
        );
        assert!(plan.elasticsearch.is_none());
        assert!(matches!(
            &plan.cassandra,
            Some(CassandraOp::Put(CassandraWrite {
                expected: CassandraExpected::Row(_),
                ..
            }))
        ));
        match plan.ledger {
            LedgerOp::Record {
                version,
                elasticsearch,
                cassandra_written_at,
            } => {
                assert_eq!(version.digest, newer.digest());
                assert_eq!(version.content, None, "no content kept");
                assert_eq!(elasticsearch.map(|v| v.seq_no), Some(4));
                assert_eq!(cassandra_written_at, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_target_that_only_restamps_a_side_still_writes_it() {
        // The side holds the content, but under another timestamp (an observed one).
        let held = doc(5, 1);
        let restamped = doc(8, 1);
        let plan = plan(
            &examined(Some(held.clone()), None),
            Outcome::Target(restamped),
            false,
        );
        assert!(matches!(plan.elasticsearch, Some(EsOp::Put(_))));
        assert!(matches!(
            plan.cassandra,
            Some(CassandraOp::Put(CassandraWrite {
                expected: CassandraExpected::Absent,
                ..
            }))
        ));
    }

    #[test]
    fn a_delete_removes_every_present_version_and_forgets_the_id() {
        let plan = plan(&examined(Some(doc(1, 1)), None), Outcome::Delete, false);
        assert!(matches!(plan.elasticsearch, Some(EsOp::Delete(_))));
        assert!(plan.cassandra.is_none());
        assert_eq!(plan.ledger, LedgerOp::Forget);
    }

    #[test]
    fn leaving_refreshes_the_versions_the_ledger_knows() {
        let base = doc(1, 1);
        let mut e = examined(Some(base.clone()), Some(base.clone()));
        e.ledger = Some(crate::sync::state::LedgerEntry {
            id: e.id,
            base: Some(Synced {
                digest: base.digest(),
                timestamp: 1,
                index: "books".into(),
                doc_type: "book".into(),
                elasticsearch: None,
                cassandra_written_at: None,
            }),
            intent: None,
        });
        let plan = plan(&e, Outcome::Leave, false);
        assert!(plan.elasticsearch.is_none() && plan.cassandra.is_none());
        match plan.ledger {
            LedgerOp::Refresh(synced) => {
                assert_eq!(synced.cassandra_written_at, Some(42));
                assert_eq!(synced.elasticsearch.map(|v| v.seq_no), Some(4));
            }
            other => panic!("{other:?}"),
        }
    }
}
