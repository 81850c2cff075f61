//! Two essync processes on one table, the holder of its lease frozen (SIGSTOP) at random points
//! past its lease, while applications write on both sides: the standby takes over, and the
//! frozen one, thawed, finishes nothing it had in flight against the new holder's work. It
//! stops with an error; a supervisor would start it again, as a standby. Whatever the points,
//! nothing is lost and nothing is duplicated.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::lease::{outputs, wait_for_holder};
use crate::model::{Rng, converge, set_up};
use crate::support::scenario::Scenario;

const SIGCONT: i32 = 18;
const SIGSTOP: i32 = 19;
const CYCLES: usize = 6;
/// Short, so that each takeover takes seconds: renewed every 2 s, lapsed 6 s after the freeze.
const LEASE_TTL: &str = "6";

#[tokio::test]
async fn a_holder_frozen_past_its_lease_at_random_points_undoes_nothing_of_the_next_holder() {
    let _one_at_a_time = crate::serial().await;
    // Data before the first start, so that the first freezes fall in the reconciliation.
    let (seed, s, world, mut es, mut cassandra) = set_up("freeze", 3000).await;
    let mut rng = Rng(seed);
    let writing = AtomicBool::new(true);
    let pause = Duration::from_millis(30);
    let more = || writing.load(Ordering::SeqCst);
    // Verbose: a failure shows each decision about the ids at fault.
    let start = |s: &Scenario| s.essync(&["-v", "-s", "--lease-ttl", LEASE_TTL]);
    let freezes = async {
        let mut processes = vec![start(&s), start(&s)];
        let mut thawed_mid_round = 0;
        // The logs of the processes stopped on their lost lease, for a failure's story.
        let mut stopped = Vec::new();
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
            stopped.push(std::mem::replace(&mut processes[at], start(&s)));
            assert_ne!(next, at);
        }
        writing.store(false, Ordering::SeqCst);
        (processes, stopped, thawed_mid_round)
    };
    let ((), (), (processes, stopped, thawed_mid_round)) = tokio::join!(
        es.write_while(&s, &world, &[], pause, more),
        cassandra.write_while(&s, &world, &[], pause, more),
        freezes
    );
    eprintln!(
        "freeze: {CYCLES} freezes ({thawed_mid_round} thawed with no round finished since), {} \
         operations",
        world.operations.load(Ordering::Relaxed)
    );

    let at = wait_for_holder(&s, &processes, None).await;
    converge(&s, &world, seed, &processes[at], || {
        format!("{}\n----\n{}", outputs(&stopped), outputs(&processes))
    })
    .await;
}
