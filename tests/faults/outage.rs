//! Servers lost and hung in the middle of a round: Cassandra stopped and started again, and
//! each server frozen with SIGSTOP while essync copies documents to it. essync says so in one
//! line per failed round, backs off, keeps its checkpoint and, once the server is back,
//! converges with nothing lost and nothing duplicated.
//!
//! These tests stop and freeze servers of their own, never the suite's (other tests use those
//! meanwhile): `ESSYNC_OUTAGE_SEARCH_PORT` and `ESSYNC_OUTAGE_CASSANDRA_PORT` name the ports of
//! an Elasticsearch and a Cassandra that `scripts/servers` started (with `ESSYNC_SEARCH_PORT`
//! and `ESSYNC_CASSANDRA_PORT`), as `scripts/test` does. Without them, each test says so and
//! runs nothing.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use elasticsearch::http::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::scenario::{Doc, Docs, Essync, KEYSPACE, Scenario, doc, now_ms, send_signal};

const SIGSTOP: i32 = 19;
const SIGCONT: i32 = 18;
/// The request timeouts essync runs with here (`--es-timeout`, `--cassandra-timeout`): a hung
/// server fails a round within them.
const TIMEOUT: &str = "3";
/// Documents on each side before the start, settled by `-s` before the fault.
const SETTLED: usize = 1000;
/// Documents written while essync runs: the fault lands while it copies them.
const IN_FLIGHT: usize = 2000;
/// How long the whole recovery may take: a Cassandra start, and the backoff that is running.
const RECOVERY: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Cassandra stopped (SIGTERM, as an operator or a crash would), then started again.
    CassandraLost,
    /// Cassandra frozen with SIGSTOP: connections stay open, nothing answers.
    CassandraHung,
    /// Elasticsearch frozen with SIGSTOP.
    ElasticsearchHung,
}

impl Fault {
    /// The store the fault hits, as essync's messages name it.
    fn store(self) -> &'static str {
        match self {
            Fault::CassandraLost | Fault::CassandraHung => "Cassandra",
            Fault::ElasticsearchHung => "Elasticsearch",
        }
    }
}

#[tokio::test]
async fn cassandra_lost_mid_round_and_back_essync_backs_off_and_converges() {
    outage(Fault::CassandraLost).await;
}

#[tokio::test]
async fn cassandra_hung_mid_round_essync_times_out_backs_off_and_converges() {
    outage(Fault::CassandraHung).await;
}

#[tokio::test]
async fn elasticsearch_hung_mid_round_essync_times_out_backs_off_and_converges() {
    outage(Fault::ElasticsearchHung).await;
}

