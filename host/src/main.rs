//! The essync binary: parses the command line, sets up logging, and runs the sync or a
//! subcommand. Errors end here as one line on stderr and a non-zero exit code.

mod cli;
mod commands;
mod config;
mod logging;

use std::process::ExitCode;

use cli::Command;

fn main() -> ExitCode {
    let settings = match config::parse(std::env::args_os().collect()) {
        Ok(settings) => settings,
        Err(config::Error::File(message)) => {
            eprintln!("essync: {message}");
            return ExitCode::from(2);
        }
        Err(config::Error::CommandLine(e)) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(config::Error::CommandLine(e)) => {
            eprintln!("essync: {}", command_line_error(&e));
            return ExitCode::from(2);
        }
    };
    if settings.print_requested() {
        print!("{}", settings.print());
        return ExitCode::SUCCESS;
    }
    let cli = settings.cli;
    logging::init(cli.verbose, cli.log_format);
    // A few blocking threads are enough for the policy's calls and the pages read apart; each
    // thread costs an allocator arena, and many make memory grow for nothing.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("essync: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.command.is_some() && (cli.target.is_some() || cli.period.is_some()) {
        eprintln!("essync: KEYSPACE:TABLE PERIOD do not go with a subcommand (see essync --help)");
        return ExitCode::from(2);
    }
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Policy(command)) => {
                commands::policy::run(command, cli.sync.compile_cache()).await
            }
            Some(Command::Errors { target, clear }) => {
                commands::errors::run(&cli.connection, &target, clear).await
            }
            Some(Command::Status { target }) => {
                commands::status::run(&cli.connection, &target).await
            }
            None => commands::sync::run(cli).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line: the error and its causes, without a backtrace.
            eprintln!("essync: {}", essync::store::one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// A command-line error on one line, not clap's usage block: scripts and users read the first
/// line only. It points to the help of the command it is about.
fn command_line_error(error: &clap::Error) -> String {
    if let Some(refusal) = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<cli::NotAPolicyOption>())
    {
        return refusal.to_string();
    }
    let message = error.to_string();
    let first: Vec<&str> = message
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    // clap's usage line names the command.
    let command = message
        .lines()
        .find_map(|line| line.trim().strip_prefix("Usage: "))
        .map(|usage| {
            usage
                .split_whitespace()
                .take_while(|word| !word.starts_with(['[', '<', '-']))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|command| command.starts_with("essync"))
        .unwrap_or_else(|| "essync".to_string());
    format!(
        "{} (see {command} --help)",
        first.join(" ").trim_start_matches("error: ")
    )
}
