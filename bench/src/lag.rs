//! Lag: a writer on each side at a fixed rate against a running essync, and for a sample of the
//! writes (one in [`SAMPLE_EVERY`]) the time until the other side shows it, found by polling
//! the other side by id.
//!
//! Only a sample is followed so that the measurement does not load the servers it measures:
//! polling every pending write every tick costs requests in proportion to the lag itself, and
//! a lag of a few seconds then becomes thousands of reads per second that slow the servers
//! down and make the lag longer still.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::data::{Rng, new_document};
use crate::stores::{Cql, Es};

/// How often each side is polled for the documents not seen yet.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// One write in this many is followed (at 200 writes/s, 20 a second on each side).
const SAMPLE_EVERY: u64 = 10;
/// Ids per lookup request.
const LOOKUP_IDS: usize = 100;
/// How long after the writers stop a document may still arrive.
const GRACE: Duration = Duration::from_secs(20);
/// Writes in flight per writer, at most.
const IN_FLIGHT: usize = 64;

/// What the lag measurement found.
#[derive(Debug, Clone)]
pub struct Lag {
    /// Median, seconds, both directions together.
    pub p50_s: f64,
    /// 99th percentile, seconds, both directions together.
    pub p99_s: f64,
    /// Largest, seconds.
    pub max_s: f64,
    /// Median and 99th percentile from Elasticsearch to Cassandra, seconds.
    pub es_to_cassandra: [f64; 2],
    /// Median and 99th percentile from Cassandra to Elasticsearch, seconds.
    pub cassandra_to_es: [f64; 2],
    /// Writes followed (the sample), Elasticsearch / Cassandra.
    pub followed: [usize; 2],
    /// Writes made, Elasticsearch / Cassandra.
    pub written: [usize; 2],
    /// Writes that failed, Elasticsearch / Cassandra.
    pub failed: [usize; 2],
    /// Writes never seen on the other side within the grace period (counted in the
    /// percentiles with the time they waited, a lower bound).
    pub unseen: usize,
    /// Writes per second each writer achieved.
    pub rate: [f64; 2],
}

/// Writes the other side has not shown yet: (id, when its write was acknowledged).
type Pending = Arc<Mutex<VecDeque<(Uuid, Instant)>>>;

