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

/// The pid holding each range of the scenario's table split in `count` (by range, from 0).
async fn range_holders(s: &Scenario, count: u32) -> Vec<Option<u32>> {
    let mut holders = vec![None; count as usize];
    let Ok(result) = s
        .cql
        .query_unpaged(
            format!("SELECT sync, pid FROM {}.essync_leases", s.keyspace),
            (),
        )
        .await
    else {
        return holders;
    };
    let Ok(rows) = result.into_rows_result() else {
        return holders;
    };
    let Ok(rows) = rows.rows::<(String, Option<i32>)>() else {
        return holders;
    };
    for (name, pid) in rows.flatten() {
        let Some(part) = name.strip_prefix(&format!("{}#", s.name)) else {
            continue;
        };
        if let Some((index, of)) = part.split_once("of")
            && of == count.to_string()
            && let Ok(index) = index.parse::<usize>()
            && (1..=count as usize).contains(&index)
        {
            holders[index - 1] = pid.map(|p| p as u32);
        }
    }
    holders
}

/// Waits until `check` holds of the ranges' holders (at most two minutes).
async fn wait_for_ranges(
    s: &Scenario,
    count: u32,
    what: &str,
    processes: &[crate::support::scenario::Essync],
    check: impl Fn(&[Option<u32>]) -> bool,
) -> Vec<Option<u32>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let holders = range_holders(s, count).await;
        if check(&holders) {
            return holders;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: ranges held by {holders:?}\n{}",
            outputs(processes)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two processes sharing the table by range (`--ranges 2`), one of them frozen past its leases
/// at random points while applications write on both sides: the other takes its ranges up, and
/// the frozen one, thawed, finishes nothing it had in flight against the other's work; its
/// ranges' syncs stop, and the process takes its share again. Nothing is lost or duplicated.
#[tokio::test]
async fn a_process_frozen_past_its_range_leases_undoes_nothing_of_the_one_that_took_them_up() {
    let _one_at_a_time = crate::serial().await;
    let (seed, s, world, mut es, mut cassandra) = set_up("rfreeze", 3000).await;
    let mut rng = Rng(seed);
    let writing = AtomicBool::new(true);
    let pause = Duration::from_millis(30);
    let more = || writing.load(Ordering::SeqCst);
    let start = |s: &Scenario| s.essync(&["-v", "-s", "--ranges", "2", "--lease-ttl", LEASE_TTL]);
    let freezes = async {
        let processes = [start(&s), start(&s)];
        let pids: Vec<Option<u32>> = processes.iter().map(|p| Some(p.pid())).collect();
        for cycle in 0..3 {
            // Each holds a range (the first gives one up once the second joins).
            let split = |h: &[Option<u32>]| pids.iter().all(|pid| h.contains(pid));
            let holders = wait_for_ranges(&s, 2, "an even split", &processes, split).await;
            let at = rng.below(2) as usize;
            tokio::time::sleep(Duration::from_millis(200 + rng.below(2500))).await;
            processes[at].signal(SIGSTOP);
            // The other takes up the frozen one's range once its lease lapses.
            let other = pids[1 - at];
            let all = |h: &[Option<u32>]| h.iter().all(|pid| *pid == other);
            wait_for_ranges(&s, 2, "the other taking both", &processes, all).await;
            tokio::time::sleep(Duration::from_millis(rng.below(3000))).await;
            processes[at].signal(SIGCONT);
            eprintln!("rfreeze: cycle {cycle}: froze {at} holding {holders:?}");
        }
        wait_for_ranges(&s, 2, "an even split at the end", &processes, |h| {
            pids.iter().all(|pid| h.contains(pid))
        })
        .await;
        writing.store(false, Ordering::SeqCst);
        processes
    };
    let ((), (), processes) = tokio::join!(
        es.write_while(&s, &world, &[], pause, more),
        cassandra.write_while(&s, &world, &[], pause, more),
        freezes
    );
    // Each thawed process found the lease of the range it held taken (its sync of it stopped
    // there), or lapsed and free again (the other had given it back meanwhile): it took it
    // again, and goes on only if the other raised no epoch of it.
    let found: usize = processes
        .iter()
        .map(|p| {
            p.output()
                .iter()
                .filter(|line| {
                    line.contains("another essync took the lease")
                        || line.contains("had lapsed; taken again")
                })
                .count()
        })
        .sum();
    assert!(
        found >= 3,
        "{found} leases found lost:\n{}",
        outputs(&processes)
    );
    converge(&s, &world, seed, &processes[0], || outputs(&processes)).await;
}
