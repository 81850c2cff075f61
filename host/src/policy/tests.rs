//! The runtime against real components: the policies of `policies/`, built by the build script.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::Document;
use crate::testing::logs_of;

use essync_test_policies as components;

/// Compiling a component takes a while in a debug build: each is compiled once per test run
/// and shared (tests that need other limits use `with_limits`).
fn load(path: &'static str) -> Policy {
    static LOADED: OnceLock<std::sync::Mutex<Vec<(&'static str, Policy)>>> = OnceLock::new();
    let loaded = LOADED.get_or_init(Default::default);
    let mut loaded = loaded
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, policy)) = loaded.iter().find(|(p, _)| *p == path) {
        return policy.clone();
    }
    let policy = Policy::from_file(Path::new(path), PolicyLimits::default())
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    loaded.push((path, policy.clone()));
    policy
}

fn builtin() -> Policy {
    static BUILTIN_POLICY: OnceLock<Policy> = OnceLock::new();
    BUILTIN_POLICY
        .get_or_init(|| Policy::builtin(PolicyLimits::default()).expect("the builtin loads"))
        .clone()
}

fn misbehaving() -> Policy {
    load(components::MISBEHAVING)
}

const ID: &str = "6f1c1b0e-8a8e-4a53-9c3f-4a0e6f1f7c11";

fn id() -> Uuid {
    Uuid::parse_str(ID).expect("a valid uuid")
}

fn doc(index: &str, millis: i64, content: serde_json::Value) -> Document {
    let t = Utc
        .timestamp_millis_opt(millis)
        .single()
        .expect("a valid time");
    Document::with_id(id(), index, "_doc", content).at(t)
}

fn candidate(index: &str) -> Candidate {
    Candidate {
        side: Side::Elasticsearch,
        version: Version::written(Document::new(index, "_doc", json!({"n": 1})).at(Utc::now())),
        deleted: false,
    }
}

fn deletion(index: &str) -> Candidate {
    Candidate {
        deleted: true,
        ..candidate(index)
    }
}

/// A conflict of two creations (no base).
fn conflict(es: Option<Document>, cassandra: Option<Document>) -> Conflict {
    Conflict {
        id: id(),
        base: None,
        base_content: false,
        elasticsearch: es.map(Version::written),
        cassandra: cassandra.map(Version::written),
    }
}

/// A conflict of two changes of `base` (or a change and a delete).
fn conflict_from(base: Document, es: Option<Document>, cassandra: Option<Document>) -> Conflict {
    Conflict {
        base: Some(base),
        base_content: true,
        ..conflict(es, cassandra)
    }
}

fn legacy() -> Policy {
    load(components::LEGACY_V0_1)
}

#[test]
fn the_builtin_policy_is_last_write_wins_of_the_current_world() {
    let policy = builtin();
    assert_eq!(policy.name(), "last-write-wins");
    assert_eq!(policy.world_version(), WORLD_VERSION);
    assert!(
        policy
            .exports()
            .contains(&"essync:policy/resolver@0.3.0".to_string())
    );
    let answers = policy.resolve_blocking(vec![
        conflict(Some(doc("a", 2, json!({}))), Some(doc("a", 1, json!({})))),
        conflict(None, Some(doc("a", 1, json!({})))),
        conflict(
            Some(doc("a", 1, json!({"a": 1}))),
            Some(doc("a", 1, json!({"a": 1}))),
        ),
    ]);
    assert_eq!(
        answers.into_iter().map(Result::ok).collect::<Vec<_>>(),
        vec![
            Some(Resolution::UseElasticsearch),
            Some(Resolution::UseCassandra),
            Some(Resolution::Unchanged)
        ]
    );
    let verdicts = policy.filter_blocking(vec![candidate("books")]);
    assert!(matches!(verdicts[..], [Ok(Verdict::Keep)]));
}