async fn outage(fault: Fault) {
    let Some(servers) = Servers::from_env() else {
        eprintln!(
            "skipped: ESSYNC_OUTAGE_SEARCH_PORT and ESSYNC_OUTAGE_CASSANDRA_PORT name no servers \
             of their own to stop (scripts/test starts them)"
        );
        return;
    };
    let _one_at_a_time = crate::serial().await;
    let started = Instant::now();
    let s = Scenario::on("outage", &servers.es_url(), &servers.cassandra_node()).await;
    s.create_table().await;
    let (es_index, c_index) = (s.index("es"), s.index("c"));
    let mut expected = Docs::new();

    // Settled: documents on both sides, synced by -s before anything goes wrong.
    let settled_es = documents(&es_index, SETTLED, "settled");
    let settled_c = documents(&c_index, SETTLED, "settled");
    s.es_bulk(&settled_es).await;
    s.cql_bulk(&settled_c).await;
    expected.extend(settled_es.iter().cloned());
    expected.extend(settled_c.iter().cloned());
    let essync = s.essync(&[
        "-s",
        "--es-timeout",
        TIMEOUT,
        "--cassandra-timeout",
        TIMEOUT,
    ]);
    s.wait_until_within(RECOVERY, "the settled documents on both sides", |e, c| {
        e == &expected && c == &expected
    })
    .await;
    // One more round: the checkpoint covers them.
    essync.wait_rounds(essync.rounds().len(), 1).await;
    let before = checkpoint(&s).await;

    // In flight: written on the side that stays up, copied by essync to the one that fails.
    let (source, target) = match fault {
        Fault::ElasticsearchHung => (&c_index, &es_index),
        _ => (&es_index, &c_index),
    };
    let in_flight = documents(source, IN_FLIGHT, "in flight");
    if fault == Fault::ElasticsearchHung {
        s.cql_bulk(&in_flight).await;
    } else {
        s.es_bulk(&in_flight).await;
    }
    expected.extend(in_flight.iter().cloned());
    let arrived = wait_for_arrivals(&s, fault, source).await;

    // The fault, while essync writes the in-flight documents to the store it hits.
    let output_before = essync.output().len();
    let rounds_before = essync.rounds().len();
    let mut fault_guard = servers.inject(fault);
    let injected = Instant::now();

    // Meanwhile applications go on writing to the store that is up.
    let during = changes(source, &in_flight, "during");
    if fault == Fault::ElasticsearchHung {
        apply_in_cassandra(&s, &during, &mut expected).await;
    } else {
        apply_in_elasticsearch(&s, &during, &mut expected).await;
    }

    // Two failed rounds, each one line, the second after a longer wait.
    let failures = wait_for_failures(&essync, output_before, 2).await;
    let held = injected.elapsed();
    fault_guard.end(&servers);
    let recovered = Instant::now();
    wait_for_cassandra(&s).await;

    // After it: the store that was down is written too.
    let settled_there = if fault == Fault::ElasticsearchHung {
        &settled_es
    } else {
        &settled_c
    };
    let after = changes(target, settled_there, "after");
    if fault == Fault::ElasticsearchHung {
        apply_in_elasticsearch(&s, &after, &mut expected).await;
    } else {
        apply_in_cassandra(&s, &after, &mut expected).await;
    }
    let (e, c) = s
        .wait_until_within(RECOVERY, "both stores as the test wrote them", |e, c| {
            e == &expected && c == &expected
        })
        .await;
    let converged = recovered.elapsed();
    assert_eq!(e.len(), expected.len(), "documents lost or duplicated");
    assert_eq!(c.len(), expected.len(), "rows lost or duplicated");

    // What essync said: one line per failed round, naming the store, with a growing wait, and
    // nothing else above INFO while the store was down.
    let output = essync.output();
    let lines = &output[output_before..];
    assert!(
        !output
            .iter()
            .any(|l| l.contains("panicked") || l.contains("backtrace")),
        "{}",
        output.join("\n")
    );
    let waits: Vec<u64> = failures.iter().filter_map(|l| wait_of(l)).collect();
    for line in &failures {
        assert!(
            line.contains(fault.store()),
            "the line names no store: {line}"
        );
    }
    assert!(
        waits.len() >= 2 && waits[1] > waits[0],
        "no backoff: {failures:#?}"
    );
    let noise: Vec<&String> = lines
        .iter()
        .filter(|l| (l.contains(" WARN ") || l.contains(" ERROR ")) && wait_of(l).is_none())
        .collect();
    assert!(
        noise.is_empty(),
        "more than one line per failed round: {noise:#?}"
    );

    // The checkpoint was kept: nothing of it went back, and the rounds after the fault read
    // what changed in Elasticsearch, not every document again. (Cassandra's reads say nothing
    // here: every row of this test is recent, so each round whose safety window covers the
    // rows' writes reads them all again, checkpoint kept or not; `assert_kept` checks its
    // checkpoint.)
    let kept = checkpoint(&s).await;
    assert_kept(&before, &kept);
    let rounds = essync.rounds();
    let read_es: u64 = rounds[rounds_before..].iter().map(|r| r.read[0]).sum();
    let read_c: u64 = rounds[rounds_before..].iter().map(|r| r.read[1]).sum();
    assert!(
        (read_es as usize) < e.len(),
        "the rounds after the fault read {read_es} of {} Elasticsearch documents: read from the \
         start again; the rounds:\n{}",
        e.len(),
        rounds[rounds_before..]
            .iter()
            .map(|round| round.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );

    // And nothing is written for ever.
    let settled = essync.rounds().len();
    essync.wait_rounds(settled, 1).await;
    let settled = essync.rounds().len();
    for round in essync.wait_rounds(settled, 2).await {
        assert!(round.written == [0, 0], "an idle round wrote: {round}");
    }
    eprintln!(
        "outage {fault:?}: injected after {arrived} of {IN_FLIGHT} in-flight documents had \
         arrived, held {:.1}s for {} failed rounds (waits {waits:?}), converged {:.1}s after the \
         recovery, reads after the fault es {read_es} / cassandra {read_c}, {} documents, {:.0}s \
         in all",
        held.as_secs_f64(),
        failures.len(),
        converged.as_secs_f64(),
        expected.len(),
        started.elapsed().as_secs_f64()
    );
    eprintln!("{}", failures.join("\n"));
    for index in [&es_index, &c_index] {
        s.es_request(Method::Delete, &format!("/{index}"), None)
            .await;
    }
}

/// `count` new documents in `index`.
fn documents(index: &str, count: usize, what: &str) -> Vec<(Uuid, Doc)> {
    (0..count)
        .map(|n| {
            let content = json!({"what": what, "n": n, "pad": "x".repeat(200)});
            (Uuid::new_v4(), doc(index, "t", now_ms(), content))
        })
        .collect()
}

/// What applications do to a store: new documents, updates of some of `existing`, deletes of
/// others.
struct Changes {
    created: Vec<(Uuid, Doc)>,
    updated: Vec<(Uuid, Doc)>,
    deleted: Vec<Uuid>,
}

fn changes(index: &str, existing: &[(Uuid, Doc)], what: &str) -> Changes {
    let updated = existing
        .iter()
        .take(30)
        .map(|(id, _)| {
            let content = json!({"what": format!("{what}: updated"), "at": now_ms()});
            (*id, doc(index, "t", now_ms(), content))
        })
        .collect();
    let deleted = existing
        .iter()
        .skip(30)
        .take(20)
        .map(|(id, _)| *id)
        .collect();
    Changes {
        created: documents(index, 40, what),
        updated,
        deleted,
    }
}

async fn apply_in_elasticsearch(s: &Scenario, changes: &Changes, expected: &mut Docs) {
    s.es_bulk(&changes.created).await;
    s.es_bulk(&changes.updated).await;
    for id in &changes.deleted {
        let index = expected[id].index.clone();
        s.es_delete(&index, *id).await;
    }
    record(changes, expected);
}

async fn apply_in_cassandra(s: &Scenario, changes: &Changes, expected: &mut Docs) {
    s.cql_bulk(&changes.created).await;
    s.cql_bulk(&changes.updated).await;
    s.cql_delete(&changes.deleted).await;
    record(changes, expected);
}

fn record(changes: &Changes, expected: &mut Docs) {
    expected.extend(changes.created.iter().cloned());
    expected.extend(changes.updated.iter().cloned());
    for id in &changes.deleted {
        expected.remove(id);
    }
}

/// Waits until some of the in-flight documents (of `index`) reached the store the fault will
/// hit, so that the fault falls in the round that copies them; returns how many had.
async fn wait_for_arrivals(s: &Scenario, fault: Fault, index: &str) -> u64 {
    let deadline = Instant::now() + RECOVERY;
    let settled = SETTLED as u64;
    loop {
        let held = if fault == Fault::ElasticsearchHung {
            let answer = s
                .es_request(Method::Get, &format!("/{index}/_count"), None)
                .await;
            answer["count"].as_u64().unwrap_or(0)
        } else {
            let rows = s
                .cql
                .query_unpaged(format!("SELECT COUNT(*) FROM {}", s.table()), ())
                .await
                .expect("count rows")
                .into_rows_result()
                .expect("rows");
            let (count,): (i64,) = rows.single_row().expect("one count");
            // The settled documents of both sides are rows already.
            (count as u64).saturating_sub(settled)
        };
        // In Elasticsearch, the index held the settled rows of Cassandra already.
        let arrived = held.saturating_sub(settled);
        if arrived > 0 {
            return arrived;
        }
        assert!(
            Instant::now() < deadline,
            "no in-flight document reached the store"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until essync printed `count` failed rounds after line `from`; returns their lines.
async fn wait_for_failures(essync: &Essync, from: usize, count: usize) -> Vec<String> {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let output = essync.output();
        let failures: Vec<String> = output[from.min(output.len())..]
            .iter()
            .filter(|l| wait_of(l).is_some())
            .cloned()
            .collect();
        if failures.len() >= count {
            return failures;
        }
        assert!(
            Instant::now() < deadline,
            "essync did not report {count} failed rounds:\n{}",
            output[from.min(output.len())..].join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the test's own CQL session can write again (its driver reconnects on its own).
async fn wait_for_cassandra(s: &Scenario) {
    let deadline = Instant::now() + RECOVERY;
    while s
        .cql
        .query_unpaged(format!("SELECT id FROM {} LIMIT 1", s.table()), ())
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "Cassandra did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The wait a failed-round line announces ("... trying again in 4s").
fn wait_of(line: &str) -> Option<u64> {
    let (_, rest) = line.split_once("failed: ")?;
    let (_, wait) = rest.rsplit_once("trying again in ")?;
    wait.strip_suffix('s')?.parse().ok()
}

/// The saved checkpoint of the scenario's sync, read with plain CQL: the whole, with the
/// Cassandra feed's position of its own column.
async fn checkpoint(s: &Scenario) -> Value {
    let rows = s
        .cql
        .query_unpaged(
            format!("SELECT checkpoint, feeds FROM {KEYSPACE}.essync_checkpoints WHERE sync = ?"),
            (&s.name,),
        )
        .await
        .expect("read the checkpoint")
        .into_rows_result()
        .expect("rows");
    let (text, feeds): (String, Option<String>) = rows.single_row().expect("a saved checkpoint");
    let mut checkpoint: Value = serde_json::from_str(&text).expect("checkpoint JSON");
    if let Some(feeds) = feeds {
        checkpoint["cassandra"] = serde_json::from_str(&feeds).expect("feeds JSON");
    }
    checkpoint
}

/// No position of `before` went back in `after`: not a shard of Elasticsearch, not the
/// Cassandra feed, and no reconciliation started again.
fn assert_kept(before: &Value, after: &Value) {
    assert!(
        after["reconciliation"].is_null(),
        "a reconciliation again: {after}"
    );
    let recent = |c: &Value| c["cassandra"]["recent_since"].as_i64().unwrap_or(0);
    assert!(
        recent(after) >= recent(before),
        "the Cassandra feed went back: {before} -> {after}"
    );
    let indices = before["elasticsearch"]["indices"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(!indices.is_empty(), "no Elasticsearch position: {before}");
    for (uuid, position) in indices {
        let shards = |p: &Value| -> Vec<i64> {
            p["shards"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default()
        };
        let (was, is) = (
            shards(&position),
            shards(&after["elasticsearch"]["indices"][&uuid]),
        );
        assert!(
            is.len() >= was.len() && was.iter().zip(&is).all(|(w, i)| i >= w),
            "index {uuid} went back: {was:?} -> {is:?}"
        );
    }
}

/// The servers these tests may stop.
struct Servers {
    search_port: u16,
    cassandra_port: u16,
}

impl Servers {
    fn from_env() -> Option<Self> {
        let port = |name: &str| std::env::var(name).ok()?.parse::<u16>().ok();
        let servers = Self {
            search_port: port("ESSYNC_OUTAGE_SEARCH_PORT")?,
            cassandra_port: port("ESSYNC_OUTAGE_CASSANDRA_PORT")?,
        };
        // Never the suite's own servers: other tests use them meanwhile.
        let shared = |url: String| url.rsplit(':').next().map(str::to_string);
        assert_ne!(
            Some(servers.search_port.to_string()),
            shared(crate::support::es_url()),
            "ESSYNC_OUTAGE_SEARCH_PORT is the suite's own search server"
        );
        assert_ne!(
            Some(servers.cassandra_port.to_string()),
            shared(crate::support::cassandra_node()),
            "ESSYNC_OUTAGE_CASSANDRA_PORT is the suite's own Cassandra"
        );
        Some(servers)
    }

    fn es_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.search_port)
    }

    fn cassandra_node(&self) -> String {
        format!("127.0.0.1:{}", self.cassandra_port)
    }

    /// Runs `scripts/servers ARGS` on these servers; its standard output.
    fn script(&self, args: &[&str]) -> String {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/servers");
        let output = Command::new(script)
            .args(args)
            .env("ESSYNC_SEARCH_PORT", self.search_port.to_string())
            .env("ESSYNC_CASSANDRA_PORT", self.cassandra_port.to_string())
            .env_remove("ESSYNC_SECURE")
            .output()
            .expect("run scripts/servers");
        assert!(
            output.status.success(),
            "scripts/servers {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The pid of a server (`scripts/servers status` shows it for the servers it started).
    fn pid(&self, which: &str) -> u32 {
        let status = self.script(&["status", which]);
        status
            .split_once(" pid ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("no pid for {which} in: {status}"))
    }

    fn inject(&self, fault: Fault) -> Injected {
        match fault {
            Fault::CassandraLost => {
                self.script(&["down", "cassandra"]);
                Injected::Stopped {
                    search_port: self.search_port,
                    cassandra_port: self.cassandra_port,
                }
            }
            Fault::CassandraHung => Injected::frozen(self.pid("cassandra")),
            Fault::ElasticsearchHung => Injected::frozen(self.pid("search")),
        }
    }
}

/// A fault under way; ended when dropped, so that a failing test leaves no server down.
enum Injected {
    Stopped {
        search_port: u16,
        cassandra_port: u16,
    },
    Frozen(u32),
    Over,
}

impl Injected {
    fn frozen(pid: u32) -> Self {
        send_signal(pid, SIGSTOP);
        Injected::Frozen(pid)
    }

    /// Ends the fault: the server runs again (and, once started, answers).
    fn end(&mut self, servers: &Servers) {
        match std::mem::replace(self, Injected::Over) {
            Injected::Stopped { .. } => {
                servers.script(&["up", "cassandra"]);
            }
            Injected::Frozen(pid) => send_signal(pid, SIGCONT),
            Injected::Over => {}
        }
    }
}

impl Drop for Injected {
    fn drop(&mut self) {
        // A test that failed meanwhile: no assertion here (a panic while unwinding aborts).
        match *self {
            Injected::Stopped {
                search_port,
                cassandra_port,
            } => {
                let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/servers");
                let _ = Command::new(script)
                    .args(["up", "cassandra"])
                    .env("ESSYNC_SEARCH_PORT", search_port.to_string())
                    .env("ESSYNC_CASSANDRA_PORT", cassandra_port.to_string())
                    .env_remove("ESSYNC_SECURE")
                    .status();
            }
            Injected::Frozen(pid) => {
                let _ = Command::new("kill")
                    .arg(format!("-{SIGCONT}"))
                    .arg(pid.to_string())
                    .status();
            }
            Injected::Over => {}
        }
    }
}
