//! Two essync processes on one table, the holder of its lease frozen (SIGSTOP) at random points
//! past its lease, while applications write on both sides: the standby takes over, and the
//! frozen one, thawed, finishes nothing it had in flight against the new holder's work. It
//! stops with an error; a supervisor would start it again, as a standby. Whatever the points,
//! nothing is lost and nothing is duplicated.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use crate::model::{Rng, Side, World, Writer, seed};
use crate::support::scenario::{Doc, Essync, Scenario, doc, now_ms};

const SIGCONT: i32 = 18;
const SIGSTOP: i32 = 19;
const CYCLES: usize = 6;
/// Short, so that each takeover takes seconds: renewed every 2 s, lapsed 6 s after the freeze.
const LEASE_TTL: &str = "6";

/// The pid of the process holding the scenario's lease, if any.
async fn holder(s: &Scenario) -> Option<u32> {
    let rows = s
        .cql
        .query_unpaged(
            format!(
                "SELECT pid FROM {}.essync_leases WHERE sync = ?",
                s.keyspace
            ),
            (&s.name,),
        )
        .await
        .ok()?
        .into_rows_result()
        .ok()?;
    let (pid,) = rows.maybe_first_row::<(Option<i32>,)>().ok()??;
    pid.map(|p| p as u32)
}

/// Waits until one of `processes` holds the lease; returns its position.
async fn wait_for_holder(s: &Scenario, processes: &[Essync], not: Option<u32>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(pid) = holder(s).await.filter(|pid| Some(*pid) != not)
            && let Some(at) = processes.iter().position(|p| p.pid() == pid)
        {
            return at;
        }
        assert!(
            Instant::now() < deadline,
            "no process took the lease:\n{}",
            processes
                .iter()
                .map(|p| p.output().join("\n"))
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_holder_frozen_past_its_lease_at_random_points_undoes_nothing_of_the_next_holder() {
    let _one_at_a_time = crate::serial().await;
    let seed = seed("freeze");
    let mut rng = Rng(seed);
    let s = Scenario::new("freeze").await;
    s.create_table().await;
    let world = World::default();
    // Data before the first start, so that the first freezes fall in the reconciliation.
    let before: Vec<(Uuid, Doc)> = (0..3000)
        .map(|n| {
            let side = if n % 2 == 0 { "es" } else { "c" };
            let written = doc(&s.index(side), "t", now_ms(), json!({"before": n}));
            (Uuid::new_v4(), written)
        })
        .collect();
    let (to_es, to_cassandra): (Vec<_>, Vec<_>) = before
        .iter()
        .cloned()
        .partition(|(_, d)| d.index.ends_with("_es"));
    s.es_bulk(&to_es).await;
    s.cql_bulk(&to_cassandra).await;
    world.existing(&before);

    let writing = AtomicBool::new(true);
    let mut es = Writer::new(Side::Elasticsearch, seed.rotate_left(7) | 1, &s);
    let mut cassandra = Writer::new(Side::Cassandra, seed.rotate_left(29) | 1, &s);
    let pause = Duration::from_millis(30);
    let more = || writing.load(Ordering::SeqCst);
    let start = |s: &Scenario| s.essync(&["-s", "--lease-ttl", LEASE_TTL]);
    let freezes = async {
        let mut processes = vec![start(&s), start(&s)];
        let mut thawed_mid_round = 0;
        for cycle in 0..CYCLES {
            let at = wait_for_holder(&s, &processes, None).await;
            let frozen_pid = processes[at].pid();
            // A random point of its work: a page of the reconciliation, a round, a pause.
            tokio::time::sleep(Duration::from_millis(200 + rng.below(2500))).await;
            processes[at].signal(SIGSTOP);
            let rounds_at_freeze = processes[at].rounds().len();
            // The standby takes over once the lease lapses, and works a while.
            let next = wait_for_holder(&s, &processes, Some(frozen_pid)).await;
            tokio::time::sleep(Duration::from_millis(rng.below(3000))).await;
            processes[at].signal(SIGCONT);
            let exit = processes[at].wait_exit().await;
            let output = processes[at].output().join("\n");
            assert!(
                !exit.success() && output.contains("another essync took the lease"),
                "cycle {cycle}: the thawed process did not stop on its lost lease:\n{output}"
            );
            if processes[at].rounds().len() == rounds_at_freeze {
                thawed_mid_round += 1;
            }
            // Its supervisor starts it again: a standby behind the new holder.
            processes[at] = start(&s);
            assert_ne!(next, at);
        }
        writing.store(false, Ordering::SeqCst);
        (processes, thawed_mid_round)
    };
    let ((), (), (processes, thawed_mid_round)) = tokio::join!(
        es.write_while(&s, &world, &[], pause, more),
        cassandra.write_while(&s, &world, &[], pause, more),
        freezes
    );
    eprintln!(
        "freeze: {CYCLES} freezes ({thawed_mid_round} thawed with no round finished since), {} \
         operations",
        world.operations.load(Ordering::Relaxed)
    );

    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (e, c) = (s.elasticsearch().await, s.cassandra().await);
        match world.holds(&e, &c).await {
            Ok(()) => break,
            Err(why) if Instant::now() > deadline => panic!(
                "seed {seed}: not converged after the last thaw: {why}\n{}",
                processes
                    .iter()
                    .map(|p| p.output().join("\n"))
                    .collect::<Vec<_>>()
                    .join("\n----\n")
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let at = wait_for_holder(&s, &processes, None).await;
    let settled = processes[at].rounds().len();
    processes[at].wait_rounds(settled, 2).await;
    let rounds = processes[at].rounds().len();
    for round in processes[at].wait_rounds(rounds, 2).await {
        assert!(
            round.written == [0, 0],
            "seed {seed}: an idle round wrote: {round}"
        );
    }
}
