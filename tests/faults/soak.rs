//! A soak: random application writers on both sides for minutes against a running essync at
//! period 1 (creates, updates, partial updates, deletes, writes of the same ids on both sides,
//! out-of-order timestamps); after quiescence both stores hold what the writes imply, and idle
//! rounds write nothing.

use std::time::{Duration, Instant};

use crate::model::{Side, World, Writer, seed, story};

use crate::support::scenario::Scenario;

/// How long the writers write: `ESSYNC_SOAK_SECONDS`, 300 by default.
fn duration() -> Duration {
    let seconds = std::env::var("ESSYNC_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    Duration::from_secs(seconds)
}

#[tokio::test]
async fn random_writers_on_both_sides_for_minutes_converge_and_idle_rounds_write_nothing() {
    let _one_at_a_time = crate::serial().await;
    let seed = seed("soak");
    let s = Scenario::new("soak").await;
    // Verbose: each decision is logged with its id, for the report of a failure.
    let essync = s.essync(&["-v"]);
    essync.wait_rounds(0, 1).await;
    let world = World::default();
    let mut es = Writer::new(Side::Elasticsearch, seed, &s);
    let mut cassandra = Writer::new(Side::Cassandra, seed.rotate_left(17) | 1, &s);
    let shared = es.create_shared(&s, &world, 20).await;

    let run = duration();
    let started = Instant::now();
    let pause = Duration::from_millis(20);
    let more = || started.elapsed() < run;
    tokio::join!(
        es.write_while(&s, &world, &shared, pause, more),
        cassandra.write_while(&s, &world, &shared, pause, more)
    );
    let operations = world.operations.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "soak: {operations} operations in {:.0}s, {} rounds so far",
        started.elapsed().as_secs_f64(),
        essync.rounds().len()
    );

    // Quiescence: both stores reach what the writes imply.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (e, c) = (s.elasticsearch().await, s.cassandra().await);
        match world.holds(&e, &c).await {
            Ok(()) => break,
            Err(mismatch) if Instant::now() > deadline => panic!(
                "seed {seed}: not converged after the writers stopped: {}\n\
                 what those ids went through:\n{}",
                mismatch.why,
                story(&s, &mismatch.ids, &essync.output().join("\n")).await
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    // Two rounds after the ones that read essync's own last writes back write nothing.
    let settled = essync.rounds().len();
    essync.wait_rounds(settled, 2).await;
    let rounds = essync.rounds().len();
    for round in essync.wait_rounds(rounds, 2).await {
        assert!(round.idle(), "seed {seed}: an idle round wrote: {round}");
    }
    let (e, c) = (s.elasticsearch().await, s.cassandra().await);
    if let Err(mismatch) = world.holds(&e, &c).await {
        panic!(
            "seed {seed}: the stores moved after converging: {}",
            mismatch.why
        );
    }
    assert!(
        !essync.output().iter().any(|l| l.contains("panicked")),
        "{}",
        essync.output().join("\n")
    );
    eprintln!(
        "soak: {operations} operations, {} documents at the end, converged",
        e.len()
    );
}
