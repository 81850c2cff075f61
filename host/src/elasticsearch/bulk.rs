//! Batched, race-safe writes through the bulk API.
//!
//! Every write is a compare-and-set against the version the writer read: `create` when the
//! document was absent, `index` with `if_seq_no`/`if_primary_term` when it was there. If anyone
//! wrote the document in between, Elasticsearch answers 409 and nothing is written: the outcome
//! is [`WriteOutcome::ChangedUnderneath`], and the newer write is decided on in a later round.
//! This holds for writers that know nothing of essync, which external versioning derived from
//! timestamps would not give: a plain index request resets such a version.
//!
//! A write goes back where the document is: under its `_id` exactly as spelled there, with its
//! custom routing (a write without it would reach another shard, and find another version
//! there for ever). An index's default pipeline is bypassed (`pipeline: _none`): Elasticsearch
//! then holds exactly what essync wrote, as the other store does. An index essync does not sync
//! (see [`super::schema`]) gets no write: each is reported with the reason.

use std::collections::BTreeSet;

use futures::StreamExt;

use serde_json::{Value, json};

use uuid::Uuid;

use super::ElasticsearchError;
use super::client::{Http, Reply};
use super::convert::{EsVersion, to_source};
use super::response::{BulkAnswer, bulk_item_outcome};
use super::schema::{Decision, Indices};
use crate::Document;
use crate::document::Digest;
use crate::store::{Applied, WriteOutcome, WrittenOver};

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
    /// The document's digest, when the writer has it already (computed otherwise): the mark
    /// essync leaves in the metadata of what it wrote.
    pub digest: Option<Digest>,
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
    /// The `_id` and routing written (for the version the answer reports).
    raw_id: Option<String>,
    routing: Option<String>,
}

