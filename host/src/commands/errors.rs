//! `essync errors KEYSPACE:TABLE`: the documents that could not be synced, and why.

use std::process::ExitCode;

use essync::document::format_timestamp;
use essync::sync::state;

use crate::cli::{ConnectionOptions, Target};

/// Lists (or clears) the recorded failures of a sync.
pub async fn run(
    connection: &ConnectionOptions,
    target: &Target,
    clear: bool,
) -> anyhow::Result<ExitCode> {
    let cassandra = super::connect_cassandra(connection, target).await?;
    if clear {
        state::clear_failures(&cassandra).await?;
        println!("cleared the recorded failures of {target}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut entries = state::recorded_failures(&cassandra).await?;
    if entries.is_empty() {
        println!("no recorded failures for {target}");
        return Ok(ExitCode::SUCCESS);
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
    println!(
        "{:<44} {:<13} {:>8}  {:<24}  reason",
        "document", "side", "attempts", "last failed"
    );
    for entry in &entries {
        println!(
            "{:<44} {:<13} {:>8}  {:<24}  {}",
            entry.location,
            entry.side,
            entry.attempts,
            format_timestamp(entry.last_seen),
            entry.reason
        );
    }
    println!(
        "{} document(s); essync retries those with a uuid id",
        entries.len()
    );
    Ok(ExitCode::SUCCESS)
}
