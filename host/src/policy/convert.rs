//! One conversion each way between essync's types and the WIT types, with the checks that
//! make a policy's answer safe to apply.

use crate::document::Content;
use chrono::DateTime;
use uuid::Uuid;

use super::error::PolicyError;
use super::{Candidate, Conflict, Resolution, Side, Stamp, Verdict, Version, wit};
use crate::Document;

fn invalid(reason: String) -> PolicyError {
    PolicyError::InvalidInput { reason }
}

/// A document as the policy sees it: the timestamp in milliseconds, the content as JSON text.
pub(super) fn document_to_wit(
    document: &Document,
    stamp: Stamp,
) -> Result<wit::Document, PolicyError> {
    let timestamp = checked(document)?;
    Ok(wit::Document {
        id: document.id.to_string(),
        index: document.index.clone(),
        doc_type: document.doc_type.clone(),
        timestamp,
        stamp: match stamp {
            Stamp::Written => wit::Stamp::Written,
            Stamp::Observed => wit::Stamp::Observed,
        },
        content: document.content_text().to_string(),
    })
}

/// Whether a document can cross the boundary (it has a timestamp and its content is a JSON
/// object), and its timestamp in UTC milliseconds: a candidate that cannot is an error of its
/// own, whether or not the policy is asked.
pub(super) fn checked(document: &Document) -> Result<i64, PolicyError> {
    let timestamp = document
        .timestamp_millis()
        .ok_or_else(|| invalid(format!("{document} has no timestamp")))?;
    if !document.content.is_object_text() {
        return Err(invalid(format!(
            "the content of {document} is not a JSON object"
        )));
    }
    Ok(timestamp)
}

pub(super) fn candidate_to_wit(candidate: &Candidate) -> Result<wit::Candidate, PolicyError> {
    Ok(wit::Candidate {
        side: match candidate.side {
            Side::Elasticsearch => wit::Side::Elasticsearch,
            Side::Cassandra => wit::Side::Cassandra,
        },
        document: document_to_wit(&candidate.version.document, candidate.version.stamp)?,
        deleted: candidate.deleted,
    })
}

pub(super) fn conflict_to_wit(conflict: &Conflict) -> Result<wit::Conflict, PolicyError> {
    let version = |side: &str, version: Option<(&Document, Stamp)>| match version {
        None => Ok(None),
        Some((d, _)) if d.id != conflict.id => Err(invalid(format!(
            "the {side} version {d} is not of the conflict's id {}",
            conflict.id
        ))),
        Some((d, stamp)) => document_to_wit(d, stamp).map(Some),
    };
    fn of(v: &Option<Version>) -> Option<(&Document, Stamp)> {
        v.as_ref().map(|v| (&v.document, v.stamp))
    }
    // Without its content the base carries `{}`, whatever the caller put there.
    let base_content = conflict.base_content && conflict.base.is_some();
    let mut base = version("base", conflict.base.as_ref().map(|d| (d, Stamp::Written)))?;
    if let Some(base) = base.as_mut().filter(|_| !base_content) {
        base.content = "{}".to_string();
    }
    Ok(wit::Conflict {
        id: conflict.id.to_string(),
        base,
        base_content,
        elasticsearch: version("Elasticsearch", of(&conflict.elasticsearch))?,
        cassandra: version("Cassandra", of(&conflict.cassandra))?,
    })
}

/// A document the policy returned for the item of id `expected`.
fn document_from_wit(
    policy: &str,
    expected: Uuid,
    document: wit::Document,
) -> Result<Document, PolicyError> {
    let malformed = |reason: String| PolicyError::Malformed {
        name: policy.to_string(),
        reason,
    };
    let id = Uuid::parse_str(&document.id).map_err(|_| {
        malformed(format!(
            "returned a document whose id {:?} is not a UUID (expected {expected})",
            super::sandbox::cut(&document.id, 100)
        ))
    })?;
    if id != expected {
        return Err(malformed(format!(
            "returned a document of id {id} for the item of id {expected}"
        )));
    }
    let timestamp = DateTime::from_timestamp_millis(document.timestamp).ok_or_else(|| {
        malformed(format!(
            "returned a document of id {id} with an impossible timestamp {}",
            document.timestamp
        ))
    })?;
    let content = match Content::from_json(document.content) {
        Ok(content) if content.is_object_text() => content,
        Ok(_) => {
            return Err(malformed(format!(
                "returned a document of id {id} whose content is not a JSON object"
            )));
        }
        Err(e) => {
            return Err(malformed(format!(
                "returned a document of id {id} whose content is not JSON ({e})"
            )));
        }
    };
    Ok(Document::with_id(id, document.index, document.doc_type, content).at(timestamp))
}

fn refused(policy: &str, reason: String) -> PolicyError {
    PolicyError::Refused {
        name: policy.to_string(),
        reason,
    }
}

pub(super) fn verdict_from_wit(
    policy: &str,
    candidate: &Candidate,
    answer: Result<wit::Verdict, String>,
) -> Result<Verdict, PolicyError> {
    match answer.map_err(|reason| refused(policy, reason))? {
        wit::Verdict::Keep => Ok(Verdict::Keep),
        wit::Verdict::Skip(reason) => Ok(Verdict::Skip { reason }),
        wit::Verdict::Transform(_) if candidate.deleted => Err(PolicyError::Malformed {
            name: policy.to_string(),
            reason: format!(
                "transformed the delete of {}; a delete can only be kept or skipped",
                candidate.version.document.id
            ),
        }),
        wit::Verdict::Transform(document) => Ok(Verdict::Transform(document_from_wit(
            policy,
            candidate.version.document.id,
            document,
        )?)),
    }
}

pub(super) fn resolution_from_wit(
    policy: &str,
    conflict: &Conflict,
    answer: Result<wit::Resolution, String>,
) -> Result<Resolution, PolicyError> {
    let absent = |side: &str| PolicyError::Malformed {
        name: policy.to_string(),
        reason: format!(
            "chose the {side} version of {}, which is absent",
            conflict.id
        ),
    };
    match answer.map_err(|reason| refused(policy, reason))? {
        wit::Resolution::Unchanged => Ok(Resolution::Unchanged),
        wit::Resolution::UseElasticsearch if conflict.elasticsearch.is_none() => {
            Err(absent("Elasticsearch"))
        }
        wit::Resolution::UseElasticsearch => Ok(Resolution::UseElasticsearch),
        wit::Resolution::UseCassandra if conflict.cassandra.is_none() => Err(absent("Cassandra")),
        wit::Resolution::UseCassandra => Ok(Resolution::UseCassandra),
        wit::Resolution::Write(document) => Ok(Resolution::Write(document_from_wit(
            policy,
            conflict.id,
            document,
        )?)),
        wit::Resolution::Delete => Ok(Resolution::Delete),
    }
}