/// The action line of one operation: the kind, the index, the `_id`, the routing, and the rest.
fn action(kind: &str, index: &str, id: &str, routing: Option<&str>, mut rest: Value) -> Value {
    rest["_index"] = json!(index);
    rest["_id"] = json!(id);
    if let Some(routing) = routing {
        rest["routing"] = json!(routing);
    }
    json!({ kind: rest })
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
            let expected = &delete.expected;
            let mut lines = Vec::new();
            push_line(
                &mut lines,
                &action(
                    "delete",
                    &expected.index,
                    &expected.id_of(delete.id),
                    expected.routing.as_deref(),
                    json!({"if_seq_no": expected.seq_no, "if_primary_term": expected.primary_term}),
                ),
            );
            Op {
                write: n,
                primary: true,
                lines,
                raw_id: expected.raw_id.clone(),
                routing: expected.routing.clone(),
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
    let targets = prepare_indices(http, indices, writes).await?;
    let mut ops = Vec::with_capacity(writes.len());
    for (n, write) in writes.iter().enumerate() {
        match write_ops(n, write, &targets) {
            Ok(write_ops) => ops.extend(write_ops),
            Err(reason) => outcomes[n] = Some(Applied::outcome(WriteOutcome::Rejected(reason))),
        }
    }
    execute(http, limits, &ops, &mut outcomes).await?;
    Ok(finish(outcomes))
}

/// How essync writes to the indices of a batch.
#[derive(Default)]
struct Targets {
    /// Indices essync does not write to, and why.
    refused: std::collections::HashMap<String, String>,
    /// Indices whose default pipeline essync's writes bypass.
    bypass: BTreeSet<String>,
}

/// Creates the missing indices of a batch with the metadata mapping, and says which essync
/// does not write to (a bad name, an index it does not sync) and which have a default pipeline.
async fn prepare_indices(
    http: &Http,
    indices: &Indices,
    writes: &[EsWrite],
) -> Result<Targets, ElasticsearchError> {
    let names: BTreeSet<&str> = writes.iter().map(|w| w.document.index.as_str()).collect();
    let mut targets = Targets::default();
    for index in names {
        match indices.prepare(http, index, None).await? {
            Decision::Refuse(reason) => {
                targets.refused.insert(index.to_string(), reason);
            }
            Decision::Sync(fidelity) if fidelity.default_pipeline.is_some() => {
                targets.bypass.insert(index.to_string());
            }
            Decision::Sync(_) => {}
        }
    }
    Ok(targets)
}

/// The bulk operations of write `n`: the document, compare-and-set against the version
/// expected (created when absent, or when it moves to another index), and the delete of the
/// version it replaces in another index. `Err`: why it cannot be written.
fn write_ops(n: usize, write: &EsWrite, targets: &Targets) -> Result<Vec<Op>, String> {
    let document = &write.document;
    if let Some(reason) = targets.refused.get(&document.index) {
        return Err(reason.clone());
    }
    let timestamp = document
        .timestamp
        .ok_or_else(|| "the document has no timestamp".to_string())?;
    let digest = write.digest.unwrap_or_else(|| document.digest());
    // What the write replaces, for essync's mark: the version it is conditional on, or nothing
    // (a creation, here or in the index the document moves to).
    let over = match &write.expected {
        EsExpected::Version(version) if version.index == document.index => WrittenOver::Version {
            seq_no: version.seq_no,
            primary_term: version.primary_term,
        },
        _ => WrittenOver::Nothing,
    };
    let source = to_source(document, timestamp, digest, over)?;
    // Where the document is: its `_id` as spelled there, its routing.
    let (raw_id, routing) = match &write.expected {
        EsExpected::Version(version) => (version.raw_id.clone(), version.routing.clone()),
        EsExpected::Absent => (None, None),
    };
    let id = raw_id.clone().unwrap_or_else(|| document.id.to_string());
    let (kind, mut rest) = match &write.expected {
        EsExpected::Version(version) if version.index == document.index => (
            "index",
            json!({"if_seq_no": version.seq_no, "if_primary_term": version.primary_term}),
        ),
        // Absent, or moving to another index: create it there.
        _ => ("create", json!({})),
    };
    if targets.bypass.contains(&document.index) {
        rest["pipeline"] = json!("_none");
    }
    let mut lines = Vec::new();
    push_line(
        &mut lines,
        &action(kind, &document.index, &id, routing.as_deref(), rest),
    );
    source.write_to(&mut lines);
    lines.push(b'\n');
    let mut ops = vec![Op {
        write: n,
        primary: true,
        lines,
        raw_id: raw_id.clone(),
        routing: routing.clone(),
    }];
    if let EsExpected::Version(version) = &write.expected
        && version.index != document.index
    {
        // The document moved to another index: remove the version it replaces.
        let cas = json!({"if_seq_no": version.seq_no, "if_primary_term": version.primary_term});
        let mut lines = Vec::new();
        push_line(
            &mut lines,
            &action("delete", &version.index, &id, routing.as_deref(), cas),
        );
        ops.push(Op {
            write: n,
            primary: false,
            lines,
            raw_id,
            routing,
        });
    }
    Ok(ops)
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

fn push_line(buffer: &mut Vec<u8>, value: &impl serde::Serialize) {
    // Serialising JSON values (and a document's source) cannot fail.
    if serde_json::to_writer(&mut *buffer, value).is_ok() {
        buffer.push(b'\n');
    }
}

async fn send(http: &Http, ops: &[Op]) -> Result<Vec<ItemOutcome>, ElasticsearchError> {
    let mut body = Vec::with_capacity(ops.iter().map(|op| op.lines.len()).sum());
    for op in ops {
        body.extend_from_slice(&op.lines);
    }
    let answer = match http
        .request_ndjson::<BulkAnswer>("/_bulk", &[], body)
        .await?
    {
        Reply::Ok { value, .. } => value,
        Reply::Refused { status, error } => {
            return Err(ElasticsearchError::Api {
                request: "POST /_bulk".to_string(),
                status,
                reason: error.describe(),
            });
        }
    };
    if answer.items.len() != ops.len() {
        return Err(ElasticsearchError::Protocol {
            request: "POST /_bulk".to_string(),
            reason: format!("{} items for {} operations", answer.items.len(), ops.len()),
        });
    }
    let mut outcomes = Vec::with_capacity(ops.len());
    for (op, item) in ops.iter().zip(&answer.items) {
        let Some(result) = item.result() else {
            outcomes.push(ItemOutcome {
                write: op.write,
                outcome: WriteOutcome::Failed("the answer has no result for it".to_string()),
                version: None,
            });
            continue;
        };
        let Some((outcome, written)) = bulk_item_outcome(result, op.primary) else {
            continue;
        };
        outcomes.push(ItemOutcome {
            write: op.write,
            outcome,
            version: written.map(|(seq_no, primary_term)| EsVersion {
                index: result.index.clone(),
                seq_no,
                primary_term,
                raw_id: op.raw_id.clone(),
                routing: op.routing.clone(),
            }),
        });
    }
    Ok(outcomes)
}
