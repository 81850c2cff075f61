//! Batched, race-safe writes through the bulk API.
//!
//! Every write is a compare-and-set against the version the writer read: `create` when the
//! document was absent, `index` with `if_seq_no`/`if_primary_term` when it was there. If anyone
//! wrote the document in between, Elasticsearch answers 409 and nothing is written: the outcome
//! is [`WriteOutcome::ChangedUnderneath`], and the newer write is decided on in a later round.
//! This holds for writers that know nothing of essync, which external versioning derived from
//! timestamps would not give: a plain index request resets such a version.

use std::collections::BTreeSet;

use futures::StreamExt;

use serde_json::{Value, json};

use uuid::Uuid;

use super::ElasticsearchError;
use super::client::{Http, error_reason};
use super::convert::{EsVersion, to_source};
use super::schema::Indices;
use crate::Document;
use crate::store::{Applied, WriteOutcome};

/// What the writer expects the store to hold for the document's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsExpected {
    /// No document with this id.
    Absent,
    /// Exactly this version.
    Version(EsVersion),
}

/// One write: a document and the version it replaces.
#[derive(Debug, Clone)]
pub struct EsWrite {
    /// What to write; its timestamp must be set.
    pub document: Document,
    /// What it replaces.
    pub expected: EsExpected,
}

/// One delete: the id, and the version it removes (compare-and-set: a document changed since
/// is left alone).
#[derive(Debug, Clone)]
pub struct EsDelete {
    /// The document's id.
    pub id: Uuid,
    /// The version to delete.
    pub expected: EsVersion,
}

/// Limits of one bulk request, and how many are in flight at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BulkLimits {
    pub max_documents: usize,
    pub max_bytes: usize,
    pub in_flight: usize,
}

/// One bulk operation and which write it belongs to.
struct Op {
    write: usize,
    /// The document's own write or delete (as opposed to the delete that follows a move).
    primary: bool,
    lines: Vec<u8>,
}

/// Deletes a batch of documents, each a compare-and-set against the version expected; one
/// outcome per delete, in order ([`WriteOutcome::Deleted`], or `ChangedUnderneath` when the
/// document changed or went away since it was read).
pub(crate) async fn delete_batch(
    http: &Http,
    limits: BulkLimits,
    deletes: &[EsDelete],
) -> Result<Vec<Applied<EsVersion>>, ElasticsearchError> {
    let ops: Vec<Op> = deletes
        .iter()
        .enumerate()
        .map(|(n, delete)| {
            let mut lines = Vec::new();
            push_line(
                &mut lines,
                &json!({"delete": {
                    "_index": delete.expected.index, "_id": delete.id.to_string(),
                    "if_seq_no": delete.expected.seq_no,
                    "if_primary_term": delete.expected.primary_term,
                }}),
            );
            Op {
                write: n,
                primary: true,
                lines,
            }
        })
        .collect();
    let mut outcomes = vec![None; deletes.len()];
    execute(http, limits, &ops, &mut outcomes).await?;
    Ok(finish(outcomes))
}

pub(crate) async fn write_batch(
    http: &Http,
    indices: &Indices,
    limits: BulkLimits,
    writes: &[EsWrite],
) -> Result<Vec<Applied<EsVersion>>, ElasticsearchError> {
    let mut outcomes: Vec<Option<Applied<EsVersion>>> = vec![None; writes.len()];

    // Indices first: create missing ones with the metadata mapping; refuse bad names.
    let targets: BTreeSet<&str> = writes.iter().map(|w| w.document.index.as_str()).collect();
    let mut refused = std::collections::HashMap::new();
    for index in targets {
        if let Err(reason) = indices.prepare(http, index, None).await? {
            refused.insert(index.to_string(), reason);
        }
    }

    let mut ops = Vec::with_capacity(writes.len());
    for (n, write) in writes.iter().enumerate() {
        let document = &write.document;
        if let Some(reason) = refused.get(&document.index) {
            outcomes[n] = Some(Applied::outcome(WriteOutcome::Rejected(reason.clone())));
            continue;
        }
        let Some(timestamp) = document.timestamp else {
            outcomes[n] = Some(Applied::outcome(WriteOutcome::Rejected(
                "the document has no timestamp".to_string(),
            )));
            continue;
        };
        let source = match to_source(document, timestamp) {
            Ok(source) => source,
            Err(reason) => {
                outcomes[n] = Some(Applied::outcome(WriteOutcome::Rejected(reason)));
                continue;
            }
        };
        let id = document.id.to_string();
        let action = match &write.expected {
            EsExpected::Version(version) if version.index == document.index => json!({"index": {
                "_index": document.index, "_id": id,
                "if_seq_no": version.seq_no, "if_primary_term": version.primary_term,
            }}),
            // Absent, or moving to another index: create it there.
            _ => json!({"create": {"_index": document.index, "_id": id}}),
        };
        let mut lines = Vec::new();
        push_line(&mut lines, &action);
        push_line(&mut lines, &source);
        ops.push(Op {
            write: n,
            primary: true,
            lines,
        });
        if let EsExpected::Version(version) = &write.expected
            && version.index != document.index
        {
            // The document moved to another index: remove the version it replaces.
            let mut lines = Vec::new();
            push_line(
                &mut lines,
                &json!({"delete": {
                    "_index": version.index, "_id": id,
                    "if_seq_no": version.seq_no, "if_primary_term": version.primary_term,
                }}),
            );
            ops.push(Op {
                write: n,
                primary: false,
                lines,
            });
        }
    }

    execute(http, limits, &ops, &mut outcomes).await?;
    Ok(finish(outcomes))
}

