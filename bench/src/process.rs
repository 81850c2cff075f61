//! Runs the essync binary as a user would, and watches it from outside: its round summary line
//! (the round's own time, beside the process's), its peak resident memory (`VmHWM`), its CPU
//! time (`/proc/PID/stat`) and, through `--metrics`, the CPU time it spent in the policy.
//!
//! Nothing here links essync's library: any essync binary that keeps its command line, its
//! round summary line and its metrics can be measured.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, FixedOffset};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How often memory and CPU are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// Every how many samples the metrics endpoint is read too (it costs essync a request).
const METRICS_EVERY: u32 = 5;

/// The essync binary and the servers it is pointed at.
#[derive(Debug, Clone)]
pub struct Essync {
    /// The binary.
    pub path: PathBuf,
    /// `--es-url`.
    pub es_url: String,
    /// `--cassandra`.
    pub cassandra: String,
    /// The keyspace of every table it syncs.
    pub keyspace: String,
}

/// What one round's summary line says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Round {
    /// The round's number in its process.
    pub number: u64,
    /// Documents read from Elasticsearch / Cassandra.
    pub read: [u64; 2],
    /// Documents written to Elasticsearch / Cassandra.
    pub written: [u64; 2],
    /// Documents that failed.
    pub errors: u64,
    /// The duration printed (to the hundredth of a second).
    pub printed_s: f64,
    /// Requests sent to Elasticsearch / Cassandra, when the line counts them.
    pub requests: Option<[u64; 2]>,
}

/// Requests of one kind sent to one store, from `essync_requests_total{store,kind}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Requests {
    /// `elasticsearch` or `cassandra`.
    pub store: String,
    /// What the requests did, as essync names it.
    pub kind: String,
    /// How many.
    pub count: f64,
}

/// One `--once` run, measured.
#[derive(Debug, Clone)]
pub struct Run {
    /// The round's summary.
    pub round: Round,
    /// The round's time: the printed one, or the same to the microsecond from the log lines'
    /// timestamps when they agree with it.
    pub round_s: f64,
    /// From spawning the process to its exit.
    pub process_s: f64,
    /// Peak resident memory, MiB.
    pub peak_rss_mib: f64,
    /// CPU seconds (user + system) at the last sample.
    pub cpu_s: f64,
    /// Policy CPU over process CPU between the first and the last metrics sample, when the
    /// binary exports `essync_policy_cpu_seconds_total`.
    pub policy_share: Option<f64>,
    /// Policy CPU seconds over the same span.
    pub policy_cpu_s: Option<f64>,
    /// Requests sent to Elasticsearch / Cassandra by all its rounds, when their summary lines
    /// count them.
    pub requests: Option<[u64; 2]>,
    /// Requests per store and kind, read from the metrics right after the last round's summary
    /// line (empty when the binary does not export them, or exited before they were read).
    pub requests_by_kind: Vec<Requests>,
}

/// What is sampled while a `--once` run goes on.
#[derive(Debug, Default)]
struct Samples {
    count: u32,
    peak_kib: u64,
    cpu_s: f64,
    /// Policy CPU and process CPU seconds at the first and the last metrics sample.
    policy: Option<[(f64, f64); 2]>,
}

impl Samples {
    /// Memory and CPU every time; the metrics at the first chance and every
    /// [`METRICS_EVERY`] samples after.
    async fn take(&mut self, pid: u32, metrics: Option<String>) {
        self.count += 1;
        if let Some(kib) = peak_resident_kib(pid) {
            self.peak_kib = self.peak_kib.max(kib);
        }
        if let Some(cpu) = cpu_seconds(pid) {
            self.cpu_s = cpu;
        }
        let due = self.policy.is_none() || self.count.is_multiple_of(METRICS_EVERY);
        let Some(address) = metrics.filter(|_| due) else {
            return;
        };
        let Ok(text) = get_metrics(&address).await else {
            return;
        };
        if let Some(policy) = metric(&text, "essync_policy_cpu_seconds_total")
            && let Some(cpu) = cpu_seconds(pid)
        {
            let first = self.policy.map_or((policy, cpu), |p| p[0]);
            self.policy = Some([first, (policy, cpu)]);
        }
    }

    /// Policy CPU seconds, and their share of the process's CPU, between the first and the
    /// last metrics sample.
    fn policy(&self) -> Option<(f64, f64)> {
        let [(p0, c0), (p1, c1)] = self.policy?;
        (c1 > c0).then(|| (p1 - p0, (p1 - p0) / (c1 - c0)))
    }
}

