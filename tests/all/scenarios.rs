//! The acceptance scenarios: the real essync binary against the real servers. Documents are
//! written and compared with the servers' own clients; every wait polls with a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use elasticsearch::http::Method;
use serde_json::json;
use uuid::Uuid;

use crate::support::proxy::Proxy;
use crate::support::scenario::{
    DEADLINE, Doc, Docs, Essync, Scenario, differences, doc, now_ms, run_to_end,
};
use crate::support::{es_url, policies};

const SIGHUP: i32 = 1;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

fn ids(n: usize) -> Vec<Uuid> {
    (0..n).map(|_| Uuid::new_v4()).collect()
}

/// Asserts that a store holds exactly `expected` for `id`.
fn assert_holds(store: &str, docs: &Docs, id: Uuid, expected: &Doc) {
    let held = docs
        .get(&id)
        .unwrap_or_else(|| panic!("{store} lacks {id}"));
    assert_eq!(held, expected, "{store} holds another version of {id}");
}

/// Scenarios 1 and 2: one document written on one side appears on the other, field by field.
async fn an_insert_appears_on_the_other_side(prefix: &str, written_to_cassandra: bool) {
    let s = Scenario::new(prefix).await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let id = Uuid::new_v4();
    let written = doc(
        &s.index("notes"),
        "note",
        now_ms(),
        json!({"title": "Ünïcödé ✓", "n": [1, 2], "nested": {"ok": true, "none": null}}),
    );
    if written_to_cassandra {
        s.cql_write(id, &written).await;
    } else {
        s.es_write(id, &written).await;
    }
    let elasticsearch = s.wait_equal(1).await;
    assert_holds("Elasticsearch", &elasticsearch, id, &written);
    assert_holds("Cassandra", &s.cassandra().await, id, &written);
}

// 1
#[tokio::test]
async fn a_cassandra_insert_appears_in_elasticsearch() {
    an_insert_appears_on_the_other_side("s01", true).await;
}

// 2
#[tokio::test]
async fn an_elasticsearch_insert_appears_in_cassandra() {
    an_insert_appears_on_the_other_side("s02", false).await;
}

// 3
#[tokio::test]
async fn ten_thousand_documents_on_each_side_before_start_all_arrive_with_s() {
    const EACH: usize = 10_000;
    let s = Scenario::new("s03").await;
    let written = volume(&s, EACH).await;
    let _essync = s.essync(&["-s"]);
    let (elasticsearch, _) = s
        .wait_until_within(
            Duration::from_secs(240),
            "20,000 documents on both sides",
            |e, c| e.len() == 2 * EACH && differences(e, c).is_empty(),
        )
        .await;
    for (id, written) in &written {
        assert_holds("Elasticsearch", &elasticsearch, *id, written);
    }
}

// 4
#[tokio::test]
async fn disjoint_new_documents_on_both_sides_end_as_the_union() {
    let s = Scenario::new("s04").await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let es_ids = ids(20);
    let cassandra_ids = ids(20);
    let es_writes = async {
        for (n, id) in es_ids.iter().enumerate() {
            s.es_write(*id, &doc(&s.index("a"), "t", now_ms(), json!({"es": n})))
                .await;
        }
    };
    let cassandra_writes = async {
        for (n, id) in cassandra_ids.iter().enumerate() {
            s.cql_write(*id, &doc(&s.index("b"), "t", now_ms(), json!({"c": n})))
                .await;
        }
    };
    tokio::join!(es_writes, cassandra_writes);
    let elasticsearch = s.wait_equal(40).await;
    let all: BTreeSet<Uuid> = es_ids.into_iter().chain(cassandra_ids).collect();
    assert_eq!(elasticsearch.keys().copied().collect::<BTreeSet<_>>(), all);
}

/// Writes one document, lets it sync, then changes it on both sides with the given
/// timestamps (offsets from now) and returns its id and the two versions.
async fn conflict(
    s: &Scenario,
    essync: &Essync,
    es_offset: i64,
    cassandra_offset: i64,
) -> (Uuid, Doc, Doc) {
    conflict_among(s, essync, 1, es_offset, cassandra_offset).await
}