/// Runs both writers for `duration` at `per_second` writes each, into `index` and `table`,
/// while essync runs; returns the lag figures. Their documents come from `seed`.
pub async fn measure(
    seed: u64,
    es: &Es,
    cql: &Arc<Cql>,
    table: &str,
    index: &str,
    per_second: u32,
    duration: Duration,
) -> anyhow::Result<Lag> {
    let insert = Arc::new(cql.insert(table).await?);
    let select = Arc::new(cql.select_ids(table).await?);
    let to_cassandra: Pending = Arc::default();
    let to_es: Pending = Arc::default();
    let count = (f64::from(per_second) * duration.as_secs_f64()) as u64;
    let interval = Duration::from_secs(1) / per_second.max(1);
    let start = Instant::now() + Duration::from_millis(100);

    // Elasticsearch writer: its documents must appear in Cassandra.
    let es_writer = {
        let es = es.clone();
        let index = index.to_string();
        let pending = to_cassandra.clone();
        tokio::spawn(async move {
            let mut rng = Rng::new(seed);
            let slots = Arc::new(Semaphore::new(IN_FLIGHT));
            let mut tasks = Vec::with_capacity(count as usize);
            for i in 0..count {
                tokio::time::sleep_until((start + interval * i as u32).into()).await;
                let doc = new_document(&mut rng, &index, now_ms());
                let (es, pending, slots) = (es.clone(), pending.clone(), slots.clone());
                tasks.push(tokio::spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    let ok = es.index_one(&doc).await.is_ok();
                    if ok
                        && i % SAMPLE_EVERY == 0
                        && let Ok(mut p) = pending.lock()
                    {
                        p.push_back((doc.id, Instant::now()));
                    }
                    ok
                }));
            }
            finish(tasks, start).await
        })
    };
    // Cassandra writer: its rows must appear in Elasticsearch.
    let cql_writer = {
        let cql = cql.clone();
        let index = index.to_string();
        let pending = to_es.clone();
        let insert = insert.clone();
        tokio::spawn(async move {
            let mut rng = Rng::new(seed ^ 1);
            let slots = Arc::new(Semaphore::new(IN_FLIGHT));
            let mut tasks = Vec::with_capacity(count as usize);
            for i in 0..count {
                tokio::time::sleep_until((start + interval * i as u32).into()).await;
                let doc = new_document(&mut rng, &index, now_ms());
                let (cql, pending, slots, insert) =
                    (cql.clone(), pending.clone(), slots.clone(), insert.clone());
                tasks.push(tokio::spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    let ok = cql.write_one(&insert, &doc).await.is_ok();
                    if ok
                        && i % SAMPLE_EVERY == 0
                        && let Ok(mut p) = pending.lock()
                    {
                        p.push_back((doc.id, Instant::now()));
                    }
                    ok
                }));
            }
            finish(tasks, start).await
        })
    };

    let deadline = Arc::new(Mutex::new(None::<Instant>));
    let in_cassandra = {
        let cql = cql.clone();
        let select = select.clone();
        let pending = to_cassandra.clone();
        let deadline = deadline.clone();
        tokio::spawn(async move {
            poll(pending, deadline, move |ids| {
                let cql = cql.clone();
                let select = select.clone();
                async move { cql.found(&select, &ids).await }
            })
            .await
        })
    };
    let in_es = {
        let es = es.clone();
        let index = index.to_string();
        let pending = to_es.clone();
        let deadline = deadline.clone();
        tokio::spawn(async move {
            poll(pending, deadline, move |ids| {
                let es = es.clone();
                let index = index.clone();
                async move { es.found(&index, &ids).await }
            })
            .await
        })
    };

    let (es_written, es_failed, es_rate) = es_writer.await.context("the Elasticsearch writer")?;
    let (cql_written, cql_failed, cql_rate) = cql_writer.await.context("the Cassandra writer")?;
    if let Ok(mut d) = deadline.lock() {
        *d = Some(Instant::now() + GRACE);
    }
    let (mut to_cassandra, unseen_a) = in_cassandra.await.context("the Cassandra poller")??;
    let (mut to_es, unseen_b) = in_es.await.context("the Elasticsearch poller")??;
    to_cassandra.sort_by(f64::total_cmp);
    to_es.sort_by(f64::total_cmp);
    let mut lags: Vec<f64> = to_cassandra.iter().chain(&to_es).copied().collect();
    lags.sort_by(f64::total_cmp);
    Ok(Lag {
        p50_s: percentile(&lags, 0.50),
        p99_s: percentile(&lags, 0.99),
        max_s: lags.last().copied().unwrap_or(0.0),
        es_to_cassandra: [
            percentile(&to_cassandra, 0.5),
            percentile(&to_cassandra, 0.99),
        ],
        cassandra_to_es: [percentile(&to_es, 0.5), percentile(&to_es, 0.99)],
        followed: [to_cassandra.len(), to_es.len()],
        written: [es_written, cql_written],
        failed: [es_failed, cql_failed],
        unseen: unseen_a + unseen_b,
        rate: [es_rate, cql_rate],
    })
}

/// Waits for a writer's writes; (succeeded, failed, achieved writes per second).
async fn finish(tasks: Vec<tokio::task::JoinHandle<bool>>, start: Instant) -> (usize, usize, f64) {
    let total = tasks.len();
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap_or(false) {
            ok += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    (ok, total - ok, total as f64 / elapsed)
}

/// Polls for the pending ids until none is left after the writers stopped, or the deadline;
/// returns the lags seen and how many were never seen (whose waits are counted as lags too).
async fn poll<F, Fut>(
    pending: Pending,
    deadline: Arc<Mutex<Option<Instant>>>,
    lookup: F,
) -> anyhow::Result<(Vec<f64>, usize)>
where
    F: Fn(Vec<Uuid>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<Uuid>>>,
{
    let mut lags = Vec::new();
    let mut tick = tokio::time::interval(POLL_EVERY);
    loop {
        tick.tick().await;
        let waiting: Vec<(Uuid, Instant)> = pending
            .lock()
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default();
        let ends = deadline.lock().ok().and_then(|d| *d);
        if waiting.is_empty() {
            if ends.is_some() {
                return Ok((lags, 0));
            }
            continue;
        }
        let found = futures::future::try_join_all(
            waiting
                .chunks(LOOKUP_IDS)
                .map(|chunk| lookup(chunk.iter().map(|w| w.0).collect())),
        )
        .await?;
        let seen_at = Instant::now();
        let found: std::collections::HashSet<Uuid> = found.into_iter().flatten().collect();
        if let Ok(mut p) = pending.lock() {
            p.retain(|(id, written)| {
                if found.contains(id) {
                    lags.push((seen_at - *written).as_secs_f64());
                    false
                } else {
                    true
                }
            });
            if ends.is_some_and(|end| seen_at >= end) {
                let unseen = p.len();
                lags.extend(
                    p.iter()
                        .map(|(_, written)| (seen_at - *written).as_secs_f64()),
                );
                return Ok((lags, unseen));
            }
        }
    }
}

/// The nearest-rank percentile of sorted values (0 when there are none).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&[0.3], 0.99), 0.3);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
