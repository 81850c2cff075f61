//! Policies in every language, built with the installed toolchains as an author builds them:
//! the Python and JavaScript examples pass the cases of their Rust twins; a project that
//! `essync policy new` writes passes its unit tests, and after the example edit its README
//! suggests, builds and passes its tests and cases, in Rust, Python and JavaScript; a Python
//! policy that raises is reported with its traceback; the SDKs' content helpers agree. No server
//! needed.
//!
//! The toolchains are found on PATH: `cargo` with the wasm32-wasip2 target, `componentize-py`
//! and `python3`, `componentize-js` and `node` (`scripts/policy-tools` installs the last ones
//! into the work area and `scripts/test` puts them on PATH). A missing one fails the test that
//! needs it, with the build script's message saying what to install.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command to its end; panics with its output unless it succeeds.
fn run(what: &str, command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

fn essync(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_essync"));
    command.args(args).env("RUST_LOG", "off");
    command
}

/// A fresh folder of this run for `name`.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("policy-langs")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    dir
}

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// `essync policy test` passes every case and names the interface version.
fn passes_its_cases(component: &Path, cases: &Path) {
    let output = run(
        "essync policy test",
        essync(&["policy", "test"]).arg(component).arg(cases),
    );
    let stdout = text(&output.stdout);
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.contains("essync:policy@0.3.0"), "{stdout}");
}

#[test]
fn the_python_example_passes_the_cases_of_its_rust_twin_and_loads_from_the_cache() {
    let example = policies().join("prefer-cassandra-python");
    let out = scratch("prefer-cassandra-python");
    let component = out.join("policy.wasm");
    run(
        "building the Python example",
        Command::new("sh")
            .arg(example.join("build.sh"))
            .arg(&component),
    );
    run(
        "the Python example's unit tests",
        Command::new("python3")
            .args(["-m", "unittest", "-q"])
            .current_dir(&example),
    );
    passes_its_cases(&component, &policies().join("prefer-cassandra/cases.json"));

    // A second load of the same 18 MB component reads its compiled code back.
    let cache = out.join("cache");
    let check = || {
        let output = run(
            "essync policy check",
            essync(&["policy", "check"])
                .arg(&component)
                .arg("--policy-cache")
                .arg(&cache),
        );
        text(&output.stdout)
    };
    let first = check();
    assert!(first.contains("kept in the compile cache"), "{first}");
    // It says its filter keeps every change: essync does not ask it.
    assert!(first.contains("filters: no"), "{first}");
    // What componentize-py links in is explained: its initializer, and the file system and
    // sockets, denied.
    assert!(
        first.contains("exports: never called by essync (componentize-py's initializer"),
        "{first}"
    );
    let (_, denied) = first
        .split_once("denied: they link, and every use fails:")
        .unwrap_or_else(|| panic!("nothing denied:\n{first}"));
    assert!(denied.contains("wasi:sockets/{"), "{first}");
    assert!(denied.contains("wasi:filesystem/{"), "{first}");
    assert_eq!(first.matches("wasi:sockets").count(), 1, "{first}");
    let second = check();
    assert!(second.contains("from the compile cache"), "{second}");
}

#[test]
fn the_javascript_example_passes_the_cases_of_its_rust_twin() {
    let example = policies().join("field-merge-js");
    let component = scratch("field-merge-js").join("policy.wasm");
    run(
        "building the JavaScript example",
        Command::new("sh")
            .arg(example.join("build.sh"))
            .arg(&component),
    );
    run(
        "the JavaScript example's unit tests",
        Command::new("node").arg("--test").current_dir(&example),
    );
    passes_its_cases(&component, &policies().join("field-merge/cases.json"));
    // It merges from the base, and says its filter keeps every change.
    let check = run(
        "essync policy check",
        essync(&["policy", "check"]).arg(&component),
    );
    let check = text(&check.stdout);
    assert!(check.contains("keeps base content: yes"), "{check}");
    assert!(check.contains("filters: no"), "{check}");
}

/// The files the README of a project that `essync policy new` wrote tells its reader to
/// write, in its example edit: each "Replace `FILE` with:" or "Add `FILE`:" line and the fenced
/// block after it.
fn example_edit(readme: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let file = ["Replace `", "Add `"]
            .iter()
            .find_map(|start| line.strip_prefix(start))
            .and_then(|rest| rest.split_once('`'))
            .map(|(file, _)| file.to_string());
        let Some(file) = file else { continue };
        assert!(
            lines.next().is_some_and(str::is_empty),
            "{file}: no blank line after its instruction"
        );
        assert!(
            lines.next().is_some_and(|l| l.starts_with("```")),
            "{file}: no block"
        );
        let text: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        files.push((file, text.join("\n") + "\n"));
    }
    files
}