/// [`conflict`] on a table that holds `count - 1` documents already.
async fn conflict_among(
    s: &Scenario,
    essync: &Essync,
    count: usize,
    es_offset: i64,
    cassandra_offset: i64,
) -> (Uuid, Doc, Doc) {
    let id = Uuid::new_v4();
    let base = now_ms();
    s.cql_write(
        id,
        &doc(&s.index("c"), "t", base - 10_000, json!({"v": "original"})),
    )
    .await;
    s.wait_equal(count).await;
    let es_version = doc(
        &s.index("c"),
        "t",
        base + es_offset,
        json!({"v": "elasticsearch"}),
    );
    let cassandra_version = doc(
        &s.index("c"),
        "t",
        base + cassandra_offset,
        json!({"v": "cassandra"}),
    );
    // Both changes at once, as far as essync can tell: a round that saw one side's change and
    // copied it before the other side's write landed would make that write a later change
    // (a change on one side only wins, whatever the timestamps), not a conflict.
    essync
        .paused(async {
            tokio::join!(
                s.es_write(id, &es_version),
                s.cql_write(id, &cassandra_version)
            )
        })
        .await;
    (id, es_version, cassandra_version)
}

// 5
#[tokio::test]
async fn same_id_changed_on_both_sides_the_newer_elasticsearch_version_wins() {
    let s = Scenario::new("s05").await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let (id, es_version, _) = conflict(&s, &essync, 2_000, 1_000).await;
    let (elasticsearch, cassandra) = s
        .wait_until("the Elasticsearch version on both sides", |e, c| {
            e.get(&id) == Some(&es_version) && c.get(&id) == Some(&es_version)
        })
        .await;
    assert!(differences(&elasticsearch, &cassandra).is_empty());
}

// 6
#[tokio::test]
async fn same_id_changed_on_both_sides_the_newer_cassandra_version_wins() {
    let s = Scenario::new("s06").await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let (id, _, cassandra_version) = conflict(&s, &essync, 1_000, 2_000).await;
    s.wait_until("the Cassandra version on both sides", |e, c| {
        e.get(&id) == Some(&cassandra_version) && c.get(&id) == Some(&cassandra_version)
    })
    .await;
}

// 7
#[tokio::test]
async fn equal_timestamps_give_the_documented_winner_whatever_the_order_or_restarts() {
    let s = Scenario::new("s07").await;
    s.create_table().await;
    let t = now_ms() - 5_000;
    // The documented tie-break: the greater content (canonical JSON, byte by byte) wins,
    // whichever side holds it.
    let smaller = json!({"v": "apple"});
    let greater = json!({"v": "banana"});
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    s.es_write(first, &doc(&s.index("t"), "t", t, greater.clone()))
        .await;
    s.cql_write(first, &doc(&s.index("t"), "t", t, smaller.clone()))
        .await;
    s.es_write(second, &doc(&s.index("t"), "t", t, smaller.clone()))
        .await;
    s.cql_write(second, &doc(&s.index("t"), "t", t, greater.clone()))
        .await;
    let winner = doc(&s.index("t"), "t", t, greater);

    let (code, _, stderr) = run_to_end(&s.command_args(&["-s", "--once"]));
    assert_eq!(code, Some(0), "{stderr}");
    let elasticsearch = s.wait_equal(2).await;
    assert_holds("Elasticsearch", &elasticsearch, first, &winner);
    assert_holds("Elasticsearch", &elasticsearch, second, &winner);

    // A restart, with or without -s, changes nothing.
    for args in [&[][..], &["-s"][..]] {
        let rounds = s.once(args);
        assert!(
            rounds.iter().all(|round| round.written == [0, 0]),
            "a restart wrote something: {rounds:#?}"
        );
        let elasticsearch = s.wait_equal(2).await;
        assert_holds("Elasticsearch", &elasticsearch, first, &winner);
        assert_holds("Elasticsearch", &elasticsearch, second, &winner);
    }
}

// 8
#[tokio::test]
async fn a_conflict_does_not_hold_back_unrelated_documents() {
    let s = Scenario::new("s08").await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let (id, es_version, _) = conflict(&s, &essync, 3_000, 1_000).await;
    let others = ids(10);
    for (n, other) in others.iter().enumerate() {
        let target = doc(&s.index("other"), "t", now_ms(), json!({"n": n}));
        if n % 2 == 0 {
            s.es_write(*other, &target).await;
        } else {
            s.cql_write(*other, &target).await;
        }
    }
    let elasticsearch = s.wait_equal(11).await;
    assert_holds("Elasticsearch", &elasticsearch, id, &es_version);
}

