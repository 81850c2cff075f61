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

/// A `filter` case runs as essync runs the policy: one that says its filter keeps every change
/// answers `keep`, whatever its filter would say, and a failed case says why.
#[test]
fn a_filter_case_of_a_policy_that_says_it_keeps_every_change_says_why_it_fails() {
    let cases = scratch_file(
        "unasked.json",
        r#"{ "cases": [
          { "name": "its filter would skip this", "kind": "filter",
            "input": { "side": "cassandra", "document": { "index": "books", "timestamp": 1 } },
            "expect": "skip" }
        ] }"#,
    );
    let output = essync(&[
        "policy",
        "test",
        components::UNASKED_FILTER,
        cases.to_str().expect("utf-8"),
    ]);
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("FAIL  its filter would skip this"),
        "{stdout}"
    );
    assert!(stdout.contains("+ \"keep\""), "{stdout}");
    assert!(
        stdout.contains("`filters: false` in its `needs`: essync never calls it"),
        "{stdout}"
    );
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
        stdout.contains("world     essync:policy/policy@0.3.0"),
        "{stdout}"
    );
    assert!(stdout.contains("essync:policy/resolver@0.3.0"), "{stdout}");
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
        stderr.contains("does not export essync:policy/filter@0.3.0"),
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
        assert!(stdout.contains("essync:policy@0.3.0"), "{stdout}");
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

/// `policy check` says whether the component asks essync to keep the base's content (a
/// current one answers, a 0.2.0 one is taken to merge (it runs adapted), a 0.1.0 one sees none)
/// and whether essync asks its filter.
#[test]
fn check_prints_what_the_policy_needs() {
    for (component, needs) in [
        (
            "builtin",
            "keeps base content: no (a conflict's base comes without its content)",
        ),
        (
            components::FIELD_MERGE,
            "keeps base content: yes (it merges from the base",
        ),
        (
            components::LEGACY_V0_2,
            "keeps base content: yes (0.2.0 components may merge)",
        ),
        (
            components::LEGACY_V0_1,
            "keeps base content: no (0.1.0 components see no base)",
        ),
    ] {
        let output = essync(&["policy", "check", component]);
        let stdout = text(&output.stdout);
        assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
        assert!(stdout.contains(&format!("  needs     {needs}")), "{stdout}");
    }
    // Whether the filter is asked: not for a policy that says it keeps every change.
    for (component, filters) in [
        ("builtin", "no (every change takes part as it is"),
        (components::FIELD_MERGE, "no (every change"),
        (components::INDEX_FILTER, "yes (essync asks its `filter`"),
        (components::LEGACY_V0_2, "yes (essync asks"),
    ] {
        let output = essync(&["policy", "check", component]);
        let stdout = text(&output.stdout);
        assert!(
            stdout.contains(&format!("            filters: {filters}")),
            "{stdout}"
        );
    }
    let output = essync(&["policy", "check", components::LEGACY_V0_2]);
    let stdout = text(&output.stdout);
    assert!(
        stdout
            .contains("world     essync:policy/policy@0.2.0, an earlier version: it runs adapted"),
        "{stdout}"
    );
}

/// A component of 0.2.0 runs cases adapted: it sees the base's content unless a case says the
/// base comes without it.
#[test]
fn a_policy_of_0_2_0_is_tested_with_the_base_content() {
    let cases = scratch_file(
        "legacy-0-2.json",
        r#"{ "cases": [
          { "name": "it gives both sides the base it saw", "kind": "resolve",
            "input": { "base": { "index": "books", "timestamp": 0, "content": { "v": "base" } },
                       "elasticsearch": { "index": "books", "timestamp": 1 },
                       "cassandra": { "index": "books", "timestamp": 9 } },
            "expect": { "write": { "index": "books", "timestamp": 0, "content": { "v": "base" } } } },
          { "name": "a base without its content is {}", "kind": "resolve",
            "input": { "base": { "index": "books", "timestamp": 0, "content": { "v": "base" } },
                       "base-content": false,
                       "elasticsearch": { "index": "books", "timestamp": 1 },
                       "cassandra": { "index": "books", "timestamp": 9 } },
            "expect": { "write": { "index": "books", "timestamp": 0 } } }
        ] }"#,
    );
    let output = essync(&[
        "policy",
        "test",
        components::LEGACY_V0_2,
        cases.to_str().expect("utf-8"),
    ]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
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

/// `policy bench` measures the calls essync makes: a policy that says its filter keeps every
/// change has no filter call to measure.
#[test]
fn bench_measures_the_filter_only_where_essync_calls_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    for (component, folder, filter) in [
        ("builtin", "last-write-wins", "never called"),
        (components::INDEX_FILTER, "index-filter", "per call of 1000"),
    ] {
        let cases = root.join(folder).join("cases.json");
        let output = essync(&["policy", "bench", component, cases.to_str().expect("utf-8")]);
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "{folder}: {stdout}{}",
            text(&output.stderr)
        );
        let line = |call: &str| {
            stdout
                .lines()
                .find(|l| l.starts_with(call))
                .unwrap_or_else(|| panic!("{folder}: no {call} line in {stdout}"))
        };
        assert!(line("filter ").contains(filter), "{folder}: {stdout}");
        assert!(
            line("resolve ").contains("per call of 1000"),
            "{folder}: {stdout}"
        );
    }
}

