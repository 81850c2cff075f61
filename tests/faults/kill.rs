//! essync killed (SIGKILL) at random points, during a `-s` reconciliation and during the
//! rounds after it, while applications write on both sides: once it runs again, nothing is lost
//! and nothing is duplicated.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use crate::model::{Rng, Side, World, Writer, seed};
use crate::support::scenario::{Doc, Scenario, doc, now_ms};

const SIGKILL: i32 = 9;
const CYCLES: usize = 20;

#[tokio::test]
async fn killed_twenty_times_at_random_points_while_both_sides_are_written_nothing_is_lost() {
    let _one_at_a_time = crate::serial().await;
    let seed = seed("kill");
    let mut rng = Rng(seed);
    let s = Scenario::new("kill").await;
    s.create_table().await;
    let world = World::default();
    // Data before the first start, so that the first kills fall in the reconciliation.
    let before: Vec<(Uuid, Doc)> = (0..3000)
        .map(|n| {
            let index = if n % 2 == 0 {
                s.index("es")
            } else {
                s.index("c")
            };
            (
                Uuid::new_v4(),
                doc(&index, "t", now_ms(), json!({"before": n})),
            )
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
    let kills = async {
        let (mut during_reconciliation, mut complete) = (0, false);
        for cycle in 0..CYCLES {
            // The first half falls in the reconciliation (restarted with `-s` until it is
            // complete: a run killed before its first checkpoint did not start one); then one run
            // is let finish it, and the second half falls in the rounds that follow changes.
            let essync = s.essync(if complete { &[] } else { &["-s"] });
            if cycle == CYCLES / 2 && !complete {
                let deadline = Instant::now() + Duration::from_secs(180);
                while !essync
                    .output()
                    .iter()
                    .any(|l| l.contains("reconciliation complete"))
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            let wait = Duration::from_millis(300 + rng.below(3700));
            tokio::time::sleep(wait).await;
            complete |= essync
                .output()
                .iter()
                .any(|l| l.contains("reconciliation complete"));
            if !complete {
                during_reconciliation += 1;
            }
            essync.signal(SIGKILL);
            essync.wait_exit().await;
        }
        writing.store(false, Ordering::SeqCst);
        (during_reconciliation, complete)
    };
    let ((), (), (during_reconciliation, complete)) = tokio::join!(
        es.write_while(&s, &world, &[], pause, more),
        cassandra.write_while(&s, &world, &[], pause, more),
        kills
    );
    eprintln!(
        "kill: {CYCLES} kills, {during_reconciliation} of them before the reconciliation was complete, {} operations",
        world.operations.load(Ordering::Relaxed)
    );

    let essync = s.essync(if complete { &[] } else { &["-s"] });
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (e, c) = (s.elasticsearch().await, s.cassandra().await);
        match world.holds(&e, &c).await {
            Ok(()) => break,
            Err(why) if Instant::now() > deadline => panic!(
                "seed {seed}: not converged after the last restart: {why}\n{}",
                essync.output().join("\n")
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let settled = essync.rounds().len();
    essync.wait_rounds(settled, 2).await;
    let rounds = essync.rounds().len();
    for round in essync.wait_rounds(rounds, 2).await {
        assert!(
            round.written == [0, 0],
            "seed {seed}: an idle round wrote: {round}"
        );
    }
}
