//! `essync policy ...`: a policy component on its own, with no database. `check` and `test`
//! are here, `new` (and `wit`) in `policy/new.rs`, `bench` in `policy/bench.rs`.
//!
//! The cases file of `essync policy test` is documented for policy authors in
//! `docs/policies.md` ("The cases format"), and in brief by `essync policy test --help`: a change
//! to the format changes both. All filter cases run as one batch, and all resolve cases as
//! another, as in a sync round.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use similar::{ChangeTag, TextDiff};
use uuid::Uuid;

use essync::Document;
use essync::document::{DEFAULT_TYPE, format_timestamp};
use essync::policy::{
    Candidate, CompileCache, Conflict, LoadOptions, Policy, PolicyError, PolicySource, Resolution,
    Side, Stamp, Verdict, Version,
};

use crate::cli::PolicyCommand;

mod bench;
mod new;

/// The id of a case that does not name one.
const DEFAULT_ID: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0000);

/// Runs a policy subcommand; `cache` is where compiled components are kept.
pub async fn run(command: PolicyCommand, cache: CompileCache) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::New { name, lang } => new::run(&name, lang),
        PolicyCommand::Wit => {
            print!("{}", essync::policy::WIT);
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Check { policy } => check(&policy, &cache),
        PolicyCommand::Test { policy, cases } => test(&policy, &cases, &cache).await,
        PolicyCommand::Bench { policy, cases } => bench::run(&policy, &cases, &cache),
    }
}

/// What a policy argument names: `builtin` or a component file.
fn source(policy: &Path) -> PolicySource {
    if policy.as_os_str() == "builtin" {
        PolicySource::Builtin
    } else {
        PolicySource::File(policy.to_path_buf())
    }
}

/// Loads `builtin` or a component file, under the default limits.
fn load(policy: &Path, cache: &CompileCache) -> Result<Policy, PolicyError> {
    let options = LoadOptions {
        cache: cache.clone(),
        ..LoadOptions::default()
    };
    Policy::load(&source(policy), &options)
}

/// Exports that toolchains add beside the policy world's, and what they are.
const TOOLCHAIN_EXPORTS: &[(&str, &str)] = &[(
    "exports",
    "componentize-py's initializer, run once when the component was built",
)];

fn check(path: &Path, cache: &CompileCache) -> anyhow::Result<ExitCode> {
    let policy = load(path, cache)?;
    policy.probe()?;
    println!("{}: an essync policy", policy.name());
    println!("  world     {}", world_line(&policy));
    let (ours, others): (Vec<&String>, Vec<&String>) = policy
        .exports()
        .iter()
        .partition(|name| name.starts_with(&format!("{}/", essync::policy::WORLD_PACKAGE)));
    println!("  exports   {}", join(&ours));
    for other in others {
        let what = TOOLCHAIN_EXPORTS
            .iter()
            .find(|(name, _)| name == other)
            .map_or("not part of the policy world", |(_, what)| what);
        println!("            {other}: never called by essync ({what})");
    }
    println!("  needs     {}", needs_line(&policy));
    println!("            {}", filters_line(&policy));
    print_imports(policy.imports());
    println!(
        "  size      {}, {}",
        bench::bytes(policy.size()),
        super::sync::describe_load(&policy)
    );
    Ok(ExitCode::SUCCESS)
}

/// What the component needs from essync, as its `about` says (or its world, for an earlier one).
fn needs_line(policy: &Policy) -> String {
    let (keeps, why) = match (policy.runs_as(), policy.wants_base_content()) {
        ("0.2.0", _) => ("yes", "0.2.0 components may merge"),
        ("0.1.0", _) => ("no", "0.1.0 components see no base"),
        (_, true) => (
            "yes",
            "it merges from the base: essync keeps every synced document's content, compressed",
        ),
        (_, false) => ("no", "a conflict's base comes without its content"),
    };
    format!("keeps base content: {keeps} ({why})")
}

/// Whether essync asks the component's `filter`, as its `about` says (an earlier world's always
/// is).
fn filters_line(policy: &Policy) -> String {
    if policy.filters() {
        "filters: yes (essync asks its `filter` about every change)".to_string()
    } else {
        "filters: no (every change takes part as it is: essync never calls its `filter`)"
            .to_string()
    }
}

