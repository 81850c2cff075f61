//! On the multi-node servers (`ESSYNC_CLUSTER=1 scripts/servers up`: three Cassandra nodes,
//! two Elasticsearch nodes), with keyspaces replicated three times: a Cassandra node killed
//! (SIGKILL) mid-reconciliation while applications write on both sides. The rounds go on at
//! LOCAL_QUORUM with two nodes of three, the reconciliation completes without the node, and once
//! it is back, nothing is lost and nothing is duplicated.
//!
//! `scripts/test` runs these in its multi-node phase, with `ESSYNC_ES_URL`, `ESSYNC_CASSANDRA`
//! and `ESSYNC_TEST_REPLICATION_FACTOR` set for those servers (with `--ignored`: the other
//! phases have no such servers).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::model::{Rng, converge, set_up};
use crate::support::scenario::Scenario;

const NODES: u64 = 3;

/// Runs `scripts/servers ARGS` on one node of the multi-node servers.
fn node_script(node: u64, args: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/servers");
    let output = Command::new(script)
        .args(args)
        .env("ESSYNC_CLUSTER", "1")
        .env("ESSYNC_NODE", node.to_string())
        .env_remove("ESSYNC_SECURE")
        .env_remove("ESSYNC_SEARCH_PORT")
        .env_remove("ESSYNC_CASSANDRA_PORT")
        .output()
        .expect("run scripts/servers");
    assert!(
        output.status.success(),
        "scripts/servers {args:?} on node {node} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Panics unless the scenario's keyspace is replicated on every node of a three-node cluster:
/// on a single node this test would prove nothing.
async fn assert_three_replicas(s: &Scenario) {
    let peers = s
        .cql
        .query_unpaged("SELECT peer FROM system.peers", ())
        .await
        .expect("read system.peers")
        .into_rows_result()
        .expect("rows")
        .rows_num();
    let replication = s
        .cql
        .query_unpaged(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (&s.keyspace,),
        )
        .await
        .expect("read the keyspace's replication")
        .into_rows_result()
        .expect("rows")
        .first_row::<(std::collections::HashMap<String, String>,)>()
        .expect("the keyspace's replication")
        .0;
    assert!(
        peers + 1 == NODES as usize
            && replication.get("replication_factor").map(String::as_str) == Some("3"),
        "this test needs the multi-node servers (ESSYNC_CLUSTER=1 scripts/servers up) and \
         ESSYNC_CASSANDRA, ESSYNC_ES_URL and ESSYNC_TEST_REPLICATION_FACTOR=3 pointing at them \
         (found {} node(s), replication {replication:?})",
        peers + 1
    );
}

/// Documents copied so far into the scenario's index written from Cassandra.
async fn copied_to_elasticsearch(s: &Scenario) -> usize {
    let side = s.index("c");
    s.elasticsearch()
        .await
        .values()
        .filter(|d| d.index == side)
        .count()
}

#[tokio::test]
#[ignore = "needs the multi-node servers: scripts/test runs it in its multi-node phase"]
async fn a_cassandra_node_killed_mid_reconciliation_the_rounds_go_on_at_local_quorum() {
    let _one_at_a_time = crate::serial().await;
    let (seed, s, world, mut es, mut cassandra) = set_up("node_lost", 3000).await;
    assert_three_replicas(&s).await;
    // Any node, the first contact point included.
    let node = 1 + Rng(seed).below(NODES);
    let writing = AtomicBool::new(true);
    let more = || writing.load(Ordering::SeqCst);
    let pause = Duration::from_millis(30);
    let essync = s.essync(&["-s"]);
    let fault = async {
        // Mid-reconciliation: some of the rows are copied, not all.
        let deadline = Instant::now() + Duration::from_secs(120);
        while copied_to_elasticsearch(&s).await < 100 {
            assert!(
                Instant::now() < deadline,
                "seed {seed}: the reconciliation copied nothing:\n{}",
                essync.output().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let killed_after = essync.rounds().len();
        node_script(node, &["kill", "cassandra"]);
        eprintln!("node_lost: seed {seed}: Cassandra node {node} killed");
        // The reconciliation completes, and two more rounds run, with two nodes of three.
        essync.wait_for_line("reconciliation complete").await;
        let after = essync.rounds().len();
        let rounds = essync.wait_rounds(after, 2).await;
        node_script(node, &["up", "cassandra"]);
        eprintln!("node_lost: seed {seed}: Cassandra node {node} back");
        writing.store(false, Ordering::SeqCst);
        (essync.rounds().len() - killed_after, rounds)
    };
    let ((), (), (rounds_without_node, last)) = tokio::join!(
        es.write_while(&s, &world, &[], pause, more),
        cassandra.write_while(&s, &world, &[], pause, more),
        fault
    );
    eprintln!(
        "node_lost: {rounds_without_node} rounds ran without node {node}; {} operations",
        world.operations.load(Ordering::Relaxed)
    );
    assert!(
        last.iter().all(|round| round.errors == 0),
        "seed {seed}: rounds without node {node} failed documents: {:?}\n{}",
        last,
        essync.output().join("\n")
    );
    converge(&s, &world, seed, &essync, || essync.output().join("\n")).await;
}