// 9
#[tokio::test]
async fn a_stale_version_never_overwrites_a_newer_one_even_with_a_user_writing_during_rounds() {
    let s = Scenario::new("s09").await;
    s.create_table().await;
    let old = now_ms() - 3_600_000;
    let docs = ids(200);
    let stale: Vec<(Uuid, Doc)> = docs
        .iter()
        .map(|id| {
            (
                *id,
                doc(&s.index("race"), "t", old, json!({"version": "stale"})),
            )
        })
        .collect();
    s.es_bulk(&stale).await;
    // essync reconciles the stale versions while a user writes newer ones into Cassandra.
    let essync = s.essync(&["-s"]);
    let newer = doc(&s.index("race"), "t", now_ms(), json!({"version": "newer"}));
    for id in &docs {
        s.cql_write(*id, &newer).await;
    }
    s.wait_until("the newer version everywhere", |e, c| {
        docs.iter()
            .all(|id| e.get(id) == Some(&newer) && c.get(id) == Some(&newer))
    })
    .await;
    // An application that writes again, even with an old timestamp, writes data: a change made
    // on one side since the last sync wins over the other side's unchanged copy.
    let rounds = essync.rounds().len();
    let rewritten = doc(
        &s.index("race"),
        "t",
        old,
        json!({"version": "written again"}),
    );
    for id in docs.iter().take(20) {
        s.es_write(*id, &rewritten).await;
    }
    essync.wait_rounds(rounds, 2).await;
    s.wait_until("the application's last write everywhere", |e, c| {
        docs.iter().enumerate().all(|(n, id)| {
            let wanted = if n < 20 { &rewritten } else { &newer };
            e.get(id) == Some(wanted) && c.get(id) == Some(wanted)
        })
    })
    .await;
}

// 10
#[tokio::test]
async fn create_update_all_update_some_add_one_leaves_both_stores_equal_after_each_step() {
    let s = Scenario::new("s10").await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let docs = ids(10);
    for (n, id) in docs.iter().enumerate() {
        s.es_write(
            *id,
            &doc(&s.index("steps"), "t", now_ms(), json!({"n": n, "step": 1})),
        )
        .await;
    }
    s.wait_equal(10).await;
    for (n, id) in docs.iter().enumerate() {
        s.cql_write(
            *id,
            &doc(&s.index("steps"), "t", now_ms(), json!({"n": n, "step": 2})),
        )
        .await;
    }
    let e = s
        .wait_until("every document at step 2", |e, c| {
            differences(e, c).is_empty()
                && e.len() == 10
                && e.values().all(|d| d.content["step"] == 2)
        })
        .await
        .0;
    assert_eq!(e.len(), 10);
    for (n, id) in docs.iter().take(3).enumerate() {
        s.es_write(
            *id,
            &doc(&s.index("steps"), "t", now_ms(), json!({"n": n, "step": 3})),
        )
        .await;
    }
    s.wait_until("three documents at step 3", |e, c| {
        differences(e, c).is_empty() && e.values().filter(|d| d.content["step"] == 3).count() == 3
    })
    .await;
    let added = Uuid::new_v4();
    s.cql_write(
        added,
        &doc(&s.index("steps"), "t", now_ms(), json!({"added": true})),
    )
    .await;
    let elasticsearch = s.wait_equal(11).await;
    assert!(elasticsearch.contains_key(&added));
}