/// The world a component exports, and how this essync runs it.
fn world_line(policy: &Policy) -> String {
    let version = policy.world_version();
    let world = format!(
        "{}/{}@{version}",
        essync::policy::WORLD_PACKAGE,
        essync::policy::WORLD
    );
    let current = essync::policy::WORLD_VERSION;
    match policy.runs_as() {
        "0.2.0" => format!(
            "{world}, an earlier version: it runs adapted, without `about` and `base-content` \
             (rebuild it against {current} to say whether it merges from the base)"
        ),
        "0.1.0" => format!(
            "{world}, an earlier version: it runs adapted, without the base, the stamps and the \
             deletes (rebuild it against {current} for them)"
        ),
        _ => format!("{world}, the version this essync runs"),
    }
}

/// The imports of a component, grouped by how essync answers them: provided (and how), or
/// denied (they link, and every use fails).
fn print_imports(imports: &[String]) {
    use essync::policy::{Grant, import_grant};
    for (grant, title) in [
        (Grant::Provided, "provided by essync, in a sandbox:"),
        (Grant::Denied, "denied: they link, and every use fails:"),
    ] {
        // Imports answered the same way share a line, in the component's order.
        let mut lines: Vec<(&str, Vec<&str>)> = Vec::new();
        for name in imports {
            match import_grant(name) {
                Some((g, how)) if g == grant => match lines.iter_mut().find(|(h, _)| *h == how) {
                    Some((_, names)) => names.push(name),
                    None => lines.push((how, vec![name])),
                },
                _ => {}
            }
        }
        if lines.is_empty() {
            continue;
        }
        let label = if grant == Grant::Provided {
            "imports"
        } else {
            ""
        };
        println!("  {label:<9} {title}");
        for (how, names) in lines {
            println!("              {}: {how}", interfaces(&names));
        }
    }
}

/// Interface names, those of one package and version together: `wasi:cli/{stdin, stdout}@0.2.9`.
fn interfaces(names: &[&str]) -> String {
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for name in names {
        let (path, version) = name.split_once('@').unwrap_or((name, ""));
        let (package, interface) = path.rsplit_once('/').unwrap_or(("", path));
        let key = format!("{package}\0{version}");
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(interface),
            None => groups.push((key, vec![interface])),
        }
    }
    let shown: Vec<String> = groups
        .into_iter()
        .map(|(key, members)| {
            let (package, version) = key.split_once('\0').unwrap_or(("", ""));
            let members = match members.as_slice() {
                [one] => one.to_string(),
                many => format!("{{{}}}", many.join(", ")),
            };
            let package = if package.is_empty() {
                String::new()
            } else {
                format!("{package}/")
            };
            let version = if version.is_empty() {
                String::new()
            } else {
                format!("@{version}")
            };
            format!("{package}{members}{version}")
        })
        .collect();
    shown.join(", ")
}

fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|name| name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum Case {
    Filter {
        name: String,
        input: FilterInput,
        expect: Value,
    },
    Resolve {
        name: String,
        input: Box<ResolveInput>,
        expect: Value,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterInput {
    side: CaseSide,
    document: CaseDocument,
    #[serde(default)]
    deleted: bool,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum CaseSide {
    Elasticsearch,
    Cassandra,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveInput {
    id: Option<Uuid>,
    base: Option<CaseDocument>,
    /// Whether the base carries its content; by default what essync gives the policy for a
    /// document synced while it ran: the content when the policy asks for it.
    #[serde(rename = "base-content")]
    base_content: Option<bool>,
    elasticsearch: Option<CaseDocument>,
    cassandra: Option<CaseDocument>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct CaseDocument {
    id: Option<Uuid>,
    index: String,
    #[serde(rename = "type")]
    doc_type: Option<String>,
    timestamp: CaseTimestamp,
    stamp: Option<CaseStamp>,
    content: Option<Value>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum CaseStamp {
    Written,
    Observed,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
enum CaseTimestamp {
    Millis(i64),
    Text(String),
}

impl CaseDocument {
    fn to_version(&self, default_id: Uuid) -> anyhow::Result<Version> {
        Ok(Version {
            document: self.to_document(default_id)?,
            stamp: match self.stamp {
                None | Some(CaseStamp::Written) => Stamp::Written,
                Some(CaseStamp::Observed) => Stamp::Observed,
            },
        })
    }

    fn to_document(&self, default_id: Uuid) -> anyhow::Result<Document> {
        let timestamp = match &self.timestamp {
            CaseTimestamp::Millis(ms) => DateTime::<Utc>::from_timestamp_millis(*ms)
                .with_context(|| format!("timestamp {ms} is out of range"))?,
            CaseTimestamp::Text(text) => DateTime::parse_from_rfc3339(text)
                .with_context(|| format!("timestamp {text:?} is not RFC 3339"))?
                .with_timezone(&Utc),
        };
        let content = self.content.clone().unwrap_or_else(|| json!({}));
        anyhow::ensure!(content.is_object(), "content must be a JSON object");
        Ok(Document::with_id(
            self.id.unwrap_or(default_id),
            self.index.clone(),
            self.doc_type
                .clone()
                .unwrap_or_else(|| DEFAULT_TYPE.to_string()),
            content,
        )
        .at(timestamp))
    }
}

/// A document as cases spell it, for comparing and printing.
fn document_json(document: &Document) -> Value {
    json!({
        "id": document.id.to_string(),
        "index": document.index,
        "type": document.doc_type,
        "timestamp": document.timestamp.map(format_timestamp),
        "content": document.content,
    })
}

/// The expected answer with its documents spelled out in full (defaults filled in).
fn normalize_expected(expect: &Value, key: &str, id: Uuid) -> anyhow::Result<Value> {
    match expect.get(key) {
        Some(document) => {
            let document: CaseDocument = serde_json::from_value(document.clone())
                .with_context(|| format!("the expected {key} document is not a document"))?;
            Ok(json!({ key: document_json(&document.to_document(id)?) }))
        }
        None => Ok(expect.clone()),
    }
}

fn verdict_json(answer: &Result<Verdict, PolicyError>) -> Value {
    match answer {
        Ok(Verdict::Keep) => json!("keep"),
        Ok(Verdict::Skip { reason }) => json!({ "skip": reason }),
        Ok(Verdict::Transform(document)) => json!({ "transform": document_json(document) }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

fn resolution_json(answer: &Result<Resolution, PolicyError>) -> Value {
    match answer {
        Ok(Resolution::Unchanged) => json!("unchanged"),
        Ok(Resolution::UseElasticsearch) => json!("use-elasticsearch"),
        Ok(Resolution::UseCassandra) => json!("use-cassandra"),
        Ok(Resolution::Write(document)) => json!({ "write": document_json(document) }),
        Ok(Resolution::Delete) => json!("delete"),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// Whether an actual answer meets the expectation.
fn meets(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(e), Value::Object(a)) if e == "skip" || e == "error" => {
            a.contains_key(e.as_str())
        }
        (Value::Object(e), Value::Object(a)) => match (e.get("error"), a.get("error")) {
            (Some(Value::String(wanted)), Some(Value::String(got))) => got.contains(wanted),
            _ => expected == actual,
        },
        _ => expected == actual,
    }
}

struct Outcome {
    name: String,
    expected: Value,
    actual: Value,
    /// Whether it is a `filter` case.
    filter: bool,
}

/// The cases of a cases file, as the policy's inputs: the filter cases' candidates and the
/// resolve cases' conflicts, each with (position in the file, name, expected answer).
struct Inputs {
    candidates: Vec<Candidate>,
    conflicts: Vec<Conflict>,
    filter_cases: Vec<(usize, String, Value)>,
    resolve_cases: Vec<(usize, String, Value)>,
}

/// `base_content`: whether a base carries its content when the case does not say.
fn read_cases(cases_path: &Path, base_content: bool) -> anyhow::Result<Inputs> {
    let text = std::fs::read_to_string(cases_path)
        .with_context(|| format!("cannot read the cases file {}", cases_path.display()))?;
    let file: CasesFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a cases file", cases_path.display()))?;
    let mut candidates = Vec::new();
    let mut conflicts = Vec::new();
    let mut filter_cases = Vec::new();
    let mut resolve_cases = Vec::new();
    for (position, case) in file.cases.iter().enumerate() {
        match case {
            Case::Filter {
                name,
                input,
                expect,
            } => {
                let version = input
                    .document
                    .to_version(DEFAULT_ID)
                    .with_context(|| format!("case {name:?}"))?;
                let expected = normalize_expected(expect, "transform", version.document.id)
                    .with_context(|| format!("case {name:?}"))?;
                filter_cases.push((position, name.clone(), expected));
                candidates.push(Candidate {
                    side: match input.side {
                        CaseSide::Elasticsearch => Side::Elasticsearch,
                        CaseSide::Cassandra => Side::Cassandra,
                    },
                    version,
                    deleted: input.deleted,
                });
            }
            Case::Resolve {
                name,
                input,
                expect,
            } => {
                let id = input.id.unwrap_or(DEFAULT_ID);
                let version = |d: &Option<CaseDocument>| -> anyhow::Result<Option<Version>> {
                    d.as_ref().map(|d| d.to_version(id)).transpose()
                };
                let conflict = Conflict {
                    id,
                    base: input
                        .base
                        .as_ref()
                        .map(|d| d.to_document(id))
                        .transpose()
                        .with_context(|| format!("case {name:?}"))?,
                    base_content: input.base_content.unwrap_or(base_content),
                    elasticsearch: version(&input.elasticsearch)
                        .with_context(|| format!("case {name:?}"))?,
                    cassandra: version(&input.cassandra)
                        .with_context(|| format!("case {name:?}"))?,
                };
                let expected = normalize_expected(expect, "write", id)
                    .with_context(|| format!("case {name:?}"))?;
                resolve_cases.push((position, name.clone(), expected));
                conflicts.push(conflict);
            }
        }
    }
    Ok(Inputs {
        candidates,
        conflicts,
        filter_cases,
        resolve_cases,
    })
}

async fn test(path: &Path, cases_path: &Path, cache: &CompileCache) -> anyhow::Result<ExitCode> {
    let policy = load(path, cache)?;
    let Inputs {
        candidates,
        conflicts,
        filter_cases,
        resolve_cases,
    } = read_cases(cases_path, policy.wants_base_content())?;

    let verdicts = policy.filter(candidates).await;
    let resolutions = policy.resolve(conflicts).await;
    let actual = verdicts
        .iter()
        .map(verdict_json)
        .chain(resolutions.iter().map(resolution_json));
    let filters = filter_cases.len();
    let mut outcomes: Vec<(usize, Outcome)> = filter_cases
        .into_iter()
        .chain(resolve_cases)
        .zip(actual)
        .enumerate()
        .map(|(n, ((position, name, expected), actual))| {
            let outcome = Outcome {
                name,
                expected,
                actual,
                filter: n < filters,
            };
            (position, outcome)
        })
        .collect();
    outcomes.sort_by_key(|(position, _)| *position);

    let mut failed = 0;
    for (_, outcome) in &outcomes {
        if meets(&outcome.expected, &outcome.actual) {
            println!("ok    {}", outcome.name);
        } else {
            failed += 1;
            println!("FAIL  {}", outcome.name);
            print_diff(&outcome.expected, &outcome.actual);
            if outcome.filter && !policy.filters() {
                println!(
                    "      (the policy says its filter keeps every change, `filters: false` in \
                     its `needs`: essync never calls it, and every change takes part)"
                );
            }
        }
    }
    println!(
        "{} cases: {} passed, {failed} failed ({} on {}, essync:policy@{})",
        outcomes.len(),
        outcomes.len() - failed,
        cases_path.display(),
        policy.name(),
        policy.world_version()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Expected and actual as pretty JSON, line by line: `-` expected, `+` actual.
fn print_diff(expected: &Value, actual: &Value) {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    let (expected, actual) = (pretty(expected) + "\n", pretty(actual) + "\n");
    println!("      - expected");
    println!("      + actual");
    for change in TextDiff::from_lines(&expected, &actual).iter_all_changes() {
        let sign = match change.tag() {
            ChangeTag::Delete => '-',
            ChangeTag::Insert => '+',
            ChangeTag::Equal => ' ',
        };
        print!("      {sign} {change}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_match_answers() {
        assert!(meets(&json!("keep"), &json!("keep")));
        assert!(!meets(&json!("keep"), &json!({"skip": "x"})));
        assert!(meets(&json!("skip"), &json!({"skip": "any reason"})));
        assert!(meets(&json!({"skip": "r"}), &json!({"skip": "r"})));
        assert!(!meets(&json!({"skip": "r"}), &json!({"skip": "other"})));
        assert!(meets(&json!("error"), &json!({"error": "boom"})));
        assert!(meets(
            &json!({"error": "time limit"}),
            &json!({"error": "the policy ran past its time limit"})
        ));
        assert!(!meets(&json!("error"), &json!("unchanged")));
    }

    #[test]
    fn interfaces_of_one_package_and_version_share_a_name() {
        assert_eq!(
            interfaces(&[
                "wasi:sockets/tcp@0.2.9",
                "wasi:sockets/udp@0.2.9",
                "wasi:cli/stdin@0.2.9",
                "log"
            ]),
            "wasi:sockets/{tcp, udp}@0.2.9, wasi:cli/stdin@0.2.9, log"
        );
    }

    #[test]
    fn case_documents_take_defaults() {
        let document: CaseDocument =
            serde_json::from_value(json!({"index": "books", "timestamp": "2024-05-01T10:00:00Z"}))
                .unwrap();
        let document = document.to_document(DEFAULT_ID).unwrap();
        assert_eq!(document.id, DEFAULT_ID);
        assert_eq!(document.doc_type, DEFAULT_TYPE);
        assert_eq!(document.content, json!({}));
        assert_eq!(document.timestamp_millis(), Some(1_714_557_600_000));
    }
}