/// What the log says as it comes.
#[derive(Debug, Default)]
struct Log {
    lines: Vec<String>,
    metrics: Option<String>,
    started: Option<DateTime<FixedOffset>>,
    rounds: Vec<(Round, Option<DateTime<FixedOffset>>)>,
    /// Requests per store and kind, from the metrics read as soon as a round's summary line
    /// came (essync counts them at the end of each round, and a `--once` run exits right
    /// after its round).
    requests_by_kind: Vec<Requests>,
}

impl Log {
    fn push(&mut self, line: String) {
        if let Some(at) = line.split_once("metrics on http://") {
            self.metrics = at.1.split('/').next().map(str::to_string);
        }
        if line.contains("syncing Elasticsearch (") {
            self.started = timestamp(&line);
        }
        if let Some(round) = parse_round(&line) {
            self.rounds.push((round, timestamp(&line)));
        }
        self.lines.push(line);
    }

    /// The last line that looks like an error, for messages.
    fn last_words(&self) -> String {
        self.lines
            .iter()
            .rev()
            .find(|l| l.starts_with("essync:") || l.contains("ERROR"))
            .or(self.lines.last())
            .cloned()
            .unwrap_or_else(|| "(nothing on stderr)".to_string())
    }
}

impl Essync {
    fn command(&self, table: &str, indices: &str, period: &str) -> Command {
        let mut command = Command::new(&self.path);
        // Only what the command line says: no setting of the caller's environment leaks in.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ESSYNC_") {
                command.env_remove(name);
            }
        }
        command
            .env(
                "RUST_LOG",
                std::env::var("ESSYNC_BENCH_ESSYNC_LOG").unwrap_or_else(|_| "essync=info".into()),
            )
            .args(["--es-url", &self.es_url, "--cassandra", &self.cassandra])
            .args(["--es-indices", indices, "--metrics", "127.0.0.1:0"])
            .arg(format!("{}:{table}", self.keyspace))
            .arg(period)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// `essync [-s] --once KEYSPACE:TABLE 1` on `indices`, watched until it exits.
    pub async fn once(&self, table: &str, indices: &str, reconcile: bool) -> anyhow::Result<Run> {
        let mut command = self.command(table, indices, "1");
        command.arg("--once");
        if reconcile {
            command.arg("-s");
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", self.path.display()))?;
        let pid = child
            .id()
            .context("essync exited before it could be watched")?;
        let log = Arc::new(Mutex::new(Log::default()));
        let reader = read_log(&mut child, log.clone(), None)?;
        let waiter = tokio::spawn(async move {
            let status = child.wait().await;
            (status, Instant::now())
        });

        let mut samples = Samples::default();
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        while !waiter.is_finished() {
            tick.tick().await;
            let address = log.lock().ok().and_then(|l| l.metrics.clone());
            samples.take(pid, address).await;
        }
        let (status, ended) = waiter.await.context("the essync watcher failed")?;
        let status = status.context("cannot wait for essync")?;
        let _ = reader.await;
        let process_s = (ended - started).as_secs_f64();
        let log = log
            .lock()
            .map_err(|_| anyhow::anyhow!("the log reader failed"))?;
        if !status.success() {
            bail!("essync failed ({status}): {}", log.last_words());
        }
        let Some((round, at)) = log.rounds.last().cloned() else {
            bail!("essync logged no round summary line: {}", log.last_words());
        };
        let policy = samples.policy();
        let requests = log
            .rounds
            .iter()
            .filter_map(|(r, _)| r.requests)
            .reduce(|a, b| [a[0] + b[0], a[1] + b[1]]);
        Ok(Run {
            round_s: precise(&round, log.started, at),
            round,
            process_s,
            peak_rss_mib: samples.peak_kib as f64 / 1024.0,
            cpu_s: samples.cpu_s,
            policy_share: policy.map(|p| p.1),
            policy_cpu_s: policy.map(|p| p.0),
            requests,
            requests_by_kind: log.requests_by_kind.clone(),
        })
    }

    /// `essync KEYSPACE:TABLE PERIOD` on `indices`, running until [`Running::stop`].
    pub async fn start(&self, table: &str, indices: &str, period: u32) -> anyhow::Result<Running> {
        let mut child = self
            .command(table, indices, &period.to_string())
            .spawn()
            .with_context(|| format!("cannot start {}", self.path.display()))?;
        let log = Arc::new(Mutex::new(Log::default()));
        let (rounds_tx, rounds) = mpsc::unbounded_channel();
        let reader = read_log(&mut child, log.clone(), Some(rounds_tx))?;
        Ok(Running {
            child,
            log,
            rounds,
            reader,
        })
    }
}

