//! Which of a fault test's essync processes holds its table's lease.

use std::time::{Duration, Instant};

use crate::support::scenario::{Essync, Scenario};

/// The pid of the process holding the scenario's lease, if any.
pub async fn holder(s: &Scenario) -> Option<u32> {
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

/// What `processes` logged, one after the other.
pub fn outputs(processes: &[Essync]) -> String {
    let logs: Vec<String> = processes.iter().map(|p| p.output().join("\n")).collect();
    logs.join("\n----\n")
}

/// Whether `process` knows it holds the lease: it has logged the start of its sync. A
/// lightweight transaction that timed out may have applied unbeknown to its sender, whose pid
/// is then in the lease row while it still waits as a standby (it never syncs on that lease).
fn knows_it_holds(process: &Essync) -> bool {
    process
        .output()
        .iter()
        .any(|line| line.contains("syncing Elasticsearch ("))
}

/// Waits until one of `processes` holds the lease, and knows it; returns its position.
pub async fn wait_for_holder(s: &Scenario, processes: &[Essync], not: Option<u32>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(pid) = holder(s).await.filter(|pid| Some(*pid) != not)
            && let Some(at) = processes.iter().position(|p| p.pid() == pid)
            && knows_it_holds(&processes[at])
        {
            return at;
        }
        assert!(
            Instant::now() < deadline,
            "no process took the lease:\n{}",
            outputs(processes)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