/// Every document's Elasticsearch `_seq_no` and Cassandra cell write time.
async fn versions(s: &Scenario) -> (BTreeMap<String, i64>, BTreeMap<Uuid, i64>) {
    s.es_request(Method::Post, &format!("/{}/_refresh", s.indices()), None)
        .await;
    let answer = s
        .es_request(
            Method::Post,
            &format!("/{}/_search", s.indices()),
            Some(json!({"size": 1000, "seq_no_primary_term": true})),
        )
        .await;
    let es = answer["hits"]["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .map(|h| {
                    (
                        h["_id"].as_str().unwrap_or_default().to_string(),
                        h["_seq_no"].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let rows = s
        .cql
        .query_unpaged(
            format!("SELECT id, writetime(content) FROM {}", s.table()),
            (),
        )
        .await
        .expect("select write times")
        .into_rows_result()
        .expect("rows");
    let cassandra = rows
        .rows::<(Uuid, Option<i64>)>()
        .expect("row types")
        .map(|r| r.map(|(id, w)| (id, w.unwrap_or(0))).expect("row"))
        .collect();
    (es, cassandra)
}

// 11
#[tokio::test]
async fn updates_on_each_side_converge_and_idle_rounds_then_write_nothing() {
    let s = Scenario::new("s11").await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let docs = ids(10);
    for (n, id) in docs.iter().enumerate() {
        s.cql_write(*id, &doc(&s.index("idle"), "t", now_ms(), json!({"n": n})))
            .await;
    }
    s.wait_equal(10).await;
    for (n, id) in docs.iter().enumerate() {
        let updated = doc(
            &s.index("idle"),
            "t",
            now_ms(),
            json!({"n": n, "updated": true}),
        );
        if n < 5 {
            s.es_write(*id, &updated).await;
        } else {
            s.cql_write(*id, &updated).await;
        }
    }
    s.wait_until("every update on both sides", |e, c| {
        differences(e, c).is_empty()
            && e.len() == 10
            && e.values().all(|d| d.content["updated"] == true)
    })
    .await;
    // Let the rounds that read essync's own writes back pass.
    let settled = essync.rounds().len();
    essync.wait_rounds(settled, 2).await;
    let before = versions(&s).await;
    let rounds = essync.rounds().len();
    let idle = essync.wait_rounds(rounds, 3).await;
    for round in &idle {
        assert!(round.written == [0, 0], "an idle round wrote: {round}");
    }
    assert_eq!(
        versions(&s).await,
        before,
        "versions or write times moved during idle rounds"
    );
}

// 12
#[tokio::test]
async fn existing_data_is_copied_with_s_and_left_alone_without() {
    let s = Scenario::new("s12").await;
    s.create_table().await;
    for n in 0..5 {
        s.es_write(
            Uuid::new_v4(),
            &doc(&s.index("old"), "t", now_ms(), json!({"es": n})),
        )
        .await;
        s.cql_write(
            Uuid::new_v4(),
            &doc(&s.index("old"), "t", now_ms(), json!({"c": n})),
        )
        .await;
    }
    {
        let essync = s.essync(&[]);
        essync.wait_rounds(0, 3).await;
        assert_eq!(s.elasticsearch().await.len(), 5, "copied without -s");
        assert_eq!(s.cassandra().await.len(), 5, "copied without -s");
    }
    let _essync = s.essync(&["-s"]);
    s.wait_equal(10).await;
}

// 13
#[tokio::test]
async fn a_document_written_with_an_old_explicit_timestamp_after_the_start_is_synced() {
    let s = Scenario::new("s13").await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let year_2001 = 978_307_200_000;
    let (from_es, from_cassandra) = (Uuid::new_v4(), Uuid::new_v4());
    let es_doc = doc(&s.index("old"), "t", year_2001, json!({"from": "es"}));
    let cassandra_doc = doc(
        &s.index("old"),
        "t",
        year_2001 + 1,
        json!({"from": "cassandra"}),
    );
    s.es_write(from_es, &es_doc).await;
    s.cql_write(from_cassandra, &cassandra_doc).await;
    let elasticsearch = s.wait_equal(2).await;
    assert_holds("Elasticsearch", &elasticsearch, from_es, &es_doc);
    assert_holds(
        "Elasticsearch",
        &elasticsearch,
        from_cassandra,
        &cassandra_doc,
    );
}

// 14
#[tokio::test]
async fn missing_keyspace_table_index_and_mapping_are_created_and_an_incompatible_table_is_refused()
{
    let s = Scenario::new("s14").await;
    let keyspace = crate::support::unique_name("s14ks");
    let target = format!("{keyspace}:docs");
    let mut args = s.command_args(&["--once"]);
    let n = args.len();
    args[n - 2] = target.clone();
    let (code, _, stderr) = run_to_end(&args);
    assert_eq!(code, Some(0), "{stderr}");
    let rows = s
        .cql
        .query_unpaged(
            "SELECT column_name, type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = 'docs'",
            (&keyspace,),
        )
        .await
        .expect("schema")
        .into_rows_result()
        .expect("rows");
    let columns: BTreeMap<String, String> = rows
        .rows::<(String, String)>()
        .expect("types")
        .map(|r| r.expect("row"))
        .collect();
    let expected: BTreeMap<String, String> = [
        ("id", "uuid"),
        ("index_", "text"),
        ("type", "text"),
        ("timestamp", "timestamp"),
        ("content", "text"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(columns, expected);

    // A row for an index that does not exist yet: essync creates it with its mapping.
    let index = s.index("fresh");
    s.cql
        .query_unpaged(
            format!("INSERT INTO {keyspace}.docs (id, index_, type, timestamp, content) VALUES (?, ?, 't', ?, '{{}}')"),
            (Uuid::new_v4(), &index, scylla::value::CqlTimestamp(now_ms())),
        )
        .await
        .expect("insert");
    let (code, _, stderr) = run_to_end(&args);
    assert_eq!(code, Some(0), "{stderr}");
    let mapping = s
        .es_request(Method::Get, &format!("/{index}/_mapping"), None)
        .await;
    assert_eq!(
        mapping[&index]["mappings"]["properties"]["_essync"]["properties"]["timestamp"]["type"],
        "date",
        "{mapping}"
    );

    // An existing table with an incompatible column is refused, naming the column.
    s.cql
        .query_unpaged(
            format!("CREATE TABLE {keyspace}.wrong (id uuid PRIMARY KEY, index_ text, type text, timestamp timestamp, content blob)"),
            (),
        )
        .await
        .expect("create wrong table");
    args[n - 2] = format!("{keyspace}:wrong");
    let (code, _, stderr) = run_to_end(&args);
    assert_ne!(code, Some(0));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("'content' is blob"), "{stderr}");
    s.cql
        .query_unpaged(format!("DROP KEYSPACE {keyspace}"), ())
        .await
        .expect("drop");
}

// 15
#[tokio::test]
async fn bad_arguments_and_unreachable_servers_give_a_one_line_error() {
    let not_a_policy =
        std::env::temp_dir().join(format!("essync-not-a-policy-{}.wasm", std::process::id()));
    std::fs::write(&not_a_policy, "this is not WebAssembly").expect("write file");
    let not_a_policy = not_a_policy.display().to_string();
    // A server that accepts connections and never answers (a stuck node, or a TLS port that
    // waits for a handshake): essync must give up within its timeouts, not hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_address = silent.local_addr().expect("address").to_string();
    let silent_url = format!("http://{silent_address}");
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().collect();
        drop(held);
    });
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["ks", "5"], "KEYSPACE:TABLE"),
        (vec!["ks:t", "0"], "more than 0"),
        (vec!["ks:t", "ten"], "not a number"),
        (vec!["ks:t"], "PERIOD"),
        (
            vec!["--policy", "/nonexistent/policy.wasm", "ks:t", "5"],
            "policy",
        ),
        (vec!["--policy", &not_a_policy, "ks:t", "5"], "policy"),
        (
            vec!["--es-url", "http://127.0.0.1:9", "ks:t", "5"],
            "not reachable",
        ),
        (
            vec!["--cassandra", "127.0.0.1:9", "ks:t", "5"],
            "not reachable",
        ),
        (
            vec!["--es-url", &silent_url, "--es-timeout", "2", "ks:t", "5"],
            "timed out",
        ),
        (
            vec![
                "--cassandra",
                &silent_address,
                "--cassandra-timeout",
                "2",
                "ks:t",
                "5",
            ],
            "did not set up a session within 4s",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (code, stdout, stderr) = run_to_end(&args);
        assert!(
            matches!(code, Some(c) if c != 0),
            "{args:?} exited with {code:?}"
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?} printed:\n{stderr}{stdout}");
        assert!(lines[0].starts_with("essync: "), "{args:?}: {}", lines[0]);
        assert!(
            lines[0].contains(expected),
            "{args:?}: {} should mention {expected}",
            lines[0]
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
    }
}

// 16
#[tokio::test]
async fn a_custom_policy_changes_conflict_outcomes_and_its_filter_keeps_documents_on_their_side() {
    // prefer-cassandra: Cassandra wins whatever the timestamps.
    let s = Scenario::new("s16").await;
    let essync = s.essync(&["-v", "--policy", policies::PREFER_CASSANDRA]);
    essync.wait_rounds(0, 1).await;
    let (id, _, cassandra_version) = conflict(&s, &essync, 5_000, 1_000).await;
    s.wait_until("the older Cassandra version on both sides", |e, c| {
        e.get(&id) == Some(&cassandra_version) && c.get(&id) == Some(&cassandra_version)
    })
    .await;
    // -v says who decided, and what won over what.
    let decision = essync
        .wait_for_line(&format!("{id}: changed on both sides"))
        .await;
    assert!(
        decision.contains("the policy answered use-cassandra: Cassandra wins"),
        "{decision}"
    );
    drop(essync);

    // index-filter: documents of private indices stay where they are.
    let s = Scenario::new("s16f").await;
    let private = format!("private-{}", s.name);
    let selection = format!("{}_*,{private}*", s.name);
    let essync = s.essync(&[
        "--policy",
        policies::INDEX_FILTER,
        "--es-indices",
        &selection,
    ]);
    essync.wait_rounds(0, 1).await;
    let (secret_es, secret_c, public) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    s.es_write(
        secret_es,
        &doc(
            &format!("{private}-es"),
            "t",
            now_ms(),
            json!({"secret": 1}),
        ),
    )
    .await;
    s.cql_write(
        secret_c,
        &doc(&format!("{private}-c"), "t", now_ms(), json!({"secret": 2})),
    )
    .await;
    s.cql_write(
        public,
        &doc(&s.index("public"), "t", now_ms(), json!({"public": true})),
    )
    .await;
    s.wait_until("the public document on both sides", |e, _| {
        e.contains_key(&public)
    })
    .await;
    let rounds = essync.rounds().len();
    essync.wait_rounds(rounds, 2).await;
    let elasticsearch = s.elasticsearch_in(&selection).await;
    let cassandra = s.cassandra().await;
    assert!(elasticsearch.contains_key(&secret_es) && !cassandra.contains_key(&secret_es));
    assert!(cassandra.contains_key(&secret_c) && !elasticsearch.contains_key(&secret_c));
    assert!(cassandra.contains_key(&public));
    // Each kept-out document counts once a round, however often the round reads it.
    let rounds = essync.rounds();
    assert!(
        rounds.iter().any(|r| r.filtered > 0),
        "nothing counted as filtered"
    );
    assert!(
        rounds.iter().all(|r| r.filtered <= 2),
        "a kept-out document counted twice in a round: {:?}",
        rounds.iter().map(|r| r.filtered).collect::<Vec<_>>()
    );
    drop(essync);

    // A policy that says its filter keeps every change is not asked: this one's filter would
    // skip every change, and both changes are copied all the same.
    let s = Scenario::new("s16u").await;
    let essync = s.essync(&["--policy", policies::UNASKED_FILTER]);
    essync.wait_rounds(0, 1).await;
    let (from_es, from_c) = (Uuid::new_v4(), Uuid::new_v4());
    s.es_write(from_es, &doc(&s.index("a"), "t", now_ms(), json!({"n": 1})))
        .await;
    s.cql_write(from_c, &doc(&s.index("b"), "t", now_ms(), json!({"n": 2})))
        .await;
    s.wait_until("both changes on both sides", |e, c| {
        [from_es, from_c]
            .iter()
            .all(|id| e.contains_key(id) && c.contains_key(id))
    })
    .await;
    assert!(essync.rounds().iter().all(|r| r.filtered == 0));
}

/// Replaces a policy file in one step, as a deployment should: a new file renamed over it.
fn replace_policy_file(file: &std::path::Path, component: &str) {
    let new = file.with_extension("new");
    std::fs::copy(component, &new).expect("copy the new policy");
    std::fs::rename(&new, file).expect("rename it over the old one");
}

fn policy_file(s: &Scenario, component: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("essync-{}-{}", s.name, std::process::id()));
    std::fs::create_dir_all(&dir).expect("a folder for the policy");
    let file = dir.join("policy.wasm");
    std::fs::copy(component, &file).expect("copy the policy");
    file
}

