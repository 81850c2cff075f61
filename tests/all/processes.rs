//! Several essync processes on one table, as a rolling deploy, an overlapping restart or an
//! operator's second copy start them: one syncs, the others wait their turn, and take over from
//! the checkpoint when it stops or dies.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::support::scenario::{Essync, Scenario, doc, now_ms, run_to_end};

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;
const SIGCONT: i32 = 18;
const SIGSTOP: i32 = 19;

const WAITING: &str = "is synced by another essync";

/// Writes a new document on one side (Cassandra, or Elasticsearch) and waits until it is on the
/// other: whichever process holds the table synced it.
async fn a_write_is_synced(s: &Scenario, in_cassandra: bool, who: &str) {
    let id = Uuid::new_v4();
    let written = doc(&s.index("a"), "t", now_ms(), serde_json::json!({"by": who}));
    if in_cassandra {
        s.cql_write(id, &written).await;
    } else {
        s.es_write(id, &written).await;
    }
    s.wait_until(&format!("{who} copies {id}"), |e, c| {
        if in_cassandra {
            e.contains_key(&id)
        } else {
            c.contains_key(&id)
        }
    })
    .await;
}

/// What `essync status` prints for the scenario's table.
fn status(s: &Scenario) -> String {
    let (code, stdout, stderr) = run_to_end(&[
        "--cassandra".to_string(),
        crate::support::cassandra_node(),
        "status".to_string(),
        s.target(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    stdout
}

#[tokio::test]
async fn a_second_process_waits_and_takes_over_when_the_first_stops_or_dies() {
    let s = Scenario::new("lease").await;
    let first = s.essync(&[]);
    first.wait_rounds(0, 1).await;

    // A second process on the same table waits, and syncs nothing meanwhile.
    let second = s.essync(&[]);
    second.wait_for_line(WAITING).await;
    a_write_is_synced(&s, true, "the first process").await;
    assert!(second.rounds().is_empty(), "{}", second.output().join("\n"));
    // `essync status` names the holder.
    let stdout = status(&s);
    assert!(stdout.contains("holds the table's lease"), "{stdout}");
    assert!(stdout.contains("following changes"), "{stdout}");

    // The first stops (a deploy's SIGTERM): the second takes over at once.
    first.signal(SIGTERM);
    assert!(first.wait_exit().await.success());
    second.wait_for_line("this one takes over").await;
    second.wait_rounds(0, 1).await;
    a_write_is_synced(&s, false, "the second process").await;

    // A third waits; the second dies without a word: a process of the same host that no
    // longer runs gives its lease up at once, without waiting for it to lapse.
    let third = s.essync(&[]);
    third.wait_for_line(WAITING).await;
    second.signal(SIGKILL);
    third
        .wait_for_line("from a process of this host that no longer runs")
        .await;
    third.wait_rounds(0, 1).await;
    a_write_is_synced(&s, true, "the third process").await;
}

// A rolling deploy may stop a process it has just started: the stop is clean, never the
// default death by SIGTERM. Here Cassandra accepts the connection and never answers, so the
// process is still connecting when the signal comes.
#[tokio::test]
async fn a_sigterm_while_essync_starts_stops_it_cleanly() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_address = silent.local_addr().expect("address").to_string();
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().collect();
        drop(held);
    });
    let args: Vec<String> = [
        "--es-url",
        &crate::support::es_url(),
        "--cassandra",
        &silent_address,
        "--cassandra-timeout",
        "60",
        "essync_never:connected",
        "5",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let starting = Essync::start(&args);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    starting.signal(SIGTERM);
    let exit = starting.wait_exit().await;
    assert!(exit.success(), "{exit}: {}", starting.output().join("\n"));
    starting
        .wait_for_line("stopped before the sync started")
        .await;
}

#[tokio::test]
async fn a_dry_run_takes_no_lease_and_runs_beside_the_syncing_process() {
    let s = Scenario::new("leasedry").await;
    let syncing = s.essync(&[]);
    syncing.wait_rounds(0, 1).await;
    let dry = s.essync(&["--dry-run", "--once"]);
    assert!(
        dry.wait_exit().await.success(),
        "{}",
        dry.output().join("\n")
    );
    assert!(!dry.output().iter().any(|l| l.contains(WAITING)));
    assert_eq!(dry.rounds().len(), 1);
}

#[tokio::test]
async fn a_frozen_holder_whose_lease_was_taken_stops_without_saving_a_checkpoint() {
    let s = Scenario::new("leasefrozen").await;
    let first = s.essync(&[]);
    first.wait_rounds(0, 1).await;
    let second = s.essync(&[]);
    second.wait_for_line(WAITING).await;

    // Frozen (alive, on this host): its lease lapses after the TTL, and the second takes over.
    first.signal(SIGSTOP);
    let start = std::time::Instant::now();
    while second.rounds().is_empty() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "the second process did not take over:\n{}",
            second.output().join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    a_write_is_synced(&s, true, "the second process").await;

    // Thawed, the first finds its lease taken: it stops with an error and saves nothing. A
    // checkpoint it sent just before the freeze may be answered after the thaw (it applied
    // before the takeover, on a slow cluster): one round may end then, never a second.
    let rounds_before = first.rounds().len();
    first.signal(SIGCONT);
    let exit = first.wait_exit().await;
    assert!(!exit.success(), "{}", first.output().join("\n"));
    first.wait_for_line("another essync took the lease").await;
    assert!(
        first.rounds().len() <= rounds_before + 1,
        "rounds finished after the thaw:\n{}",
        first.output().join("\n")
    );
    second.wait_rounds(second.rounds().len(), 1).await;
    let stdout = status(&s);
    let second_pid = format!("pid {}", second.pid());
    assert!(stdout.contains(&second_pid), "{stdout}");
    assert!(
        stdout.contains(&format!(":{}\n", second.pid())),
        "the checkpoint was last saved by another process than the holder:\n{stdout}"
    );
}

/// A scenario in a keyspace of its own, `{keyspace}_{pid}`, on the suite's servers.
async fn in_own_keyspace(keyspace: &str, prefix: &str) -> (String, Scenario) {
    let keyspace = format!("{keyspace}_{}", std::process::id());
    let s = Scenario::in_keyspace(
        prefix,
        &keyspace,
        &crate::support::es_url(),
        &crate::support::cassandra_node(),
    )
    .await;
    (keyspace, s)
}

/// Two columns of the scenario's checkpoint row (`columns`, as in a SELECT), read with plain CQL.
async fn checkpoint_columns<A, B>(s: &Scenario, columns: &str) -> (Option<A>, Option<B>)
where
    for<'f, 'm> (Option<A>, Option<B>): scylla::deserialize::row::DeserializeRow<'f, 'm>,
{
    let rows = s
        .cql
        .query_unpaged(
            format!(
                "SELECT {columns} FROM {}.essync_checkpoints WHERE sync = ?",
                s.keyspace
            ),
            (&s.name,),
        )
        .await
        .expect("read the checkpoint")
        .into_rows_result()
        .expect("rows");
    rows.maybe_first_row::<(Option<A>, Option<B>)>()
        .expect("a row of two columns")
        .expect("a checkpoint row")
}

/// The checkpoint row's epoch, and whether it holds a checkpoint.
async fn epoch(s: &Scenario) -> (Option<i64>, bool) {
    let (epoch, checkpoint) = checkpoint_columns::<i64, String>(s, "epoch, checkpoint").await;
    (epoch, checkpoint.is_some())
}

// A keyspace of its own: the checkpoint table an earlier version made, without the epoch.
#[tokio::test]
async fn each_process_that_takes_the_lease_raises_the_epoch_of_a_checkpoint_table_of_before() {
    let (keyspace, s) = in_own_keyspace("essync_upgrade_tepoch", "tepoch").await;
    s.cql
        .query_unpaged(
            format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.essync_checkpoints (sync text PRIMARY \
                 KEY, checkpoint text, updated_at timestamp, updated_by text)"
            ),
            (),
        )
        .await
        .expect("create the checkpoint table of an earlier version");
    s.once(&[]);
    assert_eq!(epoch(&s).await, (Some(1), true));
    a_write_is_synced_by_once(&s).await;
    assert_eq!(epoch(&s).await, (Some(2), true));
    let stdout = status(&s);
    assert!(stdout.contains(" in epoch 2 by "), "{stdout}");
    // A dry run takes no lease and raises nothing.
    s.once(&["--dry-run"]);
    assert_eq!(epoch(&s).await, (Some(2), true));
}

