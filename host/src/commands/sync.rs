//! `essync [OPTIONS] KEYSPACE:TABLE PERIOD`: the sync itself.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use essync::cassandra::{CassandraStore, FeedOptions};
use essync::elasticsearch::{ElasticsearchStore, SelectionSize};
use essync::policy::{
    Compiled, LoadOptions, Policy, PolicyLimits, PolicyReload, PolicySource, ReloadRequest,
};
use essync::store::Side;
use essync::sync::{Lease, Metrics, Progress, RoundReport, Stop, SyncOptions, Syncer};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{Cli, SyncOptions as CliSyncOptions, Target};

/// Runs the sync until stopped (or one round with `--once`).
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let target = cli.target.clone().context("KEYSPACE:TABLE is missing")?;
    let period = cli.period.context("PERIOD is missing")?;
    // Listening comes first: a SIGTERM while essync starts (a rolling deploy may stop a
    // process it has just started) is a clean stop too, never the default death by signal.
    let stop = Stop::new();
    listen_for_signals(stop.clone());
    // Nothing is logged before both stores answer: a failure to start is one line.
    let Some(connected) = stop.unless_stopped(connect(&cli, &target)).await else {
        tracing::info!("stopped before the sync started");
        return Ok(ExitCode::SUCCESS);
    };
    let (policy, elasticsearch, cassandra, load) = connected?;
    let reload = cli
        .sync
        .policy
        .as_ref()
        .map(|path| PolicyReload::new(path, load, cli.sync.policy_reload));
    let options = sync_options(&cli.sync, period);
    if cli.sync.ranges > 1 && !options.dry_run {
        let stores = (policy, elasticsearch, cassandra);
        return run_ranges(&cli, &target, stores, reload, options, &stop).await;
    }
    // One process syncs a table at a time: a second one waits here, before it reads the
    // checkpoint it will go on from. A dry run writes nothing and takes no lease.
    let lease = if options.dry_run {
        None
    } else {
        match Lease::acquire(&cassandra, options.range, cli.sync.lease_ttl, &stop).await? {
            Some(lease) => Some(lease),
            None => return Ok(ExitCode::SUCCESS),
        }
    };
    let mut syncer = Syncer::start(elasticsearch, cassandra, policy, options).await?;
    if let Some(lease) = lease {
        syncer = syncer.with_lease(lease);
    }
    if syncer.first_start() {
        announce_selection(&syncer, &cli.sync).await;
    }
    let reload_request = reload.as_ref().map(PolicyReload::request);
    let mut syncer = equip(syncer, &cli.sync, reload).await?;
    tracing::info!(
        "syncing Elasticsearch ({}) with {target} every {:.1}s",
        cli.connection.es_urls.join(","),
        period.as_secs_f64()
    );

    listen_for_reload(reload_request);
    syncer.run(period, cli.sync.once, &stop).await?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the sync of the table shared by range ([`super::ranged`]).
async fn run_ranges(
    cli: &Cli,
    target: &Target,
    (policy, elasticsearch, cassandra): (Policy, ElasticsearchStore, CassandraStore),
    reload: Option<PolicyReload>,
    options: SyncOptions,
    stop: &Stop,
) -> anyhow::Result<ExitCode> {
    let metrics = match cli.sync.metrics {
        Some(address) => {
            let metrics = Arc::new(Metrics::new());
            let bound = super::metrics::serve(address, metrics.clone()).await?;
            tracing::info!("metrics on http://{bound}/metrics");
            Some(metrics)
        }
        None => None,
    };
    if let Some(reload) = &reload
        && cli.sync.policy_reload
    {
        tracing::info!(
            "the policy is loaded again when {} changes",
            reload.path().display()
        );
    }
    listen_for_reload(reload.as_ref().map(PolicyReload::request));
    tracing::info!(
        "syncing Elasticsearch ({}) with {target} in {} ranges, every {:.1}s",
        cli.connection.es_urls.join(","),
        cli.sync.ranges,
        cli.period.unwrap_or_default().as_secs_f64()
    );
    let shared = super::ranged::Shared {
        elasticsearch: Arc::new(elasticsearch),
        cassandra: Arc::new(cassandra),
        policy: tokio::sync::watch::Sender::new(policy),
        reload: reload.map(tokio::sync::Mutex::new),
        options,
        period: cli.period.unwrap_or_default(),
        once: cli.sync.once,
        ttl: cli.sync.lease_ttl,
        metrics,
    };
    super::ranged::run(shared, cli.sync.ranges, stop).await?;
    tracing::info!("stopped; checkpoints saved");
    Ok(ExitCode::SUCCESS)
}