// Reloading the policy without a restart.
#[tokio::test]
async fn sighup_swaps_the_policy_between_rounds_and_a_broken_replacement_is_refused() {
    let s = Scenario::new("reload").await;
    let file = policy_file(&s, policies::PREFER_CASSANDRA);
    let essync = s.essync(&["--policy", file.to_str().expect("utf-8")]);
    essync.wait_rounds(0, 1).await;
    // prefer-cassandra: the older Cassandra version wins.
    let (first, _, cassandra_version) = conflict_among(&s, &essync, 1, 5_000, 1_000).await;
    s.wait_until(
        "prefer-cassandra: the older Cassandra version on both sides",
        |e, c| {
            e.get(&first) == Some(&cassandra_version) && c.get(&first) == Some(&cassandra_version)
        },
    )
    .await;

    // Another rule, then SIGHUP: the next conflict goes to the newer version.
    replace_policy_file(&file, policies::LAST_WRITE_WINS);
    essync.signal(SIGHUP);
    essync.wait_for_line("policy reloaded").await;
    let (second, es_version, _) = conflict_among(&s, &essync, 2, 5_000, 1_000).await;
    s.wait_until(
        "last-write-wins: the newer Elasticsearch version on both sides",
        |e, c| e.get(&second) == Some(&es_version) && c.get(&second) == Some(&es_version),
    )
    .await;

    // A broken replacement is refused, with its reason, and the rule loaded last stays.
    std::fs::write(&file, "not a policy").expect("break the policy file");
    essync.signal(SIGHUP);
    let refusal = essync.wait_for_line("the new policy is refused").await;
    assert!(refusal.contains("neither WebAssembly"), "{refusal}");
    let (third, es_version, _) = conflict_among(&s, &essync, 3, 5_000, 1_000).await;
    s.wait_until(
        "still last-write-wins: the newer Elasticsearch version",
        |e, c| e.get(&third) == Some(&es_version) && c.get(&third) == Some(&es_version),
    )
    .await;
    let _ = std::fs::remove_dir_all(file.parent().expect("a folder"));
}

