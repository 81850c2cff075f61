//! Runs the essync binary as a user would, and watches it from outside: its round summaries
//! (the round's own time, beside the process's), its peak resident memory (`VmHWM`), its CPU
//! time (`/proc/PID/stat`) and, through `--metrics`, the CPU time it spent in the policy.
//!
//! Nothing here links essync's library: any essync binary that keeps its command line, its
//! JSON logs (`--log-format json`, each round's figures as `report.*` fields) and its metrics
//! can be measured.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;
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

/// What one round's summary says.
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
    /// How long the round took, as essync measured it.
    pub duration_s: f64,
    /// Requests sent to Elasticsearch / Cassandra, when the summary counts them.
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
    /// The round's time, as essync measured it.
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
    /// Each line's message (a line that is not a JSON event, as it is).
    lines: Vec<String>,
    metrics: Option<String>,
    rounds: Vec<Round>,
    /// Requests per store and kind, from the metrics read as soon as a round's summary came
    /// (essync counts them at the end of each round, and a `--once` run exits right after its
    /// round).
    requests_by_kind: Vec<Requests>,
}

impl Log {
    fn push(&mut self, line: &str) {
        let event = Event::parse(line);
        if let Some(at) = event.message.split_once("metrics on http://") {
            self.metrics = at.1.split('/').next().map(str::to_string);
        }
        if let Some(round) = event.round() {
            self.rounds.push(round);
        }
        self.lines.push(if event.level.is_empty() {
            event.message
        } else {
            format!("{} {}", event.level, event.message)
        });
    }

    /// The last line that looks like an error, for messages.
    fn last_words(&self) -> String {
        self.lines
            .iter()
            .rev()
            .find(|l| l.contains("essync:") || l.starts_with("ERROR"))
            .or(self.lines.last())
            .cloned()
            .unwrap_or_else(|| "(nothing on stderr)".to_string())
    }
}

/// One line of essync's JSON log.
struct Event {
    level: String,
    message: String,
    fields: Value,
}

impl Event {
    /// The event a line holds; a line that is not JSON (the one line of a fatal error, a panic)
    /// is a message of its own.
    fn parse(line: &str) -> Event {
        match serde_json::from_str::<Value>(line) {
            Ok(mut event) if event.is_object() => {
                let fields = event["fields"].take();
                Event {
                    level: event["level"].as_str().unwrap_or_default().to_string(),
                    message: fields["message"].as_str().unwrap_or_default().to_string(),
                    fields,
                }
            }
            _ => Event {
                level: String::new(),
                message: line.to_string(),
                fields: Value::Null,
            },
        }
    }

    /// The round summary this event is, if it is one: its `report.*` fields.
    fn round(&self) -> Option<Round> {
        let count = |name: &str| self.fields[format!("report.{name}")].as_u64();
        Some(Round {
            number: count("round")?,
            read: [count("es_read")?, count("cassandra_read")?],
            written: [count("es_written")?, count("cassandra_written")?],
            errors: count("errors")?,
            duration_s: self.fields["report.duration_s"].as_f64()?,
            requests: count("es_requests")
                .zip(count("cassandra_requests"))
                .map(|(e, c)| [e, c]),
        })
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
            .args(["--log-format", "json"])
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
        let Some(round) = log.rounds.last().cloned() else {
            bail!("essync logged no round summary: {}", log.last_words());
        };
        let policy = samples.policy();
        let requests = log
            .rounds
            .iter()
            .filter_map(|r| r.requests)
            .reduce(|a, b| [a[0] + b[0], a[1] + b[1]]);
        Ok(Run {
            round_s: round.duration_s,
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
        self.start_with(table, indices, period, &[]).await
    }

    /// [`Essync::start`] with more options.
    pub async fn start_with(
        &self,
        table: &str,
        indices: &str,
        period: u32,
        options: &[&str],
    ) -> anyhow::Result<Running> {
        let mut child = self
            .command(table, indices, &period.to_string())
            .args(options)
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
    /// Waits for the next round's summary, at most `timeout`.
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

    /// How many lines logged so far hold `needle`.
    pub fn lines_with(&self, needle: &str) -> usize {
        self.log
            .lock()
            .map(|l| l.lines.iter().filter(|line| line.contains(needle)).count())
            .unwrap_or_default()
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Every round summary logged so far.
    pub fn rounds(&self) -> Vec<Round> {
        self.log
            .lock()
            .map(|l| l.rounds.clone())
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
            let (round, metrics) = log
                .lock()
                .ok()
                .map(|mut log| {
                    let before = log.rounds.len();
                    log.push(&line);
                    (log.rounds.get(before).cloned(), log.metrics.clone())
                })
                .unwrap_or_default();
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
    fn a_round_summary_is_read_from_its_json_fields() {
        let line = r#"{"timestamp":"2025-11-26T16:49:00.123456Z","level":"INFO","fields":{"message":"round 12: read es 40 / cassandra 35; wrote es 20 / cassandra 18; conflicts 2, in sync 35, filtered 0, errors 3, changed underneath 1; 0.31s, lag 10.0s","report.round":12,"report.es_read":40,"report.es_written":20,"report.es_deleted":0,"report.cassandra_read":35,"report.cassandra_written":18,"report.cassandra_deleted":0,"report.errors":3,"report.duration_s":0.312345,"report.lag_s":10.0},"target":"essync::sync"}"#;
        let mut log = Log::default();
        log.push(line);
        assert_eq!(
            log.rounds,
            [Round {
                number: 12,
                read: [40, 35],
                written: [20, 18],
                errors: 3,
                duration_s: 0.312345,
                requests: None,
            }]
        );
        log.push(r#"{"timestamp":"t","level":"INFO","fields":{"message":"serving metrics on http://127.0.0.1:4567/metrics"},"target":"essync"}"#);
        log.push(r#"{"timestamp":"t","level":"INFO","fields":{"message":"round 13: read es 1 / cassandra 1"},"target":"essync::sync"}"#);
        assert_eq!(log.rounds.len(), 1, "only the fields make a summary");
        assert_eq!(log.metrics.as_deref(), Some("127.0.0.1:4567"));
        log.push("essync: Cassandra is not reachable");
        assert_eq!(log.last_words(), "essync: Cassandra is not reachable");
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

    #[test]
    fn a_round_summary_gives_its_requests_when_it_counts_them() {
        let mut log = Log::default();
        log.push(r#"{"timestamp":"t","level":"INFO","fields":{"message":"round 1","report.round":1,"report.es_read":40,"report.es_written":20,"report.cassandra_read":35,"report.cassandra_written":18,"report.errors":0,"report.es_requests":12,"report.cassandra_requests":345,"report.duration_s":0.31},"target":"essync::sync"}"#);
        assert_eq!(log.rounds[0].requests, Some([12, 345]));
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
}