// A keyspace of its own, without essync's tables: processes that start together each create
// them, through whichever node coordinates. On a cluster of several nodes, tables created at
// once under random ids would leave the nodes disagreeing on them (INCOMPATIBLE_SCHEMA).
#[tokio::test]
async fn processes_started_together_on_a_new_keyspace_create_each_table_once() {
    let (keyspace, s) = in_own_keyspace("essync_together", "together").await;
    let processes: Vec<_> = (0..3).map(|_| s.essync(&[])).collect();
    let start = std::time::Instant::now();
    while processes.iter().all(|p| p.rounds().is_empty()) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "no process ended a round"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    a_write_is_synced(&s, true, "the holder").await;
    a_write_is_synced(&s, false, "the holder").await;
    let all_output = || {
        let lines: Vec<String> = processes.iter().flat_map(|p| p.output()).collect();
        lines.join("\n")
    };
    // Each node answers from its own copy of the schema; unprepared statements go round the
    // nodes.
    let mut ids: HashMap<String, HashSet<Uuid>> = HashMap::new();
    for _ in 0..12 {
        let rows = s
            .cql
            .query_unpaged(
                "SELECT table_name, id FROM system_schema.tables WHERE keyspace_name = ?",
                (&keyspace,),
            )
            .await
            .expect("read the schema")
            .into_rows_result()
            .expect("rows");
        for row in rows.rows::<(String, Uuid)>().expect("typed rows") {
            let (table, id) = row.expect("row");
            ids.entry(table).or_default().insert(id);
        }
    }
    for table in [
        s.name.as_str(),
        "essync_checkpoints",
        "essync_leases",
        "essync_errors",
    ] {
        let table_ids = ids.get(table).cloned().unwrap_or_default();
        assert_eq!(
            table_ids.len(),
            1,
            "{table}: {table_ids:?}\n{}",
            all_output()
        );
    }
    assert!(
        ids.keys().any(|table| table.starts_with("essync_synced_")),
        "{ids:?}"
    );
    assert!(
        ids.values().all(|table_ids| table_ids.len() == 1),
        "{ids:?}"
    );
    assert!(!all_output().contains("ERROR"), "{}", all_output());
}