#[tokio::test]
async fn with_policy_reload_a_replaced_policy_file_is_used_from_the_next_round() {
    let s = Scenario::new("reloadw").await;
    let file = policy_file(&s, policies::LAST_WRITE_WINS);
    let essync = s.essync(&["--policy", file.to_str().expect("utf-8"), "--policy-reload"]);
    essync.wait_rounds(0, 1).await;
    replace_policy_file(&file, policies::PREFER_CASSANDRA);
    essync.wait_for_line("policy reloaded").await;
    let (id, _, cassandra_version) = conflict_among(&s, &essync, 1, 5_000, 1_000).await;
    s.wait_until(
        "prefer-cassandra: the older Cassandra version on both sides",
        |e, c| e.get(&id) == Some(&cassandra_version) && c.get(&id) == Some(&cassandra_version),
    )
    .await;
    let _ = std::fs::remove_dir_all(file.parent().expect("a folder"));
}

/// Writes `each` documents on each side before essync starts, in an index per side; returns
/// them all.
async fn volume(s: &Scenario, each: usize) -> Vec<(Uuid, Doc)> {
    s.create_table().await;
    let t = now_ms() - 60_000;
    let make = |side: &str, n: usize| {
        let content = json!({"n": n, "from": side});
        (
            Uuid::new_v4(),
            doc(&s.index(side), "item", t + n as i64, content),
        )
    };
    let es_docs: Vec<(Uuid, Doc)> = (0..each).map(|n| make("es", n)).collect();
    let cassandra_docs: Vec<(Uuid, Doc)> = (0..each).map(|n| make("cassandra", n)).collect();
    s.es_bulk(&es_docs).await;
    s.cql_bulk(&cassandra_docs).await;
    es_docs.into_iter().chain(cassandra_docs).collect()
}

