//! `essync policy check` and `essync policy test`.

use std::process::ExitCode;

use crate::cli::PolicyCommand;

/// Runs a policy subcommand.
pub async fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet: {command:?}")
}