/// When the checkpoint row's two columns were last written (µs): the whole checkpoint, and
/// the Cassandra feed's position.
async fn written_at(s: &Scenario) -> (i64, i64) {
    let columns = "WRITETIME(checkpoint), WRITETIME(feeds)";
    let (whole, feeds) = checkpoint_columns::<i64, i64>(s, columns).await;
    (
        whole.expect("a checkpoint"),
        feeds.expect("a feed position"),
    )
}

/// A save writes only what changed: rounds that find nothing new in Elasticsearch move the
/// Cassandra feed's position and leave the whole checkpoint (a position per index and shard)
/// as it was; a change in Elasticsearch writes it again. What `essync status` reads is the
/// last save.
#[tokio::test]
async fn a_save_writes_the_whole_checkpoint_only_when_elasticsearch_moved() {
    let s = Scenario::new("tfeeds").await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    a_write_is_synced(&s, false, "the holder").await;
    let rounds = essync.rounds().len();
    essync.wait_rounds(rounds, 2).await;
    let before = written_at(&s).await;
    let rounds = essync.rounds().len();
    essync.wait_rounds(rounds, 3).await;
    let idle = written_at(&s).await;
    assert_eq!(idle.0, before.0, "idle rounds wrote the whole checkpoint");
    assert!(idle.1 > before.1, "idle rounds saved no feed position");
    a_write_is_synced(&s, false, "the holder").await;
    let rounds = essync.rounds().len();
    essync.wait_rounds(rounds, 1).await;
    let moved = written_at(&s).await;
    assert!(moved.0 > idle.0, "a change in Elasticsearch was not saved");
    let stdout = status(&s);
    assert!(stdout.contains("following changes"), "{stdout}");
}

/// Writes a document in Elasticsearch and syncs it with one `--once` run.
async fn a_write_is_synced_by_once(s: &Scenario) {
    let id = Uuid::new_v4();
    let written = doc(&s.index("a"), "t", now_ms(), serde_json::json!({"n": 1}));
    s.es_write(id, &written).await;
    s.once(&[]);
    s.wait_until(&format!("{id} is copied"), |_, c| c.contains_key(&id))
        .await;
}

/// `count` new documents on one side, each with its own id.
fn new_docs(s: &Scenario, count: usize, by: &str) -> Vec<(Uuid, crate::support::scenario::Doc)> {
    (0..count)
        .map(|n| {
            let content = serde_json::json!({"by": by, "n": n});
            (Uuid::new_v4(), doc(&s.index("r"), "t", now_ms(), content))
        })
        .collect()
}