fn ids_of(docs: &[(Uuid, Doc)]) -> BTreeSet<Uuid> {
    docs.iter().map(|(id, _)| *id).collect()
}

// 17
#[tokio::test]
async fn killed_in_the_middle_of_a_large_s_sync_and_restarted_the_stores_converge_without_duplicates()
 {
    const EACH: usize = 10_000;
    let s = Scenario::new("s17").await;
    let written = ids_of(&volume(&s, EACH).await);
    let essync = s.essync(&["-s"]);
    // Killed once a page is synced (the first progress line follows the first page's writes and
    // checkpoint), long before all are: reading both stores whole to see how far it got would
    // take longer than the sync itself.
    essync.wait_for_line("reconciliation: elasticsearch").await;
    essync.signal(SIGKILL);
    essync.wait_exit().await;
    let partial = s.cassandra().await.len();
    assert!(
        partial < 2 * EACH,
        "the sync was already complete when killed"
    );

    let _essync = s.essync(&["-s"]);
    let (elasticsearch, cassandra) = s
        .wait_until_within(Duration::from_secs(240), "both stores complete", |e, c| {
            e.len() == 2 * EACH && differences(e, c).is_empty()
        })
        .await;
    assert_eq!(
        elasticsearch.keys().copied().collect::<BTreeSet<_>>(),
        written
    );
    assert_eq!(cassandra.keys().copied().collect::<BTreeSet<_>>(), written);
}

// 18
#[tokio::test]
async fn sigterm_stops_cleanly_with_exit_code_0_and_a_checkpoint_a_restart_resumes_from() {
    const EACH: usize = 5_000;
    let s = Scenario::new("s18").await;
    let written = ids_of(&volume(&s, EACH).await);
    let essync = s.essync(&["-s"]);
    // Stopped once a page is synced, before the reconciliation ends.
    essync.wait_for_line("reconciliation: elasticsearch").await;
    essync.signal(SIGTERM);
    let status = essync.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{}", essync.output().join("\n"));
    assert!(
        essync
            .output()
            .iter()
            .any(|l| l.contains("checkpoint saved")),
        "{}",
        essync.output().join("\n")
    );
    // The checkpoint is consistent: a restart without -s finishes the reconciliation.
    let _essync = s.essync(&[]);
    let (elasticsearch, _) = s
        .wait_until_within(Duration::from_secs(180), "both stores complete", |e, c| {
            e.len() == 2 * EACH && differences(e, c).is_empty()
        })
        .await;
    assert_eq!(
        elasticsearch.keys().copied().collect::<BTreeSet<_>>(),
        written
    );
}

