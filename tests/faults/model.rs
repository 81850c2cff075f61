//! Application writers on both sides, and the state their writes imply, computed on its own.
//!
//! Each writer owns the ids it creates: it updates them (whole versions with a current or an
//! old timestamp, partial updates that keep the stamp) and deletes them; nobody else writes
//! them, so whatever rounds run in between, the last write is what both stores must end with. A
//! few ids are shared: both writers write whole versions of them, one write at a time and with
//! timestamps that follow the order the writes land in, so the later write wins whether a round
//! sees both (a conflict, the later timestamp wins) or one after the other (each change wins).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::scenario::{Doc, Docs, Essync, Scenario, doc, now_ms};

/// A deterministic random source (SplitMix64: its first draws already differ between seeds
/// close in time).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The seed of a test: `ESSYNC_TEST_SEED`, or the clock; printed so a run can be repeated.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("ESSYNC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64 | 1);
    eprintln!("{test}: seed {seed} (ESSYNC_TEST_SEED={seed} repeats this run)");
    seed
}

/// The start of a fault test named `test`: its seed, a scenario with its table, `existing`
/// documents written before essync starts (see [`write_existing`]), and a writer per side.
pub async fn set_up(test: &str, existing: usize) -> (u64, Scenario, World, Writer, Writer) {
    let seed = seed(test);
    let s = Scenario::new(test).await;
    s.create_table().await;
    let world = World::default();
    write_existing(&s, &world, existing).await;
    let es = Writer::new(Side::Elasticsearch, seed.rotate_left(7) | 1, &s);
    let cassandra = Writer::new(Side::Cassandra, seed.rotate_left(29) | 1, &s);
    (seed, s, world, es, cassandra)
}

/// Writes `count` documents before the writers start, half in each store, and records them in
/// `world`: the first faults then fall in a `-s` reconciliation.
pub async fn write_existing(s: &Scenario, world: &World, count: usize) {
    let before: Vec<(Uuid, Doc)> = (0..count)
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
}