/// Each policy command's help lists its own arguments, `-v`, `--policy-cache` where it loads a
/// policy, and `-h`: none of the sync's options.
#[test]
fn policy_commands_list_only_their_own_options() {
    for (command, cache) in [
        ("new", false),
        ("test", true),
        ("check", true),
        ("bench", true),
    ] {
        let output = essync(&["policy", command, "--help"]);
        let help = text(&output.stdout);
        assert!(output.status.success(), "{command}: {help}");
        let options: Vec<&str> = help
            .split_whitespace()
            .filter(|word| word.starts_with("--"))
            .map(|word| word.trim_end_matches([',', '.', ')']))
            .collect();
        for option in &options {
            assert!(
                ["--lang", "--policy-cache", "--verbose", "--help"].contains(option),
                "essync policy {command} --help lists {option}:\n{help}"
            );
        }
        assert_eq!(
            options.contains(&"--policy-cache"),
            cache,
            "essync policy {command} --help:\n{help}"
        );
    }
}

#[test]
fn the_help_of_policy_test_names_the_cases_format_and_its_page() {
    for flag in ["-h", "--help"] {
        let help = text(&essync(&["policy", "test", flag]).stdout);
        assert!(help.contains("cases format"), "{help}");
        assert!(help.contains("docs/policies.md"), "{help}");
    }
    let help = text(&essync(&["policy", "test", "--help"]).stdout);
    for part in [
        "\"kind\"",
        "use-elasticsearch",
        "{\"skip\": \"reason\"}",
        "\"stamp\"",
    ] {
        assert!(help.contains(part), "{part}:\n{help}");
    }
}

#[test]
fn a_sync_option_given_to_a_policy_command_is_refused_in_one_line() {
    let cases = default_cases();
    let cases = cases.to_str().expect("utf-8");
    let project = std::env::temp_dir().join(format!("essync-refused-{}", std::process::id()));
    let project = project.to_str().expect("utf-8");
    for args in [
        vec![
            "policy",
            "test",
            "builtin",
            cases,
            "--es-url",
            "http://x:9200",
        ],
        vec!["policy", "--cassandra", "x:9042", "test", "builtin", cases],
        vec![
            "policy",
            "new",
            project,
            "--lang",
            "rust",
            "--policy-cache",
            "off",
        ],
    ] {
        let output = essync(&args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("essync policy"), "{args:?}: {stderr}");
        assert!(stderr.contains("--help"), "{args:?}: {stderr}");
    }
}

/// A config file made for the sync serves the policy commands too: they ignore its sync
/// settings, and take its `policy-cache`.
#[test]
fn a_config_file_with_sync_settings_serves_policy_commands() {
    let config = scratch_file(
        "essync.toml",
        "target = \"shop:products\"\nperiod = 10\nes-url = \"http://es1:9200\"\n\
         cassandra = \"c1:9042\"\npolicy-cache = \"off\"\n",
    );
    let output = essync(&[
        "--config",
        config.to_str().expect("utf-8"),
        "policy",
        "check",
        "builtin",
    ]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("compiled in"), "{stdout}");
}

#[test]
fn check_says_how_essync_answers_each_import() {
    let output = essync(&["policy", "check", "builtin"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains("world     essync:policy/policy@0.3.0, the version this essync runs"),
        "{stdout}"
    );
    assert!(
        stdout.contains("provided by essync, in a sandbox:"),
        "{stdout}"
    );
    for line in [
        "wasi:cli/environment@0.2.6: empty: no variables, no arguments",
        "wasi:cli/stdout@0.2.6: captured into essync's debug log",
    ] {
        assert!(stdout.contains(line), "{line}:\n{stdout}");
    }
    // The built-in policy imports neither a file system nor sockets.
    assert!(!stdout.contains("denied"), "{stdout}");
    assert!(!stdout.contains("wasi:sockets"), "{stdout}");
}

/// A Rust policy that panics: the error is the panic's message, once, and where it panicked.
#[test]
fn a_rust_policy_that_panics_fails_with_its_message_once_and_its_location() {
    let cases = scratch_file(
        "panics.json",
        r#"{ "cases": [
          { "name": "it panics", "kind": "filter",
            "input": { "side": "cassandra", "document": { "index": "trap", "timestamp": 1 } },
            "expect": "keep" }
        ] }"#,
    );
    let output = essync(&[
        "policy",
        "test",
        components::MISBEHAVING,
        cases.to_str().expect("utf-8"),
    ]);
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    let error = stdout
        .lines()
        .find(|line| line.contains("\"error\""))
        .unwrap_or_else(|| panic!("no error:\n{stdout}"));
    assert_eq!(error.matches("trap requested").count(), 1, "{error}");
    assert!(
        error.contains("(panicked at policies/testing/misbehaving/src/lib.rs:"),
        "{error}"
    );
    assert!(!error.contains("wasm trap"), "{error}");
    assert!(!error.contains("RUST_BACKTRACE"), "{error}");
}