#[tokio::test]
async fn elasticsearch_lost_mid_run_fails_rounds_cleanly_and_the_sync_resumes_when_it_is_back() {
    let s = Scenario::new("slost").await;
    let es = es_url();
    let proxy = Proxy::start(es.trim_start_matches("http://")).await;
    let via_proxy = format!("http://{}", proxy.address());
    let mut args = s.command_args(&[]);
    let url = args.iter().position(|a| a == "--es-url").expect("--es-url") + 1;
    args[url] = via_proxy;
    let essync = Essync::start(&args);
    essync.wait_rounds(0, 1).await;

    proxy.cut().await;
    let id = Uuid::new_v4();
    let written = doc(
        &s.index("lost"),
        "t",
        now_ms(),
        json!({"while": "elasticsearch was away"}),
    );
    s.cql_write(id, &written).await;
    // Rounds fail, each with one line, and the process stays up.
    let start = std::time::Instant::now();
    while !essync
        .output()
        .iter()
        .any(|l| l.contains("failed") && l.contains("not reachable"))
    {
        assert!(
            start.elapsed() < DEADLINE,
            "no failed round reported:\n{}",
            essync.output().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.restore();
    let elasticsearch = s.wait_equal(1).await;
    assert_holds("Elasticsearch", &elasticsearch, id, &written);
    assert!(
        !essync.output().iter().any(|l| l.contains("panicked")),
        "{}",
        essync.output().join("\n")
    );
}

#[tokio::test]
async fn cassandra_over_tls_syncs_with_a_trusted_ca_and_refuses_an_unknown_certificate() {
    let s = Scenario::new("stls").await;
    let ca = crate::support::cassandra_ca().display().to_string();
    let essync = s.essync(&["--cassandra-ca", &ca]);
    essync.wait_rounds(0, 1).await;
    let id = Uuid::new_v4();
    let written = doc(&s.index("tls"), "t", now_ms(), json!({"over": "tls"}));
    s.es_write(id, &written).await;
    let elasticsearch = s.wait_equal(1).await;
    assert_holds("Elasticsearch", &elasticsearch, id, &written);
    drop(essync);

    // The same server, checked against the public roots only: refused, in one line.
    let (code, _, stderr) = run_to_end(&s.command_args(&["--cassandra-tls", "--once"]));
    assert_ne!(code, Some(0));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
}

/// A GET over plain TCP; the body of the answer.
fn http_get(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the metrics port");
    write!(stream, "GET {path} HTTP/1.1\r\nhost: {address}\r\n\r\n").expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn metrics_count_rounds_and_documents_for_prometheus() {
    let s = Scenario::new("smetrics").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let address = format!("127.0.0.1:{port}");
    let essync = s.essync(&["--metrics", &address]);
    essync.wait_rounds(0, 1).await;
    let id = Uuid::new_v4();
    s.cql_write(
        id,
        &doc(&s.index("m"), "t", now_ms(), json!({"counted": true})),
    )
    .await;
    s.wait_equal(1).await;
    let rounds = essync.rounds().len();
    essync.wait_rounds(rounds, 1).await;
    let body = http_get(&address, "/metrics");
    let value = |name: &str| -> f64 {
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from:\n{body}"))
    };
    assert!(value("essync_rounds_total ") >= 2.0);
    assert_eq!(
        value("essync_documents_written_total{side=\"elasticsearch\"}"),
        1.0
    );
    assert_eq!(value("essync_round_failures_total "), 0.0);
    assert!(http_get(&address, "/other").contains("GET /metrics"));
}

#[tokio::test]
async fn essync_errors_lists_documents_that_cannot_be_synced() {
    let s = Scenario::new("serr").await;
    let essync = s.essync(&[]);
    essync.wait_rounds(0, 1).await;
    let bad = Uuid::new_v4();
    s.cql
        .query_unpaged(
            format!("INSERT INTO {} (id, index_, type, timestamp, content) VALUES (?, ?, 't', ?, 'not json')", s.table()),
            (bad, s.index("bad"), scylla::value::CqlTimestamp(now_ms())),
        )
        .await
        .expect("insert");
    let good = Uuid::new_v4();
    s.cql_write(
        good,
        &doc(&s.index("good"), "t", now_ms(), json!({"fine": true})),
    )
    .await;
    s.wait_until("the good document synced", |e, _| e.contains_key(&good))
        .await;
    let (code, stdout, stderr) = run_to_end(&[
        "--cassandra".to_string(),
        crate::support::cassandra_node(),
        "errors".to_string(),
        s.target(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.contains(&bad.to_string()))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("not JSON"), "{line}");
}
