//! Rolling deploys of three essync processes on one table while applications write on both
//! sides, as Kubernetes rolls a Deployment with its default surge: each process in turn gets a
//! successor started beside it, then is stopped with SIGTERM, at random points (a page of `-s`,
//! a round, a pause), the lease's holder among them. Every stop is clean, a process holds the
//! table after each step, and at the end nothing is lost and nothing is duplicated.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::lease::{outputs, wait_for_holder};
use crate::model::{Rng, converge, set_up};
use crate::support::scenario::Scenario;

const SIGTERM: i32 = 15;
const PROCESSES: usize = 3;
const DEPLOYS: usize = 2;

#[tokio::test]
async fn rolling_deploys_of_three_processes_while_both_sides_are_written_lose_nothing() {
    let _one_at_a_time = crate::serial().await;
    // Data before the first start, so that the first deploy falls in the reconciliation.
    let (seed, s, world, mut es, mut cassandra) = set_up("rolling", 3000).await;
    let mut rng = Rng(seed);
    let writing = AtomicBool::new(true);
    let pause = Duration::from_millis(30);
    let more = || writing.load(Ordering::SeqCst);
    let start = |s: &Scenario| s.essync(&["-s"]);
    let deploys = async {
        let mut processes: Vec<_> = (0..PROCESSES).map(|_| start(&s)).collect();
        let mut holders_stopped = 0;
        for deploy in 0..DEPLOYS {
            for at in 0..PROCESSES {
                let holder = wait_for_holder(&s, &processes, None).await;
                tokio::time::sleep(Duration::from_millis(rng.below(2500))).await;
                // The successor first, then the old process: both run for a while.
                let old = std::mem::replace(&mut processes[at], start(&s));
                tokio::time::sleep(Duration::from_millis(rng.below(1500))).await;
                old.signal(SIGTERM);
                let exit = old.wait_exit().await;
                assert!(
                    exit.success(),
                    "deploy {deploy}, process {at}: SIGTERM did not stop it cleanly ({exit}):\n{}",
                    old.output().join("\n")
                );
                holders_stopped += usize::from(holder == at);
            }
        }
        writing.store(false, Ordering::SeqCst);
        (processes, holders_stopped)
    };
    let ((), (), (processes, holders_stopped)) = tokio::join!(
        es.write_while(&s, &world, &[], pause, more),
        cassandra.write_while(&s, &world, &[], pause, more),
        deploys
    );
    eprintln!(
        "rolling: {DEPLOYS} deploys of {PROCESSES} processes, the holder stopped {holders_stopped} \
         times, {} operations",
        world.operations.load(Ordering::Relaxed)
    );
    assert!(
        holders_stopped >= DEPLOYS,
        "seed {seed}: each deploy stops the holder once"
    );
    let at = wait_for_holder(&s, &processes, None).await;
    converge(&s, &world, seed, &processes[at], || outputs(&processes)).await;
}

/// The same deploys of three processes sharing the table by range (`--ranges 3`): each
/// successor joins and takes a share, each stopped process gives its ranges up, and at the end
/// nothing is lost and nothing is duplicated.
#[tokio::test]
async fn rolling_deploys_of_three_processes_sharing_the_table_by_range_lose_nothing() {
    let _one_at_a_time = crate::serial().await;
    let (seed, s, world, mut es, mut cassandra) = set_up("rollranges", 3000).await;
    let mut rng = Rng(seed);
    let writing = AtomicBool::new(true);
    let pause = Duration::from_millis(30);
    let more = || writing.load(Ordering::SeqCst);
    let start = |s: &Scenario| s.essync(&["-s", "--ranges", "3"]);
    let deploys = async {
        let mut processes: Vec<_> = (0..PROCESSES).map(|_| start(&s)).collect();
        for deploy in 0..DEPLOYS {
            for (at, process) in processes.iter_mut().enumerate() {
                tokio::time::sleep(Duration::from_millis(1000 + rng.below(2500))).await;
                let old = std::mem::replace(process, start(&s));
                tokio::time::sleep(Duration::from_millis(rng.below(1500))).await;
                old.signal(SIGTERM);
                let exit = old.wait_exit().await;
                assert!(
                    exit.success(),
                    "deploy {deploy}, process {at}: SIGTERM did not stop it cleanly ({exit}):\n{}",
                    old.output().join("\n")
                );
            }
        }
        writing.store(false, Ordering::SeqCst);
        processes
    };
    let ((), (), processes) = tokio::join!(
        es.write_while(&s, &world, &[], pause, more),
        cassandra.write_while(&s, &world, &[], pause, more),
        deploys
    );
    eprintln!(
        "rolling by range: {DEPLOYS} deploys of {PROCESSES} processes, {} operations",
        world.operations.load(Ordering::Relaxed)
    );
    // Each of the last three takes a range once they have found each other.
    for process in &processes {
        process.wait_for_line("syncing range").await;
    }
    converge(&s, &world, seed, &processes[0], || outputs(&processes)).await;
}