/// The same conflict as the native policy sees it.
fn native(conflict: &Conflict) -> essync_policy::Conflict {
    let document = |d: &Document, stamp: Stamp| essync_policy::Document {
        id: d.id.to_string(),
        index: d.index.clone(),
        doc_type: d.doc_type.clone(),
        timestamp: d.timestamp_millis().unwrap_or_default(),
        stamp: match stamp {
            Stamp::Written => essync_policy::Stamp::Written,
            Stamp::Observed => essync_policy::Stamp::Observed,
        },
        content: serde_json::to_string(&d.content).unwrap_or_default(),
    };
    let version = |v: &Option<Version>| v.as_ref().map(|v| document(&v.document, v.stamp));
    essync_policy::Conflict {
        id: conflict.id.to_string(),
        base: conflict.base.as_ref().map(|d| document(d, Stamp::Written)),
        base_content: conflict.base_content && conflict.base.is_some(),
        elasticsearch: version(&conflict.elasticsearch),
        cassandra: version(&conflict.cassandra),
    }
}

fn arb_conflict() -> impl Strategy<Value = Conflict> {
    let document = (
        prop_oneof![Just("books"), Just("films")],
        0i64..3,
        proptest::collection::btree_map("[ab]", 0u8..3, 0..3),
    )
        .prop_map(|(index, millis, fields)| doc(index, millis, json!(fields)));
    let version = (
        document.clone(),
        prop_oneof![Just(Stamp::Written), Just(Stamp::Observed)],
    )
        .prop_map(|(document, stamp)| Version { document, stamp });
    (
        proptest::option::of(document),
        proptest::option::of(version.clone()),
        proptest::option::of(version),
    )
        .prop_map(|(base, elasticsearch, cassandra)| Conflict {
            id: id(),
            base_content: base.is_some(),
            base,
            elasticsearch,
            cassandra,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn the_embedded_default_answers_as_the_native_code(
        batch in proptest::collection::vec(arb_conflict(), 1..40)
    ) {
        let answers = builtin().resolve_blocking(batch.clone());
        for (conflict, answer) in batch.iter().zip(answers) {
            let expected = match last_write_wins::resolve(&native(conflict)) {
                essync_policy::Resolution::Unchanged => Resolution::Unchanged,
                essync_policy::Resolution::UseElasticsearch => Resolution::UseElasticsearch,
                essync_policy::Resolution::UseCassandra => Resolution::UseCassandra,
                essync_policy::Resolution::Write(_) => panic!("last write wins never writes"),
                essync_policy::Resolution::Delete => panic!("last write wins never deletes"),
            };
            prop_assert_eq!(answer.map_err(|e| e.to_string()), Ok(expected));
        }
    }
}

#[test]
fn prefer_cassandra_picks_cassandra_even_when_older_and_its_deletes() {
    let policy = load(components::PREFER_CASSANDRA);
    let base = doc("a", 0, json!({"v": "base"}));
    let answers = policy.resolve_blocking(vec![
        conflict_from(
            base.clone(),
            Some(doc("a", 9, json!({"v": "es"}))),
            Some(doc("a", 1, json!({"v": "cassandra"}))),
        ),
        conflict_from(base, Some(doc("a", 9, json!({"v": "es"}))), None),
    ]);
    assert!(
        matches!(
            answers[..],
            [Ok(Resolution::UseCassandra), Ok(Resolution::Delete)]
        ),
        "{answers:?}"
    );
}

#[test]
fn field_merge_writes_the_three_way_merge() {
    let policy = load(components::FIELD_MERGE);
    let answers = policy.resolve_blocking(vec![conflict_from(
        doc("a", 0, json!({"title": "Old", "pages": 1})),
        Some(doc("a", 2, json!({"title": "Old", "pages": 10}))),
        Some(doc("a", 1, json!({"title": "New", "pages": 1}))),
    )]);
    let expected = doc("a", 2, json!({"title": "New", "pages": 10}));
    assert_eq!(
        answers
            .into_iter()
            .next()
            .map(|a| a.map_err(|e| e.to_string())),
        Some(Ok(Resolution::Write(expected)))
    );
}

#[test]
fn a_current_policy_says_whether_it_merges_from_the_base() {
    assert!(!builtin().wants_base_content());
    assert!(!load(components::PREFER_CASSANDRA).wants_base_content());
    assert!(!load(components::INDEX_FILTER).wants_base_content());
    assert!(load(components::FIELD_MERGE).wants_base_content());
    assert_eq!(load(components::FIELD_MERGE).runs_as(), WORLD_VERSION);
    // The earlier worlds are not asked: 0.2.0 may merge, 0.1.0 sees no base.
    assert!(load(components::LEGACY_V0_2).wants_base_content());
    assert!(!legacy().wants_base_content());
}

/// A policy says whether its filter may answer anything but keep; essync asks only those that
/// do (the earlier worlds cannot say, and are asked).
#[test]
fn a_current_policy_says_whether_it_filters() {
    assert!(!builtin().filters());
    assert!(!load(components::PREFER_CASSANDRA).filters());
    assert!(!load(components::FIELD_MERGE).filters());
    assert!(load(components::INDEX_FILTER).filters());
    assert!(misbehaving().filters());
    assert!(load(components::LEGACY_V0_2).filters());
    assert!(legacy().filters());
}

/// A policy that says its filter keeps every change is not asked: this one's filter would skip
/// each, and every candidate, a delete included, is kept, by the blocking and the async calls.
#[tokio::test]
async fn a_policy_that_says_it_keeps_every_change_is_not_asked() {
    let policy = load(components::UNASKED_FILTER);
    assert!(!policy.filters());
    let answers = policy.filter_blocking(vec![candidate("books"), deletion("books")]);
    assert!(
        matches!(&answers[..], [Ok(Verdict::Keep), Ok(Verdict::Keep)]),
        "{answers:?}"
    );
    let batch: Vec<Candidate> = (0..300).map(|_| candidate("books")).collect();
    let (returned, answers) = policy.filter_returning(batch.clone()).await;
    assert_eq!(returned, batch);
    assert!(answers.iter().all(|a| matches!(a, Ok(Verdict::Keep))));
    assert_eq!(answers.len(), 300);
}

#[test]
fn field_merge_without_the_base_content_merges_as_without_a_base() {
    let policy = load(components::FIELD_MERGE);
    let mut conflict = conflict_from(
        doc("a", 0, json!({"title": "Old", "pages": 1, "isbn": "1"})),
        Some(doc("a", 2, json!({"title": "Old", "pages": 10}))),
        Some(doc("a", 1, json!({"title": "New", "isbn": "1"}))),
    );
    conflict.base_content = false;
    let answers = policy.resolve_blocking(vec![conflict]);
    // The newer version's fields, and the keys only the older one has.
    let expected = doc("a", 2, json!({"isbn": "1", "pages": 10, "title": "Old"}));
    assert_eq!(
        answers
            .into_iter()
            .next()
            .map(|a| a.map_err(|e| e.to_string())),
        Some(Ok(Resolution::Write(expected)))
    );
}

#[test]
fn a_policy_of_0_2_0_runs_adapted_and_sees_the_base_content_essync_kept() {
    let policy = load(components::LEGACY_V0_2);
    assert_eq!(policy.world_version(), "0.2.0");
    assert_eq!(policy.runs_as(), "0.2.0");
    // It gives both sides the base back: what it was given.
    let base = doc("a", 0, json!({"v": "base"}));
    let kept = conflict_from(
        base.clone(),
        Some(doc("a", 1, json!({"v": "es"}))),
        Some(doc("a", 2, json!({"v": "cassandra"}))),
    );
    let not_kept = Conflict {
        base_content: false,
        ..kept.clone()
    };
    let answers = policy.resolve_blocking(vec![kept, not_kept]);
    let answers: Vec<_> = answers.into_iter().map(Result::ok).collect();
    assert_eq!(
        answers,
        vec![
            Some(Resolution::Write(base.clone())),
            Some(Resolution::Write(doc("a", 0, json!({}))))
        ]
    );
    let verdicts = policy.filter_blocking(vec![candidate("books"), deletion("books")]);
    assert!(
        matches!(&verdicts[..], [Ok(Verdict::Keep), Ok(Verdict::Keep)]),
        "{verdicts:?}"
    );
}

#[test]
fn index_filter_keeps_private_indices_on_their_side() {
    let policy = load(components::INDEX_FILTER);
    let answers = policy.filter_blocking(vec![candidate("private-hr"), candidate("books")]);
    assert!(
        matches!(&answers[..], [Ok(Verdict::Skip { reason }), Ok(Verdict::Keep)] if reason.contains("private-hr"))
    );
}

#[tokio::test]
async fn the_async_calls_answer_in_order() {
    let policy = builtin();
    let batch: Vec<Candidate> = (0..2500).map(|_| candidate("books")).collect();
    let answers = policy
        .with_limits(PolicyLimits {
            batch_size: 1000,
            ..PolicyLimits::default()
        })
        .filter(batch)
        .await;
    assert_eq!(answers.len(), 2500);
    assert!(answers.iter().all(|a| matches!(a, Ok(Verdict::Keep))));
    let answers = policy
        .resolve(vec![conflict(None, Some(doc("a", 1, json!({}))))])
        .await;
    assert!(matches!(answers[..], [Ok(Resolution::UseCassandra)]));
}

#[test]
fn a_delete_cannot_be_transformed() {
    let answers = misbehaving().filter_blocking(vec![deletion("bad-json"), deletion("books")]);
    assert!(
        matches!(&answers[0], Err(PolicyError::Malformed { reason, .. }) if reason.contains("delete")),
        "{answers:?}"
    );
    assert!(matches!(answers[1], Ok(Verdict::Keep)));
}

#[test]
fn a_policy_of_the_earlier_interface_runs_adapted() {
    let policy = legacy();
    assert_eq!(policy.world_version(), "0.1.0");
    // Filtering: it is asked about new versions, never about deletes (they take part).
    let mut private = candidate("legacy-private");
    private.version.stamp = Stamp::Observed;
    let answers = policy.filter_blocking(vec![private, deletion("legacy-private")]);
    assert!(
        matches!(&answers[..], [Ok(Verdict::Skip { .. }), Ok(Verdict::Keep)]),
        "{answers:?}"
    );
    // Resolving: it decides conflicts of two versions (it prefers Elasticsearch), while a
    // delete against a change is decided by the default rule: the change wins.
    let base = doc("a", 0, json!({"v": "base"}));
    let answers = policy.resolve_blocking(vec![
        conflict_from(
            base.clone(),
            Some(doc("a", 1, json!({"v": "es"}))),
            Some(doc("a", 9, json!({"v": "cassandra"}))),
        ),
        conflict_from(base.clone(), None, Some(doc("a", 9, json!({"v": "c"})))),
        conflict_from(base, Some(doc("a", 9, json!({"v": "e"}))), None),
    ]);
    assert_eq!(
        answers.into_iter().map(Result::ok).collect::<Vec<_>>(),
        vec![
            Some(Resolution::UseElasticsearch),
            Some(Resolution::UseCassandra),
            Some(Resolution::UseElasticsearch)
        ]
    );
}

#[test]
fn a_document_without_timestamp_is_an_error_of_its_own() {
    let mut undated = candidate("books");
    undated.version.document.timestamp = None;
    let answers = builtin().filter_blocking(vec![candidate("books"), undated]);
    assert!(matches!(answers[0], Ok(Verdict::Keep)));
    assert!(
        matches!(&answers[1], Err(PolicyError::InvalidInput { reason }) if reason.contains("no timestamp"))
    );
}

/// The first answer of the misbehaving policy for one candidate of this index.
fn misbehave(policy: &Policy, index: &str) -> Result<Verdict, PolicyError> {
    let mut answers = policy.filter_blocking(vec![candidate(index)]);
    assert_eq!(answers.len(), 1);
    answers.remove(0)
}

#[test]
fn a_trap_is_an_error_that_says_why() {
    match misbehave(&misbehaving(), "trap") {
        Err(PolicyError::Trap { reason, .. }) => {
            assert!(reason.contains("trap requested"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_endless_loop_is_stopped_at_the_time_limit() {
    let limit = Duration::from_millis(300);
    let policy = misbehaving().with_limits(PolicyLimits {
        timeout: limit,
        ..PolicyLimits::default()
    });
    let start = Instant::now();
    let answer = misbehave(&policy, "loop");
    let took = start.elapsed();
    assert!(
        matches!(answer, Err(PolicyError::Timeout { .. })),
        "{answer:?}"
    );
    assert!(took >= limit && took < limit * 4, "stopped after {took:?}");
}

#[test]
fn a_policy_cannot_sleep_past_its_time_limit() {
    let policy = misbehaving().with_limits(PolicyLimits {
        timeout: Duration::from_millis(300),
        ..PolicyLimits::default()
    });
    let start = Instant::now();
    match misbehave(&policy, "sleep") {
        Err(PolicyError::Trap { reason, .. }) => {
            assert!(reason.contains("cannot sleep"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn unbounded_allocation_is_stopped_at_the_memory_limit() {
    let policy = misbehaving().with_limits(PolicyLimits {
        memory_bytes: 16 << 20,
        ..PolicyLimits::default()
    });
    let answer = misbehave(&policy, "alloc");
    assert!(
        matches!(answer, Err(PolicyError::OutOfMemory { limit, .. }) if limit == 16 << 20),
        "{answer:?}"
    );
}

#[test]
fn an_answer_of_the_wrong_length_is_an_error() {
    let answer = misbehave(&misbehaving(), "wrong-length");
    assert!(
        matches!(
            answer,
            Err(PolicyError::WrongLength {
                expected: 1,
                got: 2,
                ..
            })
        ),
        "{answer:?}"
    );
}

#[test]
fn a_policy_cannot_read_files() {
    match misbehave(&misbehaving(), "read-file") {
        Err(PolicyError::Refused { reason, .. }) => assert!(reason.starts_with("read-file:")),
        other => panic!("the policy read a file: {other:?}"),
    }
}

#[test]
fn a_policy_cannot_read_the_environment() {
    assert!(
        std::env::vars().next().is_some(),
        "the host has an environment"
    );
    match misbehave(&misbehaving(), "read-env") {
        Err(PolicyError::Refused { reason, .. }) => {
            assert_eq!(reason, "read-env: nothing to read")
        }
        other => panic!("the policy read the environment: {other:?}"),
    }
}

#[test]
fn a_policy_sees_a_clock_that_stands_still() {
    match misbehave(&misbehaving(), "clock") {
        Err(PolicyError::Refused { reason, .. }) => assert_eq!(reason, "clock: 0"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_documents_are_errors_of_their_item() {
    let answer = misbehave(&misbehaving(), "bad-json");
    assert!(
        matches!(&answer, Err(PolicyError::Malformed { reason, .. }) if reason.contains("not JSON")),
        "{answer:?}"
    );
    let answer = misbehave(&misbehaving(), "wrong-id");
    assert!(
        matches!(&answer, Err(PolicyError::Malformed { reason, .. }) if reason.contains("for the item of id")),
        "{answer:?}"
    );
    let answers = misbehaving().resolve_blocking(vec![conflict(
        Some(doc("bad-json", 1, json!({}))),
        Some(doc("a", 1, json!({}))),
    )]);
    assert!(matches!(answers[..], [Err(PolicyError::Malformed { .. })]));
}

#[test]
fn policy_logs_go_to_tracing_within_a_bound() {
    let policy = misbehaving();
    let logs = logs_of(|| {
        assert!(matches!(misbehave(&policy, "log"), Ok(Verdict::Keep)));
    });
    assert!(logs.contains("essync::policy"), "{logs}");
    assert!(logs.contains("misbehaving policy logs log"), "{logs}");
    assert!(logs.contains("ERROR") && logs.contains("TRACE"), "{logs}");

    // 5 messages per item: 30 items log 150, of which 100 are kept.
    let logs = logs_of(|| {
        let answers = policy.filter_blocking((0..30).map(|_| candidate("log")).collect());
        assert!(answers.iter().all(|a| matches!(a, Ok(Verdict::Keep))));
    });
    assert!(logs.contains("dropped 50 log messages"), "{logs}");
}

#[test]
fn a_policy_is_shared_across_threads() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Policy>();
}

#[test]
fn bisection_isolates_the_items_that_make_the_policy_fail() {
    let indices = [
        "books",
        "trap",
        "books",
        "alloc",
        "books",
        "wrong-length",
        "books",
        "books",
    ];
    let policy = misbehaving().with_limits(PolicyLimits {
        memory_bytes: 16 << 20,
        ..PolicyLimits::default()
    });
    let answers = policy.filter_blocking(indices.iter().map(|i| candidate(i)).collect());
    assert_eq!(answers.len(), indices.len());
    for (index, answer) in indices.iter().zip(&answers) {
        match *index {
            "books" => assert!(matches!(answer, Ok(Verdict::Keep)), "{answer:?}"),
            "trap" => assert!(
                matches!(answer, Err(PolicyError::Trap { .. })),
                "{answer:?}"
            ),
            "alloc" => assert!(
                matches!(answer, Err(PolicyError::OutOfMemory { .. })),
                "{answer:?}"
            ),
            _ => assert!(
                matches!(answer, Err(PolicyError::WrongLength { .. })),
                "{answer:?}"
            ),
        }
    }
    // And the policy still answers afterwards.
    assert!(matches!(misbehave(&policy, "books"), Ok(Verdict::Keep)));
}

#[test]
fn a_core_module_is_refused() {
    let module = b"\0asm\x01\0\0\0";
    let error = Policy::from_bytes("module.wasm", module, PolicyLimits::default())
        .expect_err("a module is not a policy");
    assert!(
        matches!(error, PolicyError::NotAComponent { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("not a component"), "{error}");
}

#[test]
fn a_file_that_is_not_webassembly_is_refused() {
    let error = Policy::from_bytes("cases.json", b"{\"cases\": []}", PolicyLimits::default())
        .expect_err("JSON is not a policy");
    assert!(error.to_string().contains("neither WebAssembly"), "{error}");
}

#[test]
fn garbage_is_refused() {
    let error = Policy::from_bytes(
        "junk.wasm",
        b"\0asm\x0d\0\x01\0junk",
        PolicyLimits::default(),
    )
    .expect_err("junk is not a policy");
    assert!(matches!(error, PolicyError::Invalid { .. }), "{error}");
}

#[test]
fn a_component_of_another_world_is_refused_naming_the_missing_export() {
    let error = Policy::from_bytes("empty.wasm", b"(component)", PolicyLimits::default())
        .expect_err("an empty component is not a policy");
    let message = error.to_string();
    assert!(
        message.contains("does not export essync:policy/filter@0.3.0"),
        "{message}"
    );
    assert!(message.contains("exports nothing"), "{message}");
}

#[test]
fn a_component_of_another_version_is_refused_naming_both_versions() {
    let wat = r#"(component
        (instance $none)
        (export "essync:policy/filter@0.4.0" (instance $none))
        (export "essync:policy/resolver@0.4.0" (instance $none)))"#;
    let error = Policy::from_bytes("future.wasm", wat.as_bytes(), PolicyLimits::default())
        .expect_err("0.4 is neither 0.3, 0.2 nor 0.1");
    assert!(
        matches!(error, PolicyError::IncompatibleVersion { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("essync:policy/filter@0.4.0"), "{message}");
    assert!(message.contains("essync:policy@0.3.0"), "{message}");
}

#[test]
fn exports_of_the_wrong_shape_are_refused() {
    let wat = r#"(component
        (instance $none)
        (export "essync:policy/about@0.3.0" (instance $none))
        (export "essync:policy/filter@0.3.0" (instance $none))
        (export "essync:policy/resolver@0.3.0" (instance $none)))"#;
    let error = Policy::from_bytes("hollow.wasm", wat.as_bytes(), PolicyLimits::default())
        .expect_err("empty interfaces are not a policy");
    assert!(matches!(error, PolicyError::WrongWorld { .. }), "{error}");
    for older in ["0.2.0", "0.1.0"] {
        let old = wat
            .replace(
                "(export \"essync:policy/about@0.3.0\" (instance $none))",
                "",
            )
            .replace("0.3.0", older);
        let error = Policy::from_bytes("hollow-old.wasm", old.as_bytes(), PolicyLimits::default())
            .expect_err("empty interfaces of an earlier version are not a policy either");
        assert!(
            matches!(error, PolicyError::WrongWorld { .. }),
            "{older}: {error}"
        );
    }
}

#[test]
fn a_current_component_without_about_is_refused_naming_it() {
    let wat = r#"(component
        (instance $none)
        (export "essync:policy/filter@0.3.0" (instance $none))
        (export "essync:policy/resolver@0.3.0" (instance $none)))"#;
    let error = Policy::from_bytes("no-about.wasm", wat.as_bytes(), PolicyLimits::default())
        .expect_err("0.3.0 exports about");
    let message = error.to_string();
    assert!(
        message.contains("does not export essync:policy/about@0.3.0"),
        "{message}"
    );
}

#[test]
fn versions_are_compatible_as_semver_says() {
    use super::world::compatible;
    assert!(compatible("0.1.0", "0.1.0"));
    assert!(compatible("0.1.7", "0.1.0"));
    assert!(!compatible("0.2.0", "0.1.0"));
    assert!(!compatible("0.3.0", "0.2.0"));
    assert!(compatible("1.4.0", "1.0.0"));
    assert!(!compatible("2.0.0", "1.0.0"));
    assert!(!compatible("", "0.1.0"));
}
