//! Three-way sync, as applications write: partial updates, single-column updates, deletes and
//! data that predates essync, made with the stores' plain clients against the real binary. No
//! application write is reverted; a delete is a write too.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::log::Round;
use crate::support::policies;
use crate::support::scenario::{Doc, Docs, Scenario, differences, doc, now_ms};
use crate::support::{cassandra_node, es_url};

const HOUR: i64 = 3_600_000;

fn ids(n: usize) -> Vec<Uuid> {
    (0..n).map(|_| Uuid::new_v4()).collect()
}

fn content_of(docs: &Docs, id: &Uuid) -> Option<Value> {
    docs.get(id).map(|d| d.content.clone())
}

/// Both stores equal, field by field, and holding `id` with `content`.
fn holds(e: &Docs, c: &Docs, id: &Uuid, content: &Value) -> bool {
    differences(e, c).is_empty() && content_of(e, id).as_ref() == Some(content)
}

/// Runs `rounds` more rounds and checks that the stores still hold what they hold now.
async fn stays(s: &Scenario, rounds: usize, what: &str) {
    let (e, c) = (s.elasticsearch().await, s.cassandra().await);
    for _ in 0..rounds {
        s.once(&[]);
    }
    let (e2, c2) = (s.elasticsearch().await, s.cassandra().await);
    assert_eq!(e2, e, "{what}: Elasticsearch changed in later rounds");
    assert_eq!(c2, c, "{what}: Cassandra changed in later rounds");
}

// 19, case 1: a partial update in Elasticsearch keeps the `_essync` stamp.
#[tokio::test]
async fn an_elasticsearch_partial_update_reaches_cassandra_and_is_never_reverted() {
    let s = Scenario::new("t19es").await;
    s.once(&[]);
    let id = Uuid::new_v4();
    let index = s.index("p");
    s.cql_write(
        id,
        &doc(&index, "t", now_ms() - 10_000, json!({"v": 9, "k": "keep"})),
    )
    .await;
    s.once(&[]);
    s.wait_equal(1).await;
    s.es_partial_update(&index, id, json!({"v": 1})).await;
    s.once(&[]);
    let wanted = json!({"v": 1, "k": "keep"});
    let (e, c) = (s.elasticsearch().await, s.cassandra().await);
    assert!(holds(&e, &c, &id, &wanted), "{:?}", differences(&e, &c));
    stays(&s, 3, "after a partial update").await;
}

// 19, case 2: a Cassandra update of the content column alone keeps the `timestamp` column.
#[tokio::test]
async fn a_cassandra_single_column_update_reaches_elasticsearch_and_is_never_reverted() {
    let s = Scenario::new("t19c").await;
    s.once(&[]);
    let id = Uuid::new_v4();
    let index = s.index("p");
    s.es_write(id, &doc(&index, "t", now_ms() - 10_000, json!({"v": 9})))
        .await;
    s.once(&[]);
    s.wait_equal(1).await;
    s.cql_update_content(id, &json!({"v": 1})).await;
    s.once(&[]);
    let (e, c) = (s.elasticsearch().await, s.cassandra().await);
    assert!(
        holds(&e, &c, &id, &json!({"v": 1})),
        "{:?}",
        differences(&e, &c)
    );
    stays(&s, 3, "after a column update").await;
}