/// `essync policy new` in an empty folder; the project's unit tests, natively; then the example
/// edit of its README, as a reader makes it: the build script, the unit tests and the cases
/// pass.
fn a_new_project_passes_after_the_example_edit(lang: &str, unit_tests: &[&str]) {
    let dir = scratch(&format!("new-{lang}"));
    let project = dir.join(format!("my-{lang}-policy"));
    let output = run(
        "essync policy new",
        essync(&["policy", "new"])
            .arg(&project)
            .args(["--lang", lang]),
    );
    let next = text(&output.stdout);
    let step = |part: &str| {
        next.find(part)
            .unwrap_or_else(|| panic!("no {part} in:\n{next}"))
    };
    assert!(step("# the toolchain") < step("./build.sh"), "{next}");
    assert!(step("./build.sh") < step("# the unit tests"), "{next}");
    assert!(step("# the unit tests") < step("essync policy test policy.wasm cases.json"));
    let wit = std::fs::read_to_string(project.join("wit/policy.wit")).expect("the WIT");
    assert_eq!(
        wit,
        text(&run("essync policy wit", &mut essync(&["policy", "wit"])).stdout)
    );
    // Rust builds share a target folder across runs (their dependencies are compiled once).
    let rust_target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("policy-new-rust-target");
    let unit_tests = || {
        let mut command = Command::new(unit_tests[0]);
        command
            .args(&unit_tests[1..])
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", &rust_target);
        command
    };
    if lang == "python" {
        // The tests import the bindings that ./build.sh writes; before a build, only those.
        run(
            "the Python bindings",
            Command::new("componentize-py")
                .args(["-d", "wit", "-w", "policy", "bindings", "bindings"])
                .current_dir(&project),
        );
    }
    run(
        &format!("the new {lang} project's unit tests"),
        &mut unit_tests(),
    );

    let readme = std::fs::read_to_string(project.join("README.md")).expect("the README");
    let edit = example_edit(&readme);
    assert!(
        edit.iter().any(|(file, _)| file == "cases.json"),
        "{edit:?}"
    );
    for (file, text) in &edit {
        std::fs::write(project.join(file), text).expect("an edited file");
    }
    run(
        &format!("building the edited {lang} project"),
        Command::new("./build.sh")
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", &rust_target),
    );
    run(
        &format!("the edited {lang} project's unit tests"),
        &mut unit_tests(),
    );
    let cases = project.join("cases.json");
    passes_its_cases(&project.join("policy.wasm"), &cases);
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cases).expect("cases")).expect("JSON");
    let kinds: Vec<&str> = cases["cases"]
        .as_array()
        .expect("a list of cases")
        .iter()
        .filter_map(|case| case["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["filter", "filter", "resolve", "resolve"]);
}

#[test]
fn a_new_rust_policy_passes_its_tests_and_cases_after_the_example_edit() {
    a_new_project_passes_after_the_example_edit("rust", &["cargo", "test", "--quiet"]);
}

#[test]
fn a_new_python_policy_passes_its_tests_and_cases_after_the_example_edit() {
    a_new_project_passes_after_the_example_edit("python", &["python3", "-m", "unittest", "-q"]);
}

#[test]
fn a_new_javascript_policy_passes_its_tests_and_cases_after_the_example_edit() {
    a_new_project_passes_after_the_example_edit("js", &["node", "--test"]);
}

/// A Python policy that raises: the error is the exception, once, with where it was raised and
/// what called it, and none of what the runtime adds.
#[test]
fn a_python_policy_that_raises_fails_with_its_exception_once_and_its_traceback() {
    let dir = scratch("python-raises");
    let project = dir.join("raises");
    run(
        "essync policy new",
        essync(&["policy", "new"])
            .arg(&project)
            .args(["--lang", "python"]),
    );
    let policy = std::fs::read_to_string(project.join("policy.py")).expect("policy.py");
    // The version of each side read as a careless author would: a KeyError without one.
    let policy = policy.replace(
        "    return last_write_wins(conflict)",
        "    if version(conflict.elasticsearch) > version(conflict.cassandra):\n        \
         return last_write_wins(conflict)\n    return last_write_wins(conflict)\n\n\n\
         def version(document):\n    return content_object(document)[\"version\"]",
    );
    let policy = policy.replace(
        "from essync_policy import answer_each, last_write_wins",
        "from essync_policy import answer_each, content_object, last_write_wins",
    );
    std::fs::write(project.join("policy.py"), policy).expect("policy.py");
    run(
        "building the Python policy",
        Command::new("./build.sh").current_dir(&project),
    );
    let output = essync(&["policy", "test"])
        .arg(project.join("policy.wasm"))
        .arg(project.join("cases.json"))
        .output()
        .expect("essync runs");
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    let error = stdout
        .lines()
        .find(|line| line.contains("\"error\""))
        .unwrap_or_else(|| panic!("no error:\n{stdout}"));
    assert_eq!(error.matches("KeyError: 'version'").count(), 1, "{error}");
    assert!(
        error.contains("(at policy.py line ")
            && error.contains(" in version, called from policy.py line "),
        "{error}"
    );
    for noise in [
        "wasm trap",
        "unreachable",
        "runtime/src/lib.rs",
        "unexpected exception",
    ] {
        assert!(!error.contains(noise), "{noise}: {error}");
    }
}

/// The content helpers of the Python and JavaScript SDKs pass the vectors the Rust SDK passes
/// (`policies/sdk/tests/content-vectors.json`; the Rust side is `cargo test -p essync-policy`).
#[test]
fn the_python_and_javascript_sdks_give_numbers_the_rust_sdk_s_meaning() {
    let sdk = policies().join("sdk");
    run(
        "the Python SDK's tests",
        Command::new("python3")
            .args(["-m", "unittest", "-q"])
            .current_dir(sdk.join("python")),
    );
    run(
        "the JavaScript SDK's tests",
        Command::new("node")
            .arg("--test")
            .current_dir(sdk.join("js")),
    );
}

#[test]
fn new_refuses_a_folder_in_use_and_a_name_no_language_takes() {
    let dir = scratch("new-refused");
    std::fs::write(dir.join("file"), "taken").expect("a file");
    for (folder, expected) in [
        (dir.clone(), "not empty"),
        (dir.join("My Policy"), "cannot name a policy"),
    ] {
        let output = essync(&["policy", "new"])
            .arg(&folder)
            .args(["--lang", "python"])
            .output()
            .expect("essync runs");
        let stderr = text(&output.stderr);
        assert!(!output.status.success());
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}
