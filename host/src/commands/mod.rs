//! What each command does, on top of the library.

pub mod policy;
pub mod sync;

use tracing_subscriber::EnvFilter;

/// Logs go to stderr through `tracing`; `-v` and `-vv` raise essync's level, `RUST_LOG`
/// overrides everything.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "essync=info",
        1 => "essync=debug",
        _ => "essync=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