// An integer past 64 bits is data like any other: a change to its last digit is a change, on
// either side, and arrives with every digit.
#[tokio::test]
async fn a_change_to_the_last_digit_of_an_integer_past_64_bits_reaches_the_other_side() {
    let s = Scenario::new("tbigint").await;
    s.once(&[]);
    let json = |text: &str| serde_json::from_str::<Value>(text).expect("JSON");
    let index = s.index("p");
    // Mapped as an application with such numbers maps them (a dynamic mapping takes them for
    // a `long` and refuses them); the source keeps every digit whatever the mapping.
    let mapping = json!({"mappings": {"properties": {"n": {"type": "double"}}}});
    s.es_request(
        elasticsearch::http::Method::Put,
        &format!("/{index}"),
        Some(mapping),
    )
    .await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let t = now_ms() - 60_000;
    s.cql_write(
        a,
        &doc(
            &index,
            "t",
            t,
            json(r#"{"n": 123456789012345678901234567890}"#),
        ),
    )
    .await;
    s.es_write(
        b,
        &doc(&index, "t", t, json(r#"{"n": 18446744073709551616}"#)),
    )
    .await;
    s.once(&[]);
    s.wait_equal(2).await;
    let (a_wanted, b_wanted) = (
        json(r#"{"n": 123456789012345678901234567891}"#),
        json(r#"{"n": 18446744073709551617}"#),
    );
    // Only the number changes: not the timestamp, not the type.
    s.cql_update_content(a, &a_wanted).await;
    s.es_partial_update(&index, b, b_wanted.clone()).await;
    s.once(&[]);
    let (e, c) = (s.elasticsearch().await, s.cassandra().await);
    assert!(holds(&e, &c, &a, &a_wanted), "{:?}", differences(&e, &c));
    assert!(holds(&e, &c, &b, &b_wanted), "{:?}", differences(&e, &c));
    stays(&s, 2, "after the change of a last digit").await;
}

// 19 with a running sync at period 1: both kinds of update, on both sides, converge.
#[tokio::test]
async fn partial_updates_on_both_sides_converge_under_a_running_sync() {
    let s = Scenario::new("t19run").await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let index = s.index("p");
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    s.cql_write(a, &doc(&index, "t", now_ms() - 60_000, json!({"v": 9})))
        .await;
    s.es_write(b, &doc(&index, "t", now_ms() - 60_000, json!({"w": 9})))
        .await;
    s.wait_equal(2).await;
    s.es_partial_update(&index, a, json!({"v": 1})).await;
    s.cql_update_content(b, &json!({"w": 1})).await;
    s.wait_until("both updates on both sides", |e, c| {
        holds(e, c, &a, &json!({"v": 1})) && holds(e, c, &b, &json!({"w": 1}))
    })
    .await;
    let settled = essync.rounds().len();
    essync.wait_rounds(settled, 3).await;
    let (e, c) = (s.elasticsearch().await, s.cassandra().await);
    assert!(holds(&e, &c, &a, &json!({"v": 1})), "reverted: {e:?}");
    assert!(holds(&e, &c, &b, &json!({"w": 1})), "reverted: {e:?}");
}

// 20: a delete on one side reaches the other, within two rounds of a running sync.
#[tokio::test]
async fn a_delete_on_either_side_reaches_the_other_within_two_rounds() {
    let s = Scenario::new("t20").await;
    let essync = s.essync(&["-v"]);
    essync.wait_rounds(0, 1).await;
    let index = s.index("d");
    let [from_es, from_cassandra, kept] = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    for id in [from_es, from_cassandra, kept] {
        s.cql_write(
            id,
            &doc(&index, "t", now_ms(), json!({"id": id.to_string()})),
        )
        .await;
    }
    s.wait_equal(3).await;
    let settled = essync.rounds().len();
    essync.wait_rounds(settled, 1).await;
    s.es_delete(&index, from_es).await;
    s.cql_delete(&[from_cassandra]).await;
    let rounds = essync.rounds().len();
    // The round under way when the deletes landed may miss them; the next two see them.
    essync.wait_rounds(rounds, 3).await;
    let (e, c) = (s.elasticsearch().await, s.cassandra().await);
    let log = essync.output().join("\n");
    assert_eq!(
        e.keys().copied().collect::<Vec<_>>(),
        vec![kept],
        "deleted in Cassandra: {from_cassandra}, in Elasticsearch: {from_es}; {e:?}\n{log}"
    );
    assert!(
        differences(&e, &c).is_empty(),
        "deleted in Cassandra: {from_cassandra}, in Elasticsearch: {from_es}; {:?}\n{log}",
        differences(&e, &c)
    );
    let deleted: Vec<Round> = essync
        .rounds()
        .into_iter()
        .filter(|round| round.deleted != [0, 0])
        .collect();
    assert!(!deleted.is_empty(), "no round reported the deletes");
}

// 20: on a table larger than one sweep page (5 x 1,000 rows), in rounds that overrun their
// period (each then sweeps a single page), a backdated Cassandra write and a Cassandra delete,
// which only the sweep finds, still reach Elasticsearch as the sweep passes over the table.
#[tokio::test]
async fn rounds_that_overrun_their_period_sweep_a_page_each_and_still_find_every_change() {
    let s = Scenario::new("t20pass").await;
    s.create_table().await;
    let index = s.index("p");
    let all = ids(5_500);
    let docs: Vec<(Uuid, Doc)> = all
        .iter()
        .map(|id| {
            (
                *id,
                doc(&index, "t", now_ms(), json!({"n": id.to_string()})),
            )
        })
        .collect();
    s.cql_bulk(&docs).await;
    // A period of 1 ms, which every round overruns.
    let essync = s.essync_every("0.001", &["-v", "-s"]);
    s.wait_until_within(
        std::time::Duration::from_secs(120),
        "both stores equal",
        |e, c| e.len() == all.len() && differences(e, c).is_empty(),
    )
    .await;
    let (backdated, deleted) = (all[17], all[4_151]);
    let hour_ago = now_ms() - HOUR;
    s.cql_write(
        backdated,
        &doc(
            &index,
            "t",
            hour_ago,
            json!({"n": "written with an old timestamp"}),
        ),
    )
    .await;
    s.cql_delete(&[deleted]).await;
    s.wait_until(
        "the backdated write and the delete in Elasticsearch",
        |e, c| {
            e.len() == all.len() - 1
                && !e.contains_key(&deleted)
                && e.get(&backdated)
                    .is_some_and(|d| d.timestamp == Some(hour_ago))
                && differences(e, c).is_empty()
        },
    )
    .await;
    let log = essync.output();
    assert!(
        log.iter().any(|l| l.contains("the round used its period")),
        "no round stopped its sweep at the period:\n{}",
        log.join("\n")
    );
}

// 20: an index essync itself created, by copying a row into it, in which an application
// deletes a document before essync's next round first sees the index.
#[tokio::test]
async fn a_delete_in_an_index_essync_just_created_reaches_cassandra() {
    let s = Scenario::new("t20new").await;
    s.once(&[]);
    let index = s.index("n");
    let [deleted, kept] = [Uuid::new_v4(), Uuid::new_v4()];
    for id in [deleted, kept] {
        s.cql_write(id, &doc(&index, "t", now_ms(), json!({"v": 1})))
            .await;
    }
    // This round creates the index in Elasticsearch (its delete counters were read before).
    s.once(&[]);
    s.wait_equal(2).await;
    s.es_delete(&index, deleted).await;
    s.once(&[]);
    s.once(&[]);
    let (e, c) = (s.elasticsearch().await, s.cassandra().await);
    assert_eq!(c.keys().copied().collect::<Vec<_>>(), vec![kept], "{c:?}");
    assert!(differences(&e, &c).is_empty(), "{:?}", differences(&e, &c));
}

// 20: deleted on both sides; deleted while essync is stopped; a later -s does not bring it back.
#[tokio::test]
async fn deletes_on_both_sides_and_while_stopped_stay_deleted_even_after_s() {
    let s = Scenario::new("t20b").await;
    s.once(&[]);
    let index = s.index("d");
    let all = ids(4);
    for id in &all {
        s.es_write(
            *id,
            &doc(&index, "t", now_ms(), json!({"n": id.to_string()})),
        )
        .await;
    }
    s.once(&[]);
    s.wait_equal(4).await;
    // Essync is not running: one deleted on each side, one on both.
    s.es_delete(&index, all[0]).await;
    s.cql_delete(&[all[1]]).await;
    s.es_delete(&index, all[2]).await;
    s.cql_delete(&[all[2]]).await;
    s.once(&[]);
    let e = s.wait_equal(1).await;
    assert!(e.contains_key(&all[3]));
    // A full reconciliation later brings nothing back.
    s.once(&["-s"]);
    let e = s.wait_equal(1).await;
    assert!(e.contains_key(&all[3]));
}

// 21: a delete on one side and a later change on the other: the change wins (restored), the
// same way on each side and whatever the timestamps.
#[tokio::test]
async fn a_change_after_the_last_sync_wins_over_a_delete_on_the_other_side() {
    let s = Scenario::new("t21").await;
    s.once(&[]);
    let index = s.index("r");
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    s.cql_write(a, &doc(&index, "t", now_ms(), json!({"v": "original"})))
        .await;
    s.cql_write(b, &doc(&index, "t", now_ms(), json!({"v": "original"})))
        .await;
    s.once(&[]);
    s.wait_equal(2).await;
    // a: deleted in Elasticsearch, changed in Cassandra (with an old timestamp).
    s.es_delete(&index, a).await;
    s.cql_write(
        a,
        &doc(
            &index,
            "t",
            now_ms() - HOUR,
            json!({"v": "changed in cassandra"}),
        ),
    )
    .await;
    // b: deleted in Cassandra, changed in Elasticsearch by a partial update.
    s.cql_delete(&[b]).await;
    s.es_partial_update(&index, b, json!({"v": "changed in elasticsearch"}))
        .await;
    s.once(&[]);
    let (e, c) = (s.elasticsearch().await, s.cassandra().await);
    assert!(
        holds(&e, &c, &a, &json!({"v": "changed in cassandra"})),
        "{e:?}"
    );
    assert!(
        holds(&e, &c, &b, &json!({"v": "changed in elasticsearch"})),
        "{e:?}"
    );
    stays(&s, 2, "after restoring").await;
}

// 20: a thousand deletes in one burst, on each side, all propagate.
#[tokio::test]
async fn a_thousand_deletes_in_one_burst_on_each_side_all_propagate() {
    let s = Scenario::new("t20k").await;
    s.once(&[]);
    let index = s.index("burst");
    let docs: Vec<(Uuid, Doc)> = ids(2001)
        .into_iter()
        .enumerate()
        .map(|(n, id)| (id, doc(&index, "t", now_ms(), json!({"n": n}))))
        .collect();
    s.cql_bulk(&docs[..1000]).await;
    s.es_bulk(&docs[1000..]).await;
    s.once(&[]);
    s.wait_equal(2001).await;
    let from_cassandra: Vec<Uuid> = docs[..1000].iter().map(|(id, _)| *id).collect();
    let from_es: Vec<(String, Uuid)> = docs[1000..2000]
        .iter()
        .map(|(id, _)| (index.clone(), *id))
        .collect();
    s.cql_delete(&from_cassandra).await;
    s.es_bulk_delete(&from_es).await;
    let rounds = s.once(&[]);
    let e = s.wait_equal(1).await;
    assert!(e.contains_key(&docs[2000].0));
    assert!(
        rounds.iter().any(|round| round.deleted == [1000, 1000]),
        "{rounds:?}"
    );
}

// 22, case 4: data that predates essync. An Elasticsearch document without essync's metadata
// and a Cassandra row of the same id stamped later: the stamped version wins; and the mirror.
#[tokio::test]
async fn data_that_predates_essync_settles_by_the_documented_rule_and_later_writes_win() {
    let s = Scenario::new("t22").await;
    s.create_table().await;
    let index = s.index("old");
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    // a: unstamped in Elasticsearch (written "now" as far as essync can tell), stamped in
    // Cassandra with an explicit recent time.
    s.es_write(
        a,
        &Doc {
            index: index.clone(),
            doc_type: None,
            timestamp: None,
            content: json!({"from": "elasticsearch, no metadata"}),
        },
    )
    .await;
    s.cql_write(
        a,
        &doc(
            &index,
            "t",
            now_ms() - 1_000,
            json!({"from": "cassandra, stamped"}),
        ),
    )
    .await;
    // b: a Cassandra row without a timestamp written first, then an Elasticsearch document
    // stamped later.
    s.cql_write(
        b,
        &Doc {
            index: index.clone(),
            doc_type: Some("t".into()),
            timestamp: None,
            content: json!({"from": "cassandra, no timestamp"}),
        },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    s.es_write(
        b,
        &doc(
            &index,
            "t",
            now_ms(),
            json!({"from": "elasticsearch, stamped"}),
        ),
    )
    .await;
    s.once(&["-s"]);
    let (e, c) = (s.elasticsearch().await, s.cassandra().await);
    assert!(
        holds(&e, &c, &a, &json!({"from": "cassandra, stamped"})),
        "{e:?}"
    );
    assert!(
        holds(&e, &c, &b, &json!({"from": "elasticsearch, stamped"})),
        "{e:?}"
    );
    // Later application writes win as in 19, whatever timestamps they keep.
    s.es_partial_update(&index, a, json!({"later": true})).await;
    s.cql_update_content(b, &json!({"later": true})).await;
    s.once(&[]);
    let (e, c) = (s.elasticsearch().await, s.cassandra().await);
    assert!(
        holds(
            &e,
            &c,
            &a,
            &json!({"from": "cassandra, stamped", "later": true})
        ),
        "{e:?}"
    );
    assert!(holds(&e, &c, &b, &json!({"later": true})), "{e:?}");
}

/// A deterministic random source for the convergence test (xorshift*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What one side does to an id in one step.
#[derive(Debug, Clone)]
enum Op {
    /// A whole new version with an explicit timestamp.
    Put(Value, i64),
    /// A partial update that keeps the synced timestamp (observed when essync sees it).
    Partial(Value),
    Delete,
}

/// What the default policy makes of one step's changes to an id, computed on its own.
fn expected(before: Option<&Value>, es: Option<&Op>, cassandra: Option<&Op>) -> Option<Value> {
    let apply = |op: &Op| match op {
        Op::Put(content, _) => Some(content.clone()),
        Op::Partial(fields) => {
            let mut merged = before.cloned().unwrap_or_else(|| json!({}));
            if let (Some(m), Some(f)) = (merged.as_object_mut(), fields.as_object()) {
                m.extend(f.clone());
            }
            Some(merged)
        }
        Op::Delete => None,
    };
    match (es, cassandra) {
        (None, None) => before.cloned(),
        (Some(op), None) | (None, Some(op)) => apply(op),
        (Some(Op::Delete), Some(other)) | (Some(other), Some(Op::Delete)) => apply(other),
        (Some(e), Some(c)) => {
            // Both changed: the later timestamp wins; an observed one (a partial update) is
            // "now", between the hour before and the hour after that conflicting puts use.
            let time = |op: &Op| match op {
                Op::Put(_, t) => *t,
                _ => now_ms(),
            };
            if time(e) >= time(c) {
                apply(e)
            } else {
                apply(c)
            }
        }
    }
}

// 23: a seeded random mix of creates, updates, partial updates and deletes on both sides,
// conflicts included, with rounds in between; the stores end as the model says, and further
// rounds write nothing.
#[tokio::test]
async fn a_random_mix_of_application_writes_converges_to_what_the_policy_implies() {
    let seed: u64 = std::env::var("ESSYNC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64 | 1);
    eprintln!("convergence seed {seed} (ESSYNC_TEST_SEED={seed} repeats this run)");
    let mut rng = Rng(seed);
    let s = Scenario::new("t23").await;
    s.once(&[]);
    let indices = [s.index("a"), s.index("b")];
    let mut model: BTreeMap<Uuid, (String, Value)> = BTreeMap::new();
    let mut operations = 0;
    let mut clock = now_ms() - 10 * HOUR;
    for step in 0..30 {
        let mut es_ops: BTreeMap<Uuid, Op> = BTreeMap::new();
        let mut cassandra_ops: BTreeMap<Uuid, Op> = BTreeMap::new();
        let existing: Vec<Uuid> = model.keys().copied().collect();
        for _ in 0..(6 + rng.below(10)) {
            let on_es = rng.below(2) == 0;
            let conflict_step = rng.below(4) == 0;
            let ops = if on_es {
                &mut es_ops
            } else {
                &mut cassandra_ops
            };
            let kind = if existing.is_empty() { 0 } else { rng.below(4) };
            clock += 1 + rng.below(1000) as i64;
            let put_time = clock;
            if kind == 0 {
                let id = Uuid::new_v4();
                let index = indices[rng.below(2) as usize].clone();
                let content = json!({"n": rng.below(1000), "created": step});
                model.insert(id, (index, Value::Null));
                ops.insert(id, Op::Put(content, put_time));
                continue;
            }
            let id = existing[rng.below(existing.len() as u64) as usize];
            if ops.contains_key(&id) {
                continue;
            }
            let op = match kind {
                1 => Op::Put(json!({"n": rng.below(1000), "put": step}), put_time),
                2 => Op::Partial(json!({"p": rng.below(1000)})),
                _ => Op::Delete,
            };
            ops.insert(id, op);
            // Sometimes the other side changes the same id in the same step: a conflict.
            if conflict_step {
                let other = if on_es {
                    &mut cassandra_ops
                } else {
                    &mut es_ops
                };
                let t = now_ms()
                    + if rng.below(2) == 0 { HOUR } else { -HOUR }
                    + rng.below(1000) as i64;
                let op = match rng.below(3) {
                    0 => Op::Put(json!({"n": rng.below(1000), "conflict": step}), t),
                    1 => Op::Delete,
                    _ => Op::Put(json!({"other": rng.below(1000)}), t),
                };
                other.entry(id).or_insert(op);
            }
        }
        // A partial update on both sides at once has no timestamp to order them: make one a put.
        for (id, op) in es_ops.iter_mut() {
            if matches!(op, Op::Partial(_)) && matches!(cassandra_ops.get(id), Some(Op::Partial(_)))
            {
                *op = Op::Put(json!({"both": step}), now_ms() + HOUR);
            }
        }
        // Apply the step through the plain clients, and to the model.
        let touched: BTreeSet<Uuid> = es_ops.keys().chain(cassandra_ops.keys()).copied().collect();
        for id in &touched {
            let (index, before) = model.get(id).cloned().expect("in the model");
            let before = (!before.is_null()).then_some(before);
            let es_op = es_ops.get(id);
            let cassandra_op = cassandra_ops.get(id);
            for (op, on_es) in [(es_op, true), (cassandra_op, false)] {
                let Some(op) = op else { continue };
                operations += 1;
                match (op, on_es) {
                    (Op::Put(content, t), true) => {
                        s.es_write(*id, &doc(&index, "t", *t, content.clone()))
                            .await
                    }
                    (Op::Put(content, t), false) => {
                        s.cql_write(*id, &doc(&index, "t", *t, content.clone()))
                            .await
                    }
                    (Op::Partial(fields), true) => {
                        if before.is_some() {
                            s.es_partial_update(&index, *id, fields.clone()).await
                        }
                    }
                    (Op::Partial(fields), false) => {
                        if let Some(before) = &before {
                            let mut merged = before.clone();
                            if let (Some(m), Some(f)) = (merged.as_object_mut(), fields.as_object())
                            {
                                m.extend(f.clone());
                            }
                            s.cql_update_content(*id, &merged).await
                        }
                    }
                    (Op::Delete, true) => {
                        if before.is_some() {
                            s.es_delete(&index, *id).await
                        }
                    }
                    (Op::Delete, false) => s.cql_delete(&[*id]).await,
                }
            }
            // An operation on a document that is gone did nothing.
            let exists = before.is_some();
            let es_op = es_op.filter(|op| exists || matches!(op, Op::Put(..)));
            let cassandra_op = cassandra_op.filter(|op| exists || matches!(op, Op::Put(..)));
            let after = expected(before.as_ref(), es_op, cassandra_op);
            model.insert(*id, (index, after.unwrap_or(Value::Null)));
        }
        s.once(&[]);
        let (e, c) = (s.elasticsearch().await, s.cassandra().await);
        let diff = differences(&e, &c);
        assert!(
            diff.is_empty(),
            "seed {seed}, step {step}: stores differ: {diff:?}"
        );
        let live: BTreeMap<Uuid, Value> = model
            .iter()
            .filter(|(_, (_, v))| !v.is_null())
            .map(|(id, (_, v))| (*id, v.clone()))
            .collect();
        let held: BTreeMap<Uuid, Value> =
            e.iter().map(|(id, d)| (*id, d.content.clone())).collect();
        assert_eq!(
            held, live,
            "seed {seed}, step {step}: not what the policy implies"
        );
        model.retain(|_, (_, v)| !v.is_null());
    }
    assert!(operations >= 200, "only {operations} operations");
    // Quiescence: two more rounds write nothing.
    for round in [s.once(&[]), s.once(&[])] {
        for round in round {
            assert!(round.idle(), "seed {seed}: an idle round wrote: {round}");
        }
    }
}

// A policy compiled for the earlier interface (0.1.0) keeps working: it resolves conflicts of
// two versions (this one prefers Elasticsearch), while deletes are decided by the default rule.
#[tokio::test]
async fn a_policy_of_the_earlier_interface_keeps_working_with_deletes_decided_by_the_default_rule()
{
    let s = Scenario::new("t01legacy").await;
    let policy = ["--policy", policies::LEGACY_V0_1];
    s.once(&policy);
    let index = s.index("l");
    let (both, deleted, changed) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for id in [both, deleted, changed] {
        s.cql_write(id, &doc(&index, "t", now_ms(), json!({"v": "base"})))
            .await;
    }
    s.once(&policy);
    s.wait_equal(3).await;
    // Both changed: the legacy policy picks Elasticsearch, though Cassandra is newer.
    s.es_write(both, &doc(&index, "t", now_ms() - HOUR, json!({"v": "es"})))
        .await;
    s.cql_write(both, &doc(&index, "t", now_ms(), json!({"v": "cassandra"})))
        .await;
    // A delete on one side only is taken; a delete against a change: the change wins.
    s.cql_delete(&[deleted]).await;
    s.es_delete(&index, changed).await;
    s.cql_write(changed, &doc(&index, "t", now_ms(), json!({"v": "kept"})))
        .await;
    let rounds = s.once(&policy);
    let (e, c) = (s.elasticsearch().await, s.cassandra().await);
    assert!(
        holds(&e, &c, &both, &json!({"v": "es"})),
        "{rounds:?} {e:?}"
    );
    assert!(holds(&e, &c, &changed, &json!({"v": "kept"})), "{e:?}");
    assert!(!e.contains_key(&deleted) && !c.contains_key(&deleted));
}

/// The misbehaving test policy, which holds every document of an index ending in `_hold` for
/// about a second (after logging `misbehaving policy holds ID`), with room for that in the
/// policy's time limit.
const HOLDING: [&str; 4] = [
    "--policy",
    policies::MISBEHAVING,
    "--policy-timeout-ms",
    "60000",
];

/// Whether the running essync's policy has started holding `id`.
fn policy_holds(essync: &crate::support::scenario::Essync, id: &Uuid) -> bool {
    let wanted = format!("misbehaving policy holds {id}");
    essync.output().iter().any(|l| l.contains(&wanted))
}

/// Waits (at most `seconds`) until the misbehaving policy holds `id`: essync has read it on
/// both sides and not written it yet.
async fn wait_policy_holds(essync: &crate::support::scenario::Essync, id: &Uuid, seconds: u64) {
    let start = std::time::Instant::now();
    while !policy_holds(essync, id) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(seconds),
            "essync never examined {id}:\n{}",
            essync.output().join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

// An application writes an id while essync is between reading it and writing it (here, while
// the policy's filter takes a second over it): the write essync makes on the other side is
// essync's, never an application's change. So the application's write (a delete, an update,
// even with an older timestamp) wins, on each side, and no conflict is left to a policy.
#[tokio::test]
async fn an_application_write_made_while_essync_decides_is_never_undone() {
    let s = Scenario::new("t22race").await;
    let policy = HOLDING;
    s.once(&policy);
    // The misbehaving policy holds every document of an index ending in `_hold`.
    let index = s.index("hold");
    let [es_deleted, es_updated, c_deleted, c_updated] = [(); 4].map(|_| Uuid::new_v4());
    let at = now_ms() - HOUR;
    for id in [es_deleted, es_updated] {
        s.es_write(id, &doc(&index, "t", at, json!({"v": 1}))).await;
    }
    for id in [c_deleted, c_updated] {
        s.cql_write(id, &doc(&index, "t", at, json!({"v": 1})))
            .await;
    }
    s.once(&policy);
    s.wait_equal(4).await;
    // Changes that keep the stamp: essync writes both sides (the copy, and the new stamp).
    for id in [es_deleted, es_updated] {
        s.es_partial_update(&index, id, json!({"p": 1})).await;
    }
    for id in [c_deleted, c_updated] {
        s.cql_update_content(id, &json!({"v": 1, "p": 1})).await;
    }
    let mut args = policy.to_vec();
    args.push("-v");
    let essync = s.essync(&args);
    let (mut es_done, mut c_done) = (false, false);
    let start = std::time::Instant::now();
    while !(es_done && c_done) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "essync never examined the changes:\n{}",
            essync.output().join("\n")
        );
        if !es_done && policy_holds(&essync, &es_deleted) {
            // essync has read both Elasticsearch documents and not written them yet.
            s.es_delete(&index, es_deleted).await;
            s.es_partial_update(&index, es_updated, json!({"p": 2}))
                .await;
            es_done = true;
        }
        if !c_done && policy_holds(&essync, &c_deleted) {
            s.cql_delete(&[c_deleted]).await;
            s.cql_write(c_updated, &doc(&index, "t", at - HOUR, json!({"v": 7})))
                .await;
            c_done = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let es_wanted = json!({"v": 1, "p": 2});
    let c_wanted = json!({"v": 7});
    let start = std::time::Instant::now();
    loop {
        let (e, c) = (s.elasticsearch().await, s.cassandra().await);
        if differences(&e, &c).is_empty()
            && e.len() == 2
            && content_of(&e, &es_updated) == Some(es_wanted.clone())
            && content_of(&e, &c_updated) == Some(c_wanted.clone())
        {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the application's writes did not settle on both sides: {:?}\n             Elasticsearch {e:?}\nCassandra {c:?}\nessync's log:\n{}",
            differences(&e, &c),
            essync.output().join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    drop(essync);
    stays(&s, 2, "after writes made while essync decided").await;
}

// An application creates in Cassandra an id that essync is copying there from Elasticsearch
// (here, while the policy holds essync between its read, which found no row, and its write),
// with an older timestamp. essync's creation is fenced at the time it read the id absent, so
// the application's row, written after that, stays; it is a later change, and both sides end
// with it. A creation is not read back (cheaper, and the outcome is the same).
#[tokio::test]
async fn an_application_creating_the_row_essync_is_copying_keeps_its_row_on_both_sides() {
    let s = Scenario::new("t24create").await;
    s.once(&HOLDING);
    let index = s.index("hold");
    let id = Uuid::new_v4();
    let at = now_ms() - HOUR;
    s.es_write(id, &doc(&index, "t", at, json!({"from": "elasticsearch"})))
        .await;
    let mut args = HOLDING.to_vec();
    args.push("-v");
    let essync = s.essync(&args);
    wait_policy_holds(&essync, &id, 120).await;
    // essync has read the id absent in Cassandra and not written it yet.
    s.cql_write(
        id,
        &doc(&index, "t", at - HOUR, json!({"from": "application"})),
    )
    .await;
    let wanted = json!({"from": "application"});
    let start = std::time::Instant::now();
    loop {
        let (e, c) = (s.elasticsearch().await, s.cassandra().await);
        if holds(&e, &c, &id, &wanted) && e.len() == 1 {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the application's row did not settle on both sides: {:?}\n\
             Elasticsearch {e:?}\nCassandra {c:?}\nessync's log:\n{}",
            differences(&e, &c),
            essync.output().join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    drop(essync);
    stays(&s, 2, "after a creation raced by an application").await;
}

// The round after essync wrote to an index does not read its own writes back, unless someone
// else wrote there too: an application's document that lands in the same index while essync
// writes there (here, while the policy holds essync between its read and its write) is read
// and synced.
#[tokio::test]
async fn essyncs_own_writes_are_not_read_back_but_an_application_write_beside_them_is() {
    let s = Scenario::new("t23own").await;
    let mut args = HOLDING.to_vec();
    args.push("-v");
    let essync = s.essync(&args);
    essync.wait_rounds(0, 1).await;
    // The misbehaving policy holds every document of an index ending in `_hold`.
    let index = s.index("hold");
    // An index that exists in Elasticsearch before the part of the test that reads it.
    let plain = s.index("plain");
    let (copied, beside, first) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    s.cql_write(
        first,
        &doc(&plain, "t", now_ms(), json!({"by": "cassandra"})),
    )
    .await;
    s.cql_write(
        copied,
        &doc(&index, "t", now_ms(), json!({"by": "cassandra"})),
    )
    .await;
    wait_policy_holds(&essync, &copied, 60).await;
    // essync is about to write `copied` to the index: an application writes beside it.
    s.es_write(beside, &doc(&index, "t", now_ms(), json!({"by": "app"})))
        .await;
    s.wait_equal(3).await;

    // A document copied to an index that exists: no round reads it back.
    let settled = essync.rounds().len();
    essync.wait_rounds(settled, 1).await;
    let before = essync.rounds().len();
    let later = Uuid::new_v4();
    s.cql_write(
        later,
        &doc(&plain, "t", now_ms(), json!({"by": "cassandra"})),
    )
    .await;
    s.wait_equal(4).await;
    let copied_by_now = essync.rounds().len();
    essync.wait_rounds(copied_by_now, 2).await;
    for round in &essync.rounds()[before..] {
        assert!(
            round.read[0] == 0,
            "a round read essync's own write back: {round}"
        );
    }
}

// An upgrade from the ledgers of earlier versions, which kept every synced document whole with
// the sync's name in each row: first one table shared by the syncs of a keyspace, then one per
// sync. This sync's entries are copied into its ledger (another sync's are not), so changes made
// on one side before the upgrade are still credited to that side: an update stamped earlier
// than the other side's copy, and a delete.
#[tokio::test]
async fn a_ledger_shared_by_the_keyspace_is_copied_once_and_keeps_crediting_each_side() {
    upgrade_from("essync_ledger", "tledger").await;
}

#[tokio::test]
async fn a_ledger_of_an_earlier_version_is_copied_once_and_keeps_crediting_each_side() {
    upgrade_from("essync_ledger_{table}", "tledger1").await;
}

/// Syncs two documents, moves the ledger's entries into an earlier version's table (`legacy`,
/// `{table}` standing for the synced table's name), changes both documents in Cassandra while
/// essync is stopped, and checks that essync copies the entries and credits the changes.
async fn upgrade_from(legacy: &str, prefix: &str) {
    let keyspace = format!("essync_upgrade_{prefix}_{}", std::process::id());
    let s = Scenario::in_keyspace(prefix, &keyspace, &es_url(), &cassandra_node()).await;
    s.once(&[]);
    let index = s.index("u");
    let (updated, deleted) = (Uuid::new_v4(), Uuid::new_v4());
    for id in [updated, deleted] {
        s.es_write(
            id,
            &doc(&index, "t", now_ms(), json!({"n": id.to_string()})),
        )
        .await;
    }
    s.once(&[]);
    s.wait_equal(2).await;

    // The layout of earlier versions: the whole synced document, `sync` telling the syncs
    // apart.
    let ledger = format!("{keyspace}.essync_synced_{}", s.name);
    let legacy = format!("{keyspace}.{}", legacy.replace("{table}", &s.name));
    let session = &s.cql;
    let run = |cql: String| async move {
        session
            .query_unpaged(cql.clone(), ())
            .await
            .unwrap_or_else(|e| panic!("{cql}: {e}"));
    };
    run(format!(
        "CREATE TABLE {legacy} (id uuid, sync text, digest blob, index_ text, type text, \
         timestamp timestamp, content text, es_seq_no bigint, es_primary_term bigint, \
         cassandra_written_at bigint, pending blob, seen_es blob, seen_cassandra blob, \
         PRIMARY KEY (id, sync))"
    ))
    .await;
    type Row = (
        Uuid,
        Option<Vec<u8>>,
        Option<String>,
        Option<String>,
        Option<scylla::value::CqlTimestamp>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );
    // (The row whose id is nil marks the ledger as set up: it holds no entry.)
    let rows: Vec<Row> = s
        .cql
        .query_unpaged(
            format!(
                "SELECT id, digest, index_, type, timestamp, es_seq_no, es_primary_term, \
                 cassandra_written_at FROM {ledger}"
            ),
            (),
        )
        .await
        .expect("read the ledger")
        .into_rows_result()
        .expect("rows")
        .rows::<Row>()
        .expect("typed rows")
        .map(|row| row.expect("a ledger row"))
        .filter(|row| !row.0.is_nil())
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let synced = s.cassandra().await;
    let insert = format!(
        "INSERT INTO {legacy} (id, sync, digest, index_, type, timestamp, content, es_seq_no, \
         es_primary_term, cassandra_written_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    );
    for (id, digest, index_, doc_type, timestamp, seq_no, term, written_at) in &rows {
        let content = synced[id].content.to_string();
        let row = (
            id, &s.name, digest, index_, doc_type, timestamp, content, seq_no, term, written_at,
        );
        s.cql
            .query_unpaged(insert.clone(), row)
            .await
            .expect("copy");
        // Another sync's entry for the same id, which must stay its own.
        let other = (
            id,
            "another_table",
            vec![0_u8; 16],
            index_,
            doc_type,
            timestamp,
            r#"{"other":true}"#,
            seq_no,
            term,
            written_at,
        );
        s.cql
            .query_unpaged(insert.clone(), other)
            .await
            .expect("copy");
    }
    run(format!("DROP TABLE {ledger}")).await;

    // While essync is stopped: an update stamped an hour before Elasticsearch's copy, and a
    // delete, both in Cassandra. Without the ledger, the first would lose to the later stamp
    // and the second would be taken for a document Cassandra never had.
    s.cql_write(
        updated,
        &doc(
            &index,
            "t",
            now_ms() - HOUR,
            json!({"n": "older but later"}),
        ),
    )
    .await;
    s.cql_delete(&[deleted]).await;
    s.once(&[]);
    let e = s.wait_equal(1).await;
    assert_eq!(
        content_of(&e, &updated),
        Some(json!({"n": "older but later"})),
        "{e:?}"
    );
    let copied: Vec<(Vec<u8>,)> = s
        .cql
        .query_unpaged(
            format!("SELECT digest FROM {ledger} WHERE id = ?"),
            (updated,),
        )
        .await
        .expect("read the new ledger")
        .into_rows_result()
        .expect("rows")
        .rows::<(Vec<u8>,)>()
        .expect("typed rows")
        .map(|row| row.expect("a row"))
        .collect();
    assert_eq!(copied.len(), 1, "{copied:?}");
    assert_ne!(copied[0].0, vec![0_u8; 16], "only this sync's entry");
    stays(&s, 2, "after the upgrade").await;
    run(format!("DROP KEYSPACE {keyspace}")).await;
}

/// The `base` column of every entry of a scenario's ledger: whether it holds content, by id.
async fn ledger_keeps_content(s: &Scenario) -> BTreeMap<Uuid, bool> {
    let ledger = format!("{}.essync_synced_{}", s.keyspace, s.name);
    s.cql
        .query_unpaged(format!("SELECT id, base FROM {ledger}"), ())
        .await
        .expect("read the ledger")
        .into_rows_result()
        .expect("rows")
        .rows::<(Uuid, Option<Vec<u8>>)>()
        .expect("typed rows")
        .map(|row| row.expect("a ledger row"))
        // (The row whose id is nil marks the ledger as set up: it holds no entry.)
        .filter(|(id, _)| !id.is_nil())
        .map(|(id, base)| (id, base.is_some()))
        .collect()
}

// The ledger keeps a synced document's content only for a policy that merges from it: with the
// default policy, every entry's `base` is null; with field-merge (which asks for it), every
// entry keeps it, and a three-way merge of fields changed on each side keeps both changes.
#[tokio::test]
async fn the_ledger_keeps_content_only_for_a_policy_that_merges_from_the_base() {
    let lean = Scenario::new("t30lean").await;
    lean.once(&[]);
    let index = lean.index("l");
    let ids = ids(3);
    for id in &ids {
        lean.cql_write(*id, &doc(&index, "t", now_ms(), json!({"v": "base"})))
            .await;
    }
    lean.once(&[]);
    lean.wait_equal(3).await;
    let kept = ledger_keeps_content(&lean).await;
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(kept.values().all(|kept| !kept), "{kept:?}");

    let merging = Scenario::new("t30merge").await;
    let policy = ["--policy", policies::FIELD_MERGE];
    merging.once(&policy);
    let index = merging.index("m");
    let id = Uuid::new_v4();
    let base = json!({"title": "Dune", "pages": 400});
    merging
        .cql_write(id, &doc(&index, "t", now_ms() - HOUR, base))
        .await;
    merging.once(&policy);
    merging.wait_equal(1).await;
    let kept = ledger_keeps_content(&merging).await;
    assert_eq!(kept, BTreeMap::from([(id, true)]));

    // Both sides change the document, each a field of its own: a conflict, merged from the
    // base the ledger kept (neither side holds it any more).
    let title = json!({"title": "Dune (2nd edition)", "pages": 400});
    let pages = json!({"title": "Dune", "pages": 412});
    merging
        .es_write(id, &doc(&index, "t", now_ms() - 1_000, title))
        .await;
    merging
        .cql_write(id, &doc(&index, "t", now_ms(), pages))
        .await;
    let rounds = merging.once(&policy);
    let (e, c) = (merging.elasticsearch().await, merging.cassandra().await);
    let both = json!({"title": "Dune (2nd edition)", "pages": 412});
    assert!(
        holds(&e, &c, &id, &both),
        "{rounds:?} {:?}",
        differences(&e, &c)
    );
    merging.once(&policy);
    let (e2, c2) = (merging.elasticsearch().await, merging.cassandra().await);
    assert_eq!((e2, c2), (e, c), "the merge stays");
    assert_eq!(
        ledger_keeps_content(&merging).await,
        BTreeMap::from([(id, true)])
    );
}

// A process that lost the table's lease while frozen sends, once thawed, a write it decided
// before: an old version, copied from Cassandra then, lands in Elasticsearch after the next
// holder synced a newer one (each write is conditional only on the version its writer read).
// Here that late write is made through the library, as essync makes it. It is no application's
// change: the next round copies Cassandra's newer version over it, and never the old version
// back into Cassandra.
#[tokio::test]
async fn a_late_write_of_a_process_that_lost_its_lease_is_not_copied_back() {
    use essync::elasticsearch::{
        ElasticsearchConfig, ElasticsearchStore, EsExpected, EsWrite, IndexSelection,
    };
    use essync::store::{Lookup, Read};
    let s = Scenario::new("t24late").await;
    s.once(&[]);
    let index = s.index("c");
    let id = Uuid::new_v4();
    let at = now_ms();
    let old = doc(&index, "t", at, json!({"n": 1}));
    s.cql_write(id, &old).await;
    s.once(&[]);
    s.wait_equal(1).await;
    let newer = json!({"n": 2});
    s.cql_write(id, &doc(&index, "t", at + 1, newer.clone()))
        .await;
    s.once(&[]);
    let (e, c) = (s.elasticsearch().await, s.cassandra().await);
    assert!(holds(&e, &c, &id, &newer), "not synced: {e:?} {c:?}");

    // The late write: the old version, compare-and-set against what Elasticsearch holds now.
    let mut config = ElasticsearchConfig::with_urls([es_url()]);
    config.indices = IndexSelection::new([s.indices()]).expect("index pattern");
    let store = ElasticsearchStore::connect(config).await.expect("connect");
    let found = store
        .get_by_ids(&[(id, Some(index.clone()))], chrono::Utc::now())
        .await
        .expect("read");
    let Some(Lookup::Found(Read::Document(held))) = found.get(&id) else {
        panic!("not in Elasticsearch");
    };
    let late = essync::Document::with_id(id, &index, "t", old.content.clone())
        .at(chrono::DateTime::from_timestamp_millis(at).expect("a time"));
    let applied = store
        .write_batch(&[EsWrite {
            document: late,
            expected: EsExpected::Version(held.version.clone()),
            digest: None,
        }])
        .await
        .expect("write");
    assert!(applied[0].outcome.is_written(), "{:?}", applied[0].outcome);

    let rounds = s.once(&["-v"]);
    let (e, c) = (s.elasticsearch().await, s.cassandra().await);
    assert!(
        holds(&e, &c, &id, &newer),
        "the late write was taken for a change: Elasticsearch {e:?}, Cassandra {c:?}, rounds {rounds:?}"
    );
    stays(&s, 1, "after a late write").await;
}