/// The policy, loaded, and both stores, answering; and how the policy was loaded, for a reload.
async fn connect(
    cli: &Cli,
    target: &Target,
) -> anyhow::Result<(Policy, ElasticsearchStore, CassandraStore, LoadOptions)> {
    let load = load_options(&cli.sync);
    let policy = load_policy(&cli.sync, &load).await?;
    let elasticsearch = super::connect_elasticsearch(&cli.connection).await?;
    let cassandra = super::connect_cassandra(&cli.connection, target).await?;
    if elasticsearch.red_at_start() {
        tracing::warn!(
            "some of the synced Elasticsearch indices are red: their unavailable shards are \
             skipped until they come back"
        );
    }
    tracing::info!(
        "policy {} (world essync:policy@{}, {})",
        policy.name(),
        policy.world_version(),
        describe_load(&policy)
    );
    Ok((policy, elasticsearch, cassandra, load))
}

/// How the sync runs, from the command line.
fn sync_options(options: &CliSyncOptions, period: Duration) -> SyncOptions {
    SyncOptions {
        reconcile: options.sync_existing,
        dry_run: options.dry_run,
        feed: FeedOptions {
            safety_window: options.safety_window,
            sweep_rows: options.sweep_rows.max(1),
        },
        retry_backoff: period.max(Duration::from_secs(1)),
        ..SyncOptions::default()
    }
}

/// The sync with what the command line asks around it: the policy's reloading, progress for a
/// reconciliation, metrics.
async fn equip(
    mut syncer: Syncer,
    options: &CliSyncOptions,
    reload: Option<PolicyReload>,
) -> anyhow::Result<Syncer> {
    if let Some(reload) = reload {
        if options.policy_reload {
            tracing::info!(
                "the policy is loaded again when {} changes",
                reload.path().display()
            );
        }
        syncer = syncer.with_policy_reload(reload);
    }
    if syncer.checkpoint().reconciling() {
        let progress: Arc<dyn Progress> = if std::io::stderr().is_terminal() {
            Arc::new(Bars::new())
        } else {
            Arc::new(LoggedProgress::default())
        };
        syncer = syncer.with_progress(progress);
    }
    if let Some(address) = options.metrics {
        let metrics = Arc::new(Metrics::new());
        let bound = super::metrics::serve(address, metrics.clone()).await?;
        tracing::info!("metrics on http://{bound}/metrics");
        syncer = syncer.with_metrics(metrics);
    }
    Ok(syncer)
}

/// A first start says what it will touch: one line with the indices and documents the
/// selection holds (one `_stats` request), and how to narrow it or try first.
async fn announce_selection(syncer: &Syncer, options: &CliSyncOptions) {
    let store = syncer.elasticsearch();
    match store.selection_size().await {
        Ok(size) => tracing::info!(
            "{}",
            first_start_line(
                &store.config().indices.to_string(),
                size,
                options.sync_existing,
                options.dry_run
            )
        ),
        Err(e) => tracing::debug!("cannot tell how much the selected indices hold: {e}"),
    }
}

fn first_start_line(
    selection: &str,
    size: SelectionSize,
    reconcile: bool,
    dry_run: bool,
) -> String {
    let indices = match size.indices {
        1 => "1 index".to_string(),
        n => format!("{n} indices"),
    };
    let documents = match size.documents {
        1 => "1 document".to_string(),
        n => format!("{n} documents"),
    };
    let what = if reconcile {
        "-s reconciles every one of them with the table, then follows changes"
    } else {
        "essync follows their changes from now on (-s would reconcile them all), and writes \
         the table's changes into them"
    };
    let try_first = if dry_run {
        ""
    } else {
        "; --dry-run shows what would change and writes nothing"
    };
    format!(
        "first start: --es-indices '{selection}' selects {indices} holding {documents}; {what} \
         (narrow the selection with --es-indices{try_first})"
    )
}