/// A running essync.
pub struct Running {
    child: Child,
    log: Arc<Mutex<Log>>,
    rounds: mpsc::UnboundedReceiver<Round>,
    reader: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Waits for the next round's summary line, at most `timeout`.
    pub async fn next_round(&mut self, timeout: Duration) -> anyhow::Result<Round> {
        match tokio::time::timeout(timeout, self.rounds.recv()).await {
            Ok(Some(round)) => Ok(round),
            Ok(None) => bail!("essync stopped: {}", self.last_words()),
            Err(_) => bail!(
                "essync finished no round in {}s: {}",
                timeout.as_secs(),
                self.last_words()
            ),
        }
    }

    fn last_words(&self) -> String {
        self.log.lock().map(|l| l.last_words()).unwrap_or_default()
    }

    /// Every round summary logged so far.
    pub fn rounds(&self) -> Vec<Round> {
        self.log
            .lock()
            .map(|l| l.rounds.iter().map(|r| r.0.clone()).collect())
            .unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 30 s).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id()
            && let Some(pid) = rustix::process::Pid::from_raw(pid as i32)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let status = match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                self.child.kill().await?;
                bail!("essync did not stop within 30 s of SIGTERM");
            }
        };
        let _ = (&mut self.reader).await;
        if !status.success() {
            bail!("essync failed ({status}): {}", self.last_words());
        }
        Ok(())
    }
}

/// Reads the child's stderr line by line into `log` (and round summaries into `rounds`).
fn read_log(
    child: &mut Child,
    log: Arc<Mutex<Log>>,
    rounds: Option<mpsc::UnboundedSender<Round>>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let stderr = child
        .stderr
        .take()
        .context("essync's stderr is not piped")?;
    Ok(tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(target: "essync_bench::essync", "{line}");
            let round = parse_round(&line);
            let metrics = log.lock().ok().and_then(|mut log| {
                log.push(line);
                log.metrics.clone()
            });
            // Only for `--once` runs (no round channel): a running essync is left unscraped.
            if round.is_some()
                && rounds.is_none()
                && let Some(address) = metrics
                && let Ok(text) = get_metrics(&address).await
                && let Ok(mut log) = log.lock()
            {
                log.requests_by_kind = requests_by_kind(&text);
            }
            if let (Some(round), Some(rounds)) = (round, &rounds) {
                let _ = rounds.send(round);
            }
        }
    }))
}

/// The round time to report: the printed one (hundredths of a second), refined to the
/// microsecond by the log timestamps of the line before the round ("syncing ...") and of the
/// summary line when both exist and agree with the printed time. Only the first round of a
/// process has such a line before it.
fn precise(
    round: &Round,
    started: Option<DateTime<FixedOffset>>,
    ended: Option<DateTime<FixedOffset>>,
) -> f64 {
    if round.number == 1
        && let (Some(started), Some(ended)) = (started, ended)
        && let Some(micros) = (ended - started).num_microseconds()
    {
        let measured = micros as f64 / 1e6;
        if (measured - round.printed_s).abs() <= 0.02 {
            return measured;
        }
    }
    round.printed_s
}

/// The timestamp a log line starts with (tracing's RFC 3339 with microseconds).
fn timestamp(line: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(line.split_whitespace().next()?).ok()
}

/// Parses essync's round summary line:
/// `round 12: read es 40 / cassandra 35; wrote es 20 / cassandra 18; conflicts 2, in sync 35,
/// filtered 0, errors 0, requests es 3 / cassandra 9; 0.31s, lag 10.0s` (the requests only
/// from builds that count them).
pub fn parse_round(line: &str) -> Option<Round> {
    let (head, rest) = line.split_once(": read es ")?;
    let number = head.rsplit_once("round ")?.1.trim().parse().ok()?;
    let (read, rest) = rest.split_once("; wrote es ")?;
    let (written, rest) = rest.split_once(';')?;
    let pair = |text: &str| -> Option<[u64; 2]> {
        let (es, cassandra) = text.split_once(" / cassandra ")?;
        Some([es.trim().parse().ok()?, cassandra.trim().parse().ok()?])
    };
    let errors = rest
        .split_once("errors ")
        .and_then(|(_, e)| e.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or(0);
    let requests = rest
        .split_once(", requests es ")
        .and_then(|(_, r)| pair(r.split(';').next()?));
    let (_, tail) = rest.rsplit_once("; ")?;
    let printed_s = tail.split_once("s, lag")?.0.trim().parse().ok()?;
    Some(Round {
        number,
        read: pair(read)?,
        written: pair(written)?,
        errors,
        printed_s,
        requests,
    })
}

/// `VmHWM` of a process, KiB.
fn peak_resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// User + system CPU seconds of a process.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: state is
    // field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    Some((utime + stime) as f64 / ticks as f64)
}

