//! `essync policy check` and `essync policy test` through the real binary. No server needed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn essync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_essync"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("the essync binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn default_cases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/last-write-wins/cases.json")
}

/// A file of its own in the temporary directory.
fn scratch_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("essync-policy-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("a scratch file");
    path
}

#[test]
fn the_builtin_policy_passes_its_own_cases() {
    let cases = default_cases();
    let output = essync(&["policy", "test", "builtin", cases.to_str().expect("utf-8")]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("0 failed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn a_wrong_case_fails_with_a_readable_diff() {
    let cases = scratch_file(
        "wrong.json",
        r#"{ "cases": [
          { "name": "the newer version wins", "kind": "resolve",
            "input": { "elasticsearch": { "index": "books", "timestamp": 2 },
                       "cassandra": { "index": "books", "timestamp": 1 } },
            "expect": "use-elasticsearch" },
          { "name": "deliberately wrong: the older version wins", "kind": "resolve",
            "input": { "elasticsearch": { "index": "books", "timestamp": 2 },
                       "cassandra": { "index": "books", "timestamp": 1 } },
            "expect": "use-cassandra" }
        ] }"#,
    );
    let output = essync(&["policy", "test", "builtin", cases.to_str().expect("utf-8")]);
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("ok    the newer version wins"), "{stdout}");
    assert!(
        stdout.contains("FAIL  deliberately wrong: the older version wins"),
        "{stdout}"
    );
    assert!(stdout.contains("- \"use-cassandra\""), "{stdout}");
    assert!(stdout.contains("+ \"use-elasticsearch\""), "{stdout}");
    assert!(stdout.contains("2 cases: 1 passed, 1 failed"), "{stdout}");
}

#[test]
fn test_help_describes_the_cases_format_and_names_its_page() {
    let output = essync(&["policy", "test", "--help"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    for part in [
        "\"cases\"",
        "\"kind\"",
        "\"expect\"",
        "use-elasticsearch",
        "docs/policies.md",
    ] {
        assert!(stdout.contains(part), "{part} missing from:\n{stdout}");
    }
}

#[test]
fn check_prints_the_world_and_its_version() {
    let output = essync(&["policy", "check", "builtin"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains("world    essync:policy/policy@0.2.0"),
        "{stdout}"
    );
    assert!(stdout.contains("essync:policy/resolver@0.2.0"), "{stdout}");
}

#[test]
fn check_refuses_what_is_not_a_policy_in_one_line() {
    let not_wasm = scratch_file("not-a-policy.wasm", "hello");
    let output = essync(&["policy", "check", not_wasm.to_str().expect("utf-8")]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("neither WebAssembly"), "{stderr}");

    let empty = scratch_file("empty.wat", "(component)");
    let output = essync(&["policy", "check", empty.to_str().expect("utf-8")]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("does not export essync:policy/filter@0.2.0"),
        "{stderr}"
    );
}

use essync_test_policies as components;

/// Every example policy passes its own cases, as a component run by the binary.
#[test]
fn every_example_policy_passes_its_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    for (component, folder) in [
        (components::LAST_WRITE_WINS, "last-write-wins"),
        (components::PREFER_CASSANDRA, "prefer-cassandra"),
        (components::FIELD_MERGE, "field-merge"),
        (components::INDEX_FILTER, "index-filter"),
    ] {
        let cases = root.join(folder).join("cases.json");
        let output = essync(&["policy", "test", component, cases.to_str().expect("utf-8")]);
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "{folder}: {stdout}{}",
            text(&output.stderr)
        );
        assert!(stdout.contains("essync:policy@0.2.0"), "{stdout}");
    }
}

/// A component of the earlier interface runs the same kind of cases, adapted: the default rule
/// answers what it cannot be asked (a delete against a change), and `policy check` names its
/// version.
#[test]
fn a_policy_of_the_earlier_interface_is_tested_and_checked() {
    let cases = scratch_file(
        "legacy.json",
        r#"{ "cases": [
          { "name": "it prefers Elasticsearch", "kind": "resolve",
            "input": { "base": { "index": "books", "timestamp": 0 },
                       "elasticsearch": { "index": "books", "timestamp": 1 },
                       "cassandra": { "index": "books", "timestamp": 9 } },
            "expect": "use-elasticsearch" },
          { "name": "a delete against a change: the change wins", "kind": "resolve",
            "input": { "base": { "index": "books", "timestamp": 0 },
                       "cassandra": { "index": "books", "timestamp": 9 } },
            "expect": "use-cassandra" },
          { "name": "its filter", "kind": "filter",
            "input": { "side": "cassandra", "document": { "index": "legacy-private", "timestamp": 1 } },
            "expect": "skip" },
          { "name": "deletes take part", "kind": "filter",
            "input": { "side": "cassandra", "deleted": true, "document": { "index": "legacy-private", "timestamp": 1 } },
            "expect": "keep" }
        ] }"#,
    );
    let output = essync(&[
        "policy",
        "test",
        components::LEGACY_V0_1,
        cases.to_str().expect("utf-8"),
    ]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("4 passed, 0 failed"), "{stdout}");
    assert!(stdout.contains("essync:policy@0.1.0"), "{stdout}");

    let output = essync(&["policy", "check", components::LEGACY_V0_1]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("policy@0.1.0"), "{stdout}");
}

/// Several processes compile into one cache directory at once; the next load reads it back.
#[test]
fn processes_share_the_compile_cache() {
    let cache = std::env::temp_dir().join(format!("essync-compile-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let check = |cache: &str| {
        Command::new(env!("CARGO_BIN_EXE_essync"))
            .args([
                "policy",
                "check",
                components::FIELD_MERGE,
                "--policy-cache",
                cache,
            ])
            .env("RUST_LOG", "off")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the essync binary runs")
    };
    let dir = cache.to_str().expect("utf-8");
    let together: Vec<_> = (0..3).map(|_| check(dir)).collect();
    for child in together {
        let output = child.wait_with_output().expect("essync ends");
        let stdout = text(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        assert!(stdout.contains("compile cache"), "{stdout}");
    }
    let output = check(dir).wait_with_output().expect("essync ends");
    let stdout = text(&output.stdout);
    assert!(stdout.contains("from the compile cache"), "{stdout}");

    let output = check("off").wait_with_output().expect("essync ends");
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("compiled in") && !stdout.contains("compile cache"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&cache);
}
