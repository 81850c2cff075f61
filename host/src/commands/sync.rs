//! `essync [OPTIONS] KEYSPACE:TABLE PERIOD`: the sync itself.

use std::process::ExitCode;

use crate::cli::Cli;

/// Runs the sync until stopped (or one round with `--once`).
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet: {:?} every {:?}", cli.target, cli.period)
}
