//! essync killed (SIGKILL) at random points, during a `-s` reconciliation and during the
//! rounds after it, while applications write on both sides: once it runs again, nothing is lost
//! and nothing is duplicated.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::model::{Rng, converge, set_up};

const SIGKILL: i32 = 9;
const CYCLES: usize = 20;

#[tokio::test]
async fn killed_twenty_times_at_random_points_while_both_sides_are_written_nothing_is_lost() {
    let _one_at_a_time = crate::serial().await;
    // Data before the first start, so that the first kills fall in the reconciliation.
    let (seed, s, world, mut es, mut cassandra) = set_up("kill", 3000).await;
    let mut rng = Rng(seed);
    let writing = AtomicBool::new(true);
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
    converge(&s, &world, seed, &essync, || essync.output().join("\n")).await;
}