/// Sends the operations in requests within the limits, several in flight at once, recording
/// each write's outcome.
async fn execute(
    http: &Http,
    limits: BulkLimits,
    ops: &[Op],
    outcomes: &mut [Option<Applied<EsVersion>>],
) -> Result<(), ElasticsearchError> {
    let mut requests = Vec::new();
    let mut start = 0;
    while start < ops.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < ops.len()
            && (end == start
                || (end - start < limits.max_documents
                    && bytes + ops[end].lines.len() <= limits.max_bytes))
        {
            bytes += ops[end].lines.len();
            end += 1;
        }
        // A move is two operations; keep them in one request.
        if end < ops.len() && !ops[end].primary {
            end += 1;
        }
        requests.push(&ops[start..end]);
        start = end;
    }
    // Futures built first, then polled: a stream of closures over borrowed items would make
    // the whole future not `Send` for every lifetime.
    let pending: Vec<_> = requests.into_iter().map(|ops| send(http, ops)).collect();
    let answers: Vec<Result<Vec<ItemOutcome>, ElasticsearchError>> = futures::stream::iter(pending)
        .buffered(limits.in_flight.max(1))
        .collect()
        .await;
    for answer in answers {
        for item in answer? {
            let slot = &mut outcomes[item.write];
            // The first problem of a write wins over a later success.
            if slot
                .as_ref()
                .is_none_or(|applied| applied.outcome.is_written())
            {
                // A move's cleanup keeps the version of the primary write.
                let version = item
                    .version
                    .or_else(|| slot.as_ref().and_then(|a| a.version.clone()));
                *slot = Some(Applied {
                    outcome: item.outcome,
                    version,
                });
            }
        }
    }
    Ok(())
}

/// What one bulk item says about its write.
struct ItemOutcome {
    write: usize,
    outcome: WriteOutcome,
    version: Option<EsVersion>,
}

fn finish(outcomes: Vec<Option<Applied<EsVersion>>>) -> Vec<Applied<EsVersion>> {
    outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                Applied::outcome(WriteOutcome::Failed("no answer for this document".into()))
            })
        })
        .collect()
}

fn push_line(buffer: &mut Vec<u8>, value: &Value) {
    // Serialising a serde_json::Value cannot fail.
    if serde_json::to_writer(&mut *buffer, value).is_ok() {
        buffer.push(b'\n');
    }
}

async fn send(http: &Http, ops: &[Op]) -> Result<Vec<ItemOutcome>, ElasticsearchError> {
    let body: Vec<u8> = ops.iter().flat_map(|op| op.lines.iter().copied()).collect();
    let answer = http.send_ndjson("/_bulk", &[], body).await?;
    if !(200..300).contains(&answer.status) {
        return Err(super::client::error_answer(
            elasticsearch::http::Method::Post,
            "/_bulk",
            &answer,
        ));
    }
    let items = answer
        .body
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| ElasticsearchError::Protocol {
            request: "POST /_bulk".to_string(),
            reason: "no items in the answer".to_string(),
        })?;
    if items.len() != ops.len() {
        return Err(ElasticsearchError::Protocol {
            request: "POST /_bulk".to_string(),
            reason: format!("{} items for {} operations", items.len(), ops.len()),
        });
    }
    let mut outcomes = Vec::with_capacity(ops.len());
    for (op, item) in ops.iter().zip(items) {
        let result = item
            .as_object()
            .and_then(|o| o.values().next())
            .cloned()
            .unwrap_or(Value::Null);
        let status = result.get("status").and_then(Value::as_u64).unwrap_or(0);
        let outcome = match status {
            200..=299 if op.primary => match result.get("result").and_then(Value::as_str) {
                Some("created") => WriteOutcome::Inserted,
                Some("deleted") => WriteOutcome::Deleted,
                _ => WriteOutcome::Replaced,
            },
            // The old copy of a moved document is gone: the move is complete.
            200..=299 => continue,
            404 if !op.primary => continue,
            // A compare-and-set delete of a document that is gone: it changed since it was read.
            404 | 409 => WriteOutcome::ChangedUnderneath,
            429 | 500..=599 => WriteOutcome::Failed(error_reason(&result)),
            _ => WriteOutcome::Rejected(error_reason(&result)),
        };
        let version = match outcome {
            WriteOutcome::Inserted | WriteOutcome::Replaced => super::convert::version_of(&result),
            _ => None,
        };
        outcomes.push(ItemOutcome {
            write: op.write,
            outcome,
            version,
        });
    }
    Ok(outcomes)
}