/// The limits of policy calls and the compile cache, as the command line says.
fn load_options(options: &CliSyncOptions) -> LoadOptions {
    LoadOptions {
        limits: PolicyLimits {
            timeout: Duration::from_millis(options.policy_timeout_ms.max(1)),
            memory_bytes: options.policy_memory_mib.max(1) << 20,
            ..PolicyLimits::default()
        },
        cache: options.compile_cache(),
    }
}

async fn load_policy(options: &CliSyncOptions, load: &LoadOptions) -> anyhow::Result<Policy> {
    let path = options.policy.clone();
    let load = load.clone();
    // Compiling a component takes CPU time: off the async threads.
    tokio::task::spawn_blocking(move || match path {
        Some(path) => Policy::load(&PolicySource::File(path.clone()), &load)
            .with_context(|| format!("cannot use the policy {}", path.display())),
        None => {
            Policy::load(&PolicySource::Builtin, &load).context("cannot load the built-in policy")
        }
    })
    .await
    .context("the policy loader stopped")?
}

/// How a policy was loaded, for the logs.
pub fn describe_load(policy: &Policy) -> String {
    let took = policy.load_time().as_secs_f64();
    match policy.compiled() {
        Compiled::FromCache => format!("loaded in {took:.2}s from the compile cache"),
        Compiled::Fresh { cached: true } => {
            format!("compiled in {took:.2}s, kept in the compile cache")
        }
        Compiled::Fresh { cached: false } => format!("compiled in {took:.2}s"),
    }
}

/// SIGHUP asks for the policy file to be loaded again at the next round boundary.
fn listen_for_reload(request: Option<ReloadRequest>) {
    tokio::spawn(async move {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => signal,
            Err(e) => {
                tracing::warn!("cannot listen for SIGHUP: {e}");
                return;
            }
        };
        while hangup.recv().await.is_some() {
            match &request {
                Some(request) => {
                    tracing::info!("SIGHUP: the policy file is loaded again before the next round");
                    request.trigger();
                }
                None => tracing::info!(
                    "SIGHUP: nothing to reload (the built-in policy is in use; --policy names a file)"
                ),
            }
        }
    });
}

/// SIGINT and SIGTERM stop the sync after the current page, with its checkpoint saved; a
/// second one exits at once (what was applied is safe; the current page is read again).
fn listen_for_signals(stop: Stop) {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered here, before the task runs: a signal from now on is this process's to handle.
    let (mut interrupt, mut terminate) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("cannot listen for SIGINT and SIGTERM: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        let mut asked = 0;
        loop {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            asked += 1;
            if asked == 1 {
                tracing::info!("stopping after the current page (again to stop at once)");
                stop.trigger();
            } else {
                eprintln!("essync: stopped at once; the last page is read again at the next start");
                std::process::exit(130);
            }
        }
    });
}

/// Progress bars on a terminal during a reconciliation.
struct Bars {
    elasticsearch: ProgressBar,
    cassandra: ProgressBar,
    _group: MultiProgress,
}

impl Bars {
    fn new() -> Self {
        let group = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let bar = |name: &str| {
            let bar = group.add(ProgressBar::new_spinner());
            bar.set_prefix(name.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        };
        Self {
            elasticsearch: bar("elasticsearch"),
            cassandra: bar("cassandra"),
            _group: group,
        }
    }

    fn bar(&self, side: Side) -> &ProgressBar {
        match side {
            Side::Elasticsearch => &self.elasticsearch,
            Side::Cassandra => &self.cassandra,
        }
    }
}

impl Progress for Bars {
    fn reconciliation(&self, elasticsearch: Option<u64>, cassandra: Option<u64>) {
        for (side, total) in [
            (Side::Elasticsearch, elasticsearch),
            (Side::Cassandra, cassandra),
        ] {
            let bar = self.bar(side);
            match total {
                Some(total) => {
                    bar.set_length(total);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>13} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                }
                None => bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>13} {spinner} {human_pos} read {per_sec}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            }
        }
    }

    fn read(&self, side: Side, count: u64) {
        self.bar(side).inc(count);
    }

    fn round_finished(&self, _report: &RoundReport) {
        self.elasticsearch.finish_and_clear();
        self.cassandra.finish_and_clear();
    }
}

/// Progress as log lines every ten seconds, when stderr is not a terminal.
#[derive(Default)]
struct LoggedProgress {
    state: Mutex<LoggedState>,
}