/// Two, then three processes started with the same `--ranges` share the table: each joins, the
/// others give up what they hold beyond their share, and the writes on both sides while they
/// rebalance are all synced. One killed in the middle of the sync has its ranges taken up at
/// once by the others; a process started with another range count waits; and, from their logs,
/// no range was ever synced by two of them at once.
#[tokio::test]
async fn processes_started_with_the_same_ranges_share_the_table_and_take_up_a_dead_ones() {
    let s = Scenario::new("ranges").await;
    s.create_table().await;
    s.es_bulk(&new_docs(&s, 600, "es before")).await;
    s.cql_bulk(&new_docs(&s, 600, "cassandra before")).await;
    let mut total = 1200;

    let start = || s.essync(&["-s", "--ranges", "4"]);
    let first = start();
    first.wait_for_line("syncing range").await;
    let second = start();
    second.wait_for_line("syncing range").await;
    let third = start();
    for round in 0..4 {
        s.es_bulk(&new_docs(&s, 25, &format!("es {round}"))).await;
        s.cql_bulk(&new_docs(&s, 25, &format!("cassandra {round}")))
            .await;
        total += 50;
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    }
    third.wait_for_line("syncing range").await;

    // The first dies: the others take its ranges up at once (a dead process of this host
    // holds nothing), and go on syncing every range.
    let killed_at = chrono::Utc::now();
    first.signal(SIGKILL);
    let taken_up = "from a process of this host that no longer runs";
    s.wait_until("the others take the dead one's ranges up", |_, _| {
        [&second, &third]
            .iter()
            .any(|p| p.output().iter().any(|line| line.contains(taken_up)))
    })
    .await;
    s.wait_equal(total).await;
    let stdout = status(&s);
    assert!(stdout.contains("4 ranges"), "{stdout}");
    let held = |p: &Essync| stdout.matches(&format!("pid {}", p.pid())).count();
    assert_eq!(held(&first), 0, "{stdout}");
    assert_eq!(held(&second) + held(&third), 4, "{stdout}");
    assert!(held(&second) >= 1 && held(&third) >= 1, "{stdout}");

    // A process of another range count syncs nothing while these run.
    let other = s.essync(&["--ranges", "2"]);
    other
        .wait_for_line("is synced in 4 range(s) by another essync")
        .await;
    other.signal(SIGTERM);
    assert!(other.wait_exit().await.success());
    assert!(other.rounds().is_empty(), "{}", other.output().join("\n"));

    s.es_bulk(&new_docs(&s, 40, "es after")).await;
    s.cql_bulk(&new_docs(&s, 40, "cassandra after")).await;
    s.wait_equal(total + 80).await;
    for process in [&second, &third] {
        process.signal(SIGTERM);
        assert!(process.wait_exit().await.success());
    }
    // From the processes' logs: no range was synced by two at once.
    let killed_at = killed_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut spans = range_spans(&first.output(), Some(&killed_at));
    spans.extend(range_spans(&second.output(), None));
    spans.extend(range_spans(&third.output(), None));
    no_range_held_twice(spans);
}

/// When a process claimed and released each range, from its log: (range, from, to), times as
/// the log writes them (RFC 3339, UTC, microseconds: they sort as text). A range still held
/// when the log ends is held until `end` (the process was killed then), else for ever.
fn range_spans(output: &[String], end: Option<&str>) -> Vec<(String, String, String)> {
    let mut spans: Vec<(String, String, String)> = Vec::new();
    let mut open: HashMap<String, String> = HashMap::new();
    for line in output {
        // `TIME LEVEL TARGET: MESSAGE` (see `render`).
        let Some((at, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some((_, message)) = rest.split_once(": ") else {
            continue;
        };
        let at = at.to_string();
        if let Some(rest) = message.strip_prefix("syncing range ") {
            let range = rest.split(" of ").take(2).collect::<Vec<_>>().join(" of ");
            open.insert(range, at);
        } else if let Some(range) = message.strip_prefix("releasing range ")
            && let Some(from) = open.remove(range)
        {
            spans.push((range.to_string(), from, at));
        }
    }
    let end = end.unwrap_or("9999").to_string();
    spans.extend(
        open.into_iter()
            .map(|(range, from)| (range, from, end.clone())),
    );
    spans
}

/// Asserts that no two spans of one range overlap.
fn no_range_held_twice(mut spans: Vec<(String, String, String)>) {
    assert!(!spans.is_empty(), "no range was synced");
    spans.sort();
    for pair in spans.windows(2) {
        let ((a, _, a_to), (b, b_from, _)) = (&pair[0], &pair[1]);
        assert!(
            a != b || a_to <= b_from,
            "range {a} held by two processes at once: {pair:?}"
        );
    }
}
