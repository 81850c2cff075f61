//! `essync status KEYSPACE:TABLE`: what an operator opens first. Which process syncs the table,
//! how far its checkpoint is, and how many documents wait as failed.

use std::process::ExitCode;

use chrono::Utc;
use essync::document::format_timestamp;
use essync::sync::state::checkpoint::Saved;
use essync::sync::state::{self, Status};

use crate::cli::{ConnectionOptions, Target};

/// Prints the status of the sync of `target`.
pub async fn run(connection: &ConnectionOptions, target: &Target) -> anyhow::Result<ExitCode> {
    let cassandra = super::connect_cassandra(connection, target).await?;
    let status = state::status(&cassandra).await?;
    print!("{}", describe(target, &status));
    Ok(ExitCode::SUCCESS)
}

/// The status, as printed.
fn describe(target: &Target, status: &Status) -> String {
    let mut out = format!("{target}\n");
    match status.ranges.as_slice() {
        [whole] if whole.range.is_whole() => {
            let holder = match &whole.holder {
                Some(holder) => format!("{holder} (holds the table's lease)"),
                None => "nobody (no essync holds the table's lease now)".to_string(),
            };
            out += &format!("  synced by:   {holder}\n");
            out += &describe_checkpoint(whole.checkpoint.as_ref(), "  checkpoint:  ", 15);
        }
        ranges => {
            out += &format!(
                "  synced in {} ranges, by {} process(es) now\n",
                ranges.len(),
                status.members.len()
            );
            for range in ranges {
                let holder = match &range.holder {
                    Some(holder) => holder.to_string(),
                    None => "nobody now".to_string(),
                };
                out += &format!("  {}: synced by {holder}\n", range.range);
                out += &describe_checkpoint(range.checkpoint.as_ref(), "    checkpoint: ", 16);
            }
        }
    }
    let parts = status
        .failures
        .iter()
        .filter(|f| f.location.starts_with(state::FEED_PREFIX))
        .count();
    let documents = status.failures.len() - parts;
    out += &format!(
        "  failures:    {documents} document(s), {parts} part(s) of the Elasticsearch feed{}\n",
        if status.failures.is_empty() {
            String::new()
        } else {
            format!(
                " (essync errors {}:{} lists them)",
                target.keyspace, target.table
            )
        }
    );
    out
}

/// A saved checkpoint, as printed: its first line starts with `first`, the others are
/// indented by `indent`.
fn describe_checkpoint(saved: Option<&Saved>, first: &str, indent: usize) -> String {
    let Some(saved) = saved else {
        return format!("{first}none yet (essync never synced this)\n");
    };
    let pad = " ".repeat(indent);
    let at = saved.at.map_or("at an unknown time".to_string(), |at| {
        let ago = (Utc::now() - at).num_seconds().max(0);
        format!("{} ({ago}s ago)", format_timestamp(at))
    });
    let epoch = saved
        .epoch
        .map_or(String::new(), |epoch| format!(" in epoch {epoch}"));
    let checkpoint = &saved.checkpoint;
    let mode = match &checkpoint.reconciliation {
        Some(r) => format!(
            "reconciling (-s) since {}; Elasticsearch {}",
            format_timestamp(r.started_at),
            if r.elasticsearch_done {
                "read to the end, Cassandra under way"
            } else {
                "under way"
            }
        ),
        None => "following changes".to_string(),
    };
    format!(
        "{first}saved {at}{epoch} by {}\n{pad}{mode}\n{pad}Elasticsearch: {} indices followed; \
         Cassandra: {} sweep passes done\n",
        saved.by,
        checkpoint.elasticsearch.indices.len(),
        checkpoint.cassandra.sweep.passes
    )
}