/// Waits (up to 240 s) until both stores hold what `world` says, then until two rounds of
/// `essync` after that wrote nothing. `outputs` is what a failure shows.
pub async fn converge(
    s: &Scenario,
    world: &World,
    seed: u64,
    essync: &Essync,
    outputs: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (e, c) = (s.elasticsearch().await, s.cassandra().await);
        match world.holds(&e, &c).await {
            Ok(()) => break,
            Err(mismatch) if Instant::now() > deadline => {
                let story = story(s, &mismatch.ids, &outputs()).await;
                panic!(
                    "seed {seed}: not converged: {}\n{story}\n{}",
                    mismatch.why,
                    outputs()
                )
            }
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

/// What the ids a failed convergence names went through: their ledger rows, and every line the
/// processes logged about them (with `-v`, each decision), before the whole logs.
pub async fn story(s: &Scenario, ids: &[Uuid], outputs: &str) -> String {
    let mut story = String::new();
    for id in ids.iter().take(5) {
        let ledger = s
            .cql
            .query_unpaged(
                format!(
                    "SELECT JSON * FROM {}.essync_synced_{} WHERE id = ?",
                    s.keyspace, s.name
                ),
                (id,),
            )
            .await
            .ok()
            .and_then(|r| r.into_rows_result().ok())
            .and_then(|rows| rows.maybe_first_row::<(String,)>().ok().flatten())
            .map_or_else(|| "none".to_string(), |(json,)| json);
        story.push_str(&format!("{id}: ledger {ledger}\n"));
        let key = id.to_string();
        for line in outputs.lines().filter(|l| l.contains(&key)) {
            story.push_str(&format!("  {line}\n"));
        }
    }
    story
}

/// Why the stores do not hold what the model says, and the ids at fault.
pub struct Mismatch {
    pub why: String,
    pub ids: Vec<Uuid>,
}

/// What the stores must end with.
#[derive(Default)]
pub struct World {
    /// The owned ids: their last content, `None` once deleted.
    owned: Mutex<BTreeMap<Uuid, Option<Value>>>,
    /// The shared ids: the timestamp and content of their last write.
    shared: tokio::sync::Mutex<BTreeMap<Uuid, (i64, Value)>>,
    clock: AtomicI64,
    /// Operations made, by kind.
    pub operations: AtomicUsize,
}

impl World {
    /// A timestamp later than any given before.
    fn stamp(&self) -> i64 {
        let now = now_ms();
        let previous = self.clock.fetch_max(now, Ordering::SeqCst);
        if previous >= now {
            self.clock.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            now
        }
    }

    /// Records documents written before the writers started (their ids owned by nobody).
    pub fn existing(&self, docs: &[(Uuid, Doc)]) {
        let mut owned = self.owned.lock().expect("model");
        for (id, written) in docs {
            owned.insert(*id, Some(written.content.clone()));
        }
        self.operations.fetch_add(docs.len(), Ordering::Relaxed);
    }

    /// The contents the stores must hold.
    pub async fn expected(&self) -> BTreeMap<Uuid, Value> {
        let mut expected: BTreeMap<Uuid, Value> = self
            .owned
            .lock()
            .expect("model")
            .iter()
            .filter_map(|(id, content)| content.clone().map(|c| (*id, c)))
            .collect();
        for (id, (_, content)) in self.shared.lock().await.iter() {
            expected.insert(*id, content.clone());
        }
        expected
    }

    /// Whether both stores hold exactly the expected contents and agree field by field.
    pub async fn holds(&self, elasticsearch: &Docs, cassandra: &Docs) -> Result<(), Mismatch> {
        let diff = crate::support::scenario::differences(elasticsearch, cassandra);
        if !diff.is_empty() {
            return Err(Mismatch {
                why: format!(
                    "{} differences between the stores, first: {:?}",
                    diff.len(),
                    &diff[..diff.len().min(5)]
                ),
                ids: diff
                    .iter()
                    .filter_map(|line| line.split(':').next()?.parse().ok())
                    .collect(),
            });
        }
        let expected = self.expected().await;
        let held: BTreeMap<Uuid, Value> = elasticsearch
            .iter()
            .map(|(id, d)| (*id, d.content.clone()))
            .collect();
        if held != expected {
            let missing: Vec<_> = expected
                .keys()
                .filter(|id| !held.contains_key(id))
                .collect();
            let extra: Vec<_> = held
                .keys()
                .filter(|id| !expected.contains_key(id))
                .collect();
            let wrong_ids: Vec<_> = expected
                .iter()
                .filter(|(id, c)| held.get(id).is_some_and(|h| h != *c))
                .map(|(id, _)| id)
                .collect();
            let wrong: Vec<_> = wrong_ids
                .iter()
                .map(|id| format!("{id}: expected {}, held {}", expected[*id], held[*id]))
                .collect();
            let ids = (missing.iter().take(5))
                .chain(extra.iter().take(5))
                .chain(wrong_ids.iter().take(5))
                .map(|id| **id)
                .collect();
            return Err(Mismatch {
                why: format!(
                    "{} missing {:?}, {} extra {:?}, {} wrong {:?}",
                    missing.len(),
                    &missing[..missing.len().min(5)],
                    extra.len(),
                    &extra[..extra.len().min(5)],
                    wrong.len(),
                    &wrong[..wrong.len().min(5)]
                ),
                ids,
            });
        }
        Ok(())
    }
}

/// Which side a writer writes to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    Elasticsearch,
    Cassandra,
}

/// One application writing to one side.
pub struct Writer {
    pub side: Side,
    rng: Rng,
    owned: Vec<Uuid>,
    index: String,
    shared_index: String,
    written: u64,
}

impl Writer {
    pub fn new(side: Side, seed: u64, s: &Scenario) -> Self {
        let name = match side {
            Side::Elasticsearch => "es",
            Side::Cassandra => "c",
        };
        Self {
            side,
            rng: Rng(seed),
            owned: Vec::new(),
            index: s.index(name),
            shared_index: s.index("shared"),
            written: 0,
        }
    }

    fn label(&self) -> &'static str {
        match self.side {
            Side::Elasticsearch => "es",
            Side::Cassandra => "c",
        }
    }

    /// A current timestamp, or (one time in five) one days old: an out-of-order write.
    fn timestamp(&mut self) -> i64 {
        if self.rng.below(5) == 0 {
            now_ms() - 86_400_000 * (1 + self.rng.below(30) as i64)
        } else {
            now_ms()
        }
    }

    async fn put(&self, s: &Scenario, id: Uuid, written: &Doc) {
        match self.side {
            Side::Elasticsearch => s.es_write(id, written).await,
            Side::Cassandra => s.cql_write(id, written).await,
        }
    }

    /// One random operation: a create, an update, a partial update or a delete of an owned id,
    /// or a write of a shared one.
    pub async fn step(&mut self, s: &Scenario, world: &World, shared: &[Uuid]) {
        self.written += 1;
        world.operations.fetch_add(1, Ordering::Relaxed);
        let label = self.label();
        let choice = if self.owned.is_empty() {
            0
        } else {
            self.rng.below(100)
        };
        let content =
            json!({"side": label, "n": self.written, "nested": {"k": [self.rng.below(9), 1]}});
        match choice {
            0..=29 => {
                let id = Uuid::new_v4();
                let at = self.timestamp();
                let written = doc(&self.index, "t", at, content.clone());
                self.put(s, id, &written).await;
                world.owned.lock().expect("model").insert(id, Some(content));
                self.owned.push(id);
            }
            30..=54 => {
                let id = self.owned[self.rng.below(self.owned.len() as u64) as usize];
                let at = self.timestamp();
                let written = doc(&self.index, "t", at, content.clone());
                self.put(s, id, &written).await;
                world.owned.lock().expect("model").insert(id, Some(content));
            }
            55..=69 => {
                let id = self.owned[self.rng.below(self.owned.len() as u64) as usize];
                let fields = json!({"p": self.rng.below(1000)});
                let before = world
                    .owned
                    .lock()
                    .expect("model")
                    .get(&id)
                    .cloned()
                    .flatten();
                let Some(mut merged) = before else { return };
                if let (Some(m), Some(f)) = (merged.as_object_mut(), fields.as_object()) {
                    m.extend(f.clone());
                }
                match self.side {
                    Side::Elasticsearch => s.es_partial_update(&self.index, id, fields).await,
                    Side::Cassandra => s.cql_update_content(id, &merged).await,
                }
                world.owned.lock().expect("model").insert(id, Some(merged));
            }
            70..=79 => {
                let n = self.rng.below(self.owned.len() as u64) as usize;
                let id = self.owned.swap_remove(n);
                match self.side {
                    Side::Elasticsearch => s.es_delete(&self.index, id).await,
                    Side::Cassandra => s.cql_delete(&[id]).await,
                }
                world.owned.lock().expect("model").insert(id, None);
            }
            _ if !shared.is_empty() => {
                let id = shared[self.rng.below(shared.len() as u64) as usize];
                // One shared write at a time, its timestamp taken under the lock: timestamps
                // follow the order in which the writes land.
                let mut last = world.shared.lock().await;
                let at = world.stamp();
                let content = json!({"shared": self.written, "by": label});
                self.put(s, id, &doc(&self.shared_index, "t", at, content.clone()))
                    .await;
                last.insert(id, (at, content));
            }
            _ => {}
        }
    }

    /// Writes, one operation every `pause`, while `more` says so.
    pub async fn write_while(
        &mut self,
        s: &Scenario,
        world: &World,
        shared: &[Uuid],
        pause: std::time::Duration,
        more: impl Fn() -> bool,
    ) {
        while more() {
            self.step(s, world, shared).await;
            tokio::time::sleep(pause).await;
        }
    }

    /// Creates `count` shared ids, written once by this writer.
    pub async fn create_shared(&mut self, s: &Scenario, world: &World, count: usize) -> Vec<Uuid> {
        let mut ids = Vec::with_capacity(count);
        for n in 0..count {
            let id = Uuid::new_v4();
            let mut last = world.shared.lock().await;
            let at = world.stamp();
            let content = json!({"shared": n, "by": "start"});
            self.put(s, id, &doc(&self.shared_index, "t", at, content.clone()))
                .await;
            last.insert(id, (at, content));
            ids.push(id);
        }
        ids
    }
}