#[derive(Default)]
struct LoggedState {
    totals: [Option<u64>; 2],
    read: [u64; 2],
    started: Option<Instant>,
    last_line: Option<Instant>,
}

impl Progress for LoggedProgress {
    fn reconciliation(&self, elasticsearch: Option<u64>, cassandra: Option<u64>) {
        if let Ok(mut state) = self.state.lock() {
            state.totals = [elasticsearch, cassandra];
            state.started.get_or_insert_with(Instant::now);
        }
    }

    fn read(&self, side: Side, count: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.read[side as usize] += count;
        let due = state
            .last_line
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if !due {
            return;
        }
        state.last_line = Some(Instant::now());
        let elapsed = state
            .started
            .map(|t| t.elapsed().as_secs_f64())
            .unwrap_or(0.0)
            .max(0.001);
        let show = |n: usize| match state.totals[n] {
            Some(total) => format!("{}/{}", state.read[n], total),
            None => state.read[n].to_string(),
        };
        let left = match time_left(state.read, state.totals, elapsed) {
            Some((left, true)) => format!("about {} left", indicatif::HumanDuration(left)),
            // The side of unknown size adds its own time.
            Some((left, false)) => format!("at least {} left", indicatif::HumanDuration(left)),
            None => "time left unknown".to_string(),
        };
        tracing::info!(
            "reconciliation: elasticsearch {} read, cassandra {} read, {:.0} documents/s, {left}",
            show(0),
            show(1),
            (state.read[0] + state.read[1]) as f64 / elapsed
        );
    }
}

/// The time a reconciliation still needs at the pace it has kept so far (both sides' documents
/// together), once some documents were read and at least one side's total is known, and
/// whether both were (Cassandra's total is an estimate, so this is one too).
fn time_left(
    read: [u64; 2],
    totals: [Option<u64>; 2],
    elapsed_seconds: f64,
) -> Option<(Duration, bool)> {
    let done = read[0] + read[1];
    if done == 0 || elapsed_seconds <= 0.0 || totals.iter().all(Option::is_none) {
        return None;
    }
    let remaining: u64 = totals
        .iter()
        .zip(read)
        .filter_map(|(total, read)| total.map(|total| total.saturating_sub(read)))
        .sum();
    let seconds = remaining as f64 * elapsed_seconds / done as f64;
    let left = Duration::try_from_secs_f64(seconds).ok()?;
    Some((left, totals.iter().all(Option::is_some)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_left_follows_the_pace_so_far() {
        // 30,000 of 100,000 documents in 60 s: 70,000 more take 140 s.
        let left = time_left([20_000, 10_000], [Some(50_000), Some(50_000)], 60.0);
        assert_eq!(left, Some((Duration::from_secs(140), true)));
        // A side read past its estimate has nothing left.
        let left = time_left([50_000, 60_000], [Some(50_000), Some(50_000)], 10.0);
        assert_eq!(left, Some((Duration::ZERO, true)));
        // A side of unknown size: at least what the other needs.
        let left = time_left([10, 0], [Some(50), None], 1.0);
        assert_eq!(left, Some((Duration::from_secs(4), false)));
        // Unknown: both sizes, or any pace yet.
        assert_eq!(time_left([10, 0], [None, None], 1.0), None);
        assert_eq!(time_left([0, 0], [Some(50), Some(50)], 1.0), None);
    }

    #[test]
    fn a_first_start_says_how_much_the_selection_holds_and_how_to_narrow_it() {
        let size = SelectionSize {
            indices: 12,
            documents: 1_234_567,
        };
        let line = first_start_line("*", size, false, false);
        assert_eq!(
            line,
            "first start: --es-indices '*' selects 12 indices holding 1234567 documents; essync \
             follows their changes from now on (-s would reconcile them all), and writes the \
             table's changes into them (narrow the selection with --es-indices; --dry-run shows \
             what would change and writes nothing)"
        );
        let one = SelectionSize {
            indices: 1,
            documents: 1,
        };
        let line = first_start_line("shop-*", one, true, true);
        assert_eq!(
            line,
            "first start: --es-indices 'shop-*' selects 1 index holding 1 document; -s \
             reconciles every one of them with the table, then follows changes (narrow the \
             selection with --es-indices)"
        );
    }
}