/// GET /metrics from `address` (host:port).
async fn get_metrics(address: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut answer)).await??;
    Ok(answer)
}

/// The value of an unlabelled metric in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Every sample of `essync_requests_total{store="...",kind="..."}`, in the exposition's order.
pub fn requests_by_kind(text: &str) -> Vec<Requests> {
    text.lines()
        .filter_map(|line| {
            let (labels, value) = line
                .strip_prefix("essync_requests_total{")?
                .split_once('}')?;
            let label = |name: &str| {
                labels.split(',').find_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    (key.trim() == name).then(|| value.trim().trim_matches('"').to_string())
                })
            };
            Some(Requests {
                store: label("store")?,
                kind: label("kind")?,
                count: value.trim().parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_is_read_with_its_counts_and_time() {
        let line = "2025-11-26T16:49:00.123456Z  INFO essync::sync: round 12: read es 40 / \
                    cassandra 35; wrote es 20 / cassandra 18; conflicts 2, in sync 35, filtered \
                    0, errors 3, changed underneath 1; 0.31s, lag 10.0s";
        let round = parse_round(line).expect("a summary line");
        assert_eq!(
            round,
            Round {
                number: 12,
                read: [40, 35],
                written: [20, 18],
                errors: 3,
                printed_s: 0.31,
                requests: None,
            }
        );
        assert_eq!(
            timestamp(line).map(|t| t.timestamp_micros()),
            Some(1_764_175_740_123_456)
        );
        assert!(parse_round("INFO essync::sync: syncing Elasticsearch (x) with a:b").is_none());
    }

    #[test]
    fn the_summary_line_gives_its_requests_when_it_counts_them() {
        let line = "INFO essync::sync: round 1: read es 40 / cassandra 35; wrote es 20 / \
                    cassandra 18; conflicts 2, in sync 35, filtered 0, errors 0, own writes read \
                    back 18, requests es 12 / cassandra 345; 0.31s, lag 10.0s";
        let round = parse_round(line).expect("a summary line");
        assert_eq!(round.requests, Some([12, 345]));
        assert_eq!(round.errors, 0);
        assert_eq!(round.printed_s, 0.31);
    }

    #[test]
    fn requests_are_read_per_store_and_kind() {
        let text = "# TYPE essync_requests_total counter\n\
                    essync_requests_total{store=\"cassandra\",kind=\"ledger_read\"} 40\n\
                    essync_requests_total{kind=\"bulk\",store=\"elasticsearch\"} 3\n\
                    essync_rounds_total 1\n";
        let requests = requests_by_kind(text);
        assert_eq!(
            requests,
            [
                Requests {
                    store: "cassandra".into(),
                    kind: "ledger_read".into(),
                    count: 40.0
                },
                Requests {
                    store: "elasticsearch".into(),
                    kind: "bulk".into(),
                    count: 3.0
                }
            ]
        );
    }

    #[test]
    fn the_round_time_is_refined_only_when_the_timestamps_agree() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).ok();
        let round = Round {
            number: 1,
            printed_s: 0.01,
            ..Round::default()
        };
        let t0 = at("2025-01-01T00:00:00.000000Z");
        let near = precise(&round, t0, at("2025-01-01T00:00:00.012345Z"));
        assert!((near - 0.012345).abs() < 1e-9, "{near}");
        assert_eq!(precise(&round, t0, at("2025-01-01T00:00:03Z")), 0.01);
        let later = Round { number: 2, ..round };
        assert_eq!(precise(&later, t0, at("2025-01-01T00:00:00.012Z")), 0.01);
    }

    #[test]
    fn metrics_are_read_by_exact_name() {
        let text = "# HELP essync_policy_cpu_seconds_total x\nessync_policy_cpu_seconds_total_x 9\n\
                    essync_policy_cpu_seconds_total 1.25\n";
        assert_eq!(metric(text, "essync_policy_cpu_seconds_total"), Some(1.25));
        assert_eq!(metric(text, "essync_rounds_total"), None);
    }

    #[test]
    fn this_process_has_a_peak_and_cpu_time() {
        let pid = std::process::id();
        assert!(peak_resident_kib(pid).is_some_and(|k| k > 0));
        assert!(cpu_seconds(pid).is_some());
    }
}
