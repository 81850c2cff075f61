//! `essync policy new NAME --lang rust|python|js`: a ready policy project in `./NAME`, built
//! with the language's own tools and tested with essync, with nothing else to fetch.
//!
//! Every project holds the WIT this essync was built with (`wit/policy.wit`), the language's
//! helpers (the same canonical JSON and default rule as the Rust SDK: for Rust the SDK itself,
//! for Python and JavaScript `policies/sdk/python` and `policies/sdk/js`), a policy (documents
//! of `scratch-*` indices stay on their side; the newer version wins a conflict), its unit
//! tests, `cases.json` with one filter case and one resolve case, `build.sh` (which writes
//! `policy.wasm`) and a short README. The same `cases.json` passes in every language.
//!
//! The README ends with an example edit (documents with `"private": true` stay on their side;
//! the greater `version` field wins a conflict): the files to replace and add, the same cases
//! in every language (`templates/example-cases.json`). The project's tests and cases pass after
//! it (a test reads the edit off the README and makes it), and each of the project's own tests
//! says, when it fails, which rule it checks and what to change.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::Lang;

/// The componentize-py release the Python projects are built and tested with.
pub const COMPONENTIZE_PY: &str = "0.25.1";
/// The componentize-js release the JavaScript projects are built and tested with.
pub const COMPONENTIZE_JS: &str = "0.23.0";

const CASES: &str = include_str!("templates/cases.json");
/// The cases after the example edit each project's README suggests.
const EXAMPLE_CASES: &str = include_str!("templates/example-cases.json");

const RUST: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("templates/rust/Cargo.toml")),
    ("src/lib.rs", include_str!("templates/rust/lib.rs")),
    (
        "essync-policy/Cargo.toml",
        include_str!("templates/rust/sdk-Cargo.toml"),
    ),
    ("build.sh", include_str!("templates/rust/build.sh")),
    ("README.md", include_str!("templates/rust/README.md")),
    (".gitignore", include_str!("templates/rust/gitignore")),
];

/// The Rust SDK, whose bindings are generated from `../../wit` in this repository and from
/// `../wit` in a project.
const RUST_SDK: &str = include_str!("../../../../policies/sdk/src/lib.rs");
const RUST_SDK_WIT_PATH: (&str, &str) = (r#"path: "../../wit","#, r#"path: "../wit","#);

const PYTHON: &[(&str, &str)] = &[
    ("policy.py", include_str!("templates/python/policy.py")),
    (
        "test_policy.py",
        include_str!("templates/python/test_policy.py"),
    ),
    (
        "essync_policy.py",
        include_str!("../../../../policies/sdk/python/essync_policy.py"),
    ),
    ("build.sh", include_str!("templates/python/build.sh")),
    ("README.md", include_str!("templates/python/README.md")),
    (".gitignore", include_str!("templates/python/gitignore")),
];

const JS: &[(&str, &str)] = &[
    ("policy.js", include_str!("templates/js/policy.js")),
    (
        "policy.test.js",
        include_str!("templates/js/policy.test.js"),
    ),
    (
        "essync-policy.js",
        include_str!("../../../../policies/sdk/js/essync-policy.js"),
    ),
    ("package.json", include_str!("templates/js/package.json")),
    ("build.sh", include_str!("templates/js/build.sh")),
    ("README.md", include_str!("templates/js/README.md")),
    (".gitignore", include_str!("templates/js/gitignore")),
];

/// Writes the project and says what to do next.
pub fn run(dir: &Path, lang: Lang) -> anyhow::Result<ExitCode> {
    let name = dir
        .file_name()
        .and_then(|name| name.to_str())
        .with_context(|| format!("{} does not end in a folder name", dir.display()))?;
    check_name(name)?;
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_none();
        anyhow::ensure!(
            empty,
            "{} already exists and is not empty: choose another NAME",
            dir.display()
        );
    }
    for (path, text) in files(name, lang) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "sh") {
            make_executable(&path)?;
        }
    }
    let steps = Steps::of(lang);
    println!(
        "wrote a {} policy for essync:policy@{} in {}",
        steps.language,
        essync::policy::WORLD_VERSION,
        dir.display()
    );
    println!("next:");
    for (command, what) in steps.commands(&dir.display().to_string()) {
        println!("  {command:<42} # {what}");
    }
    println!(
        "then edit {} (README.md shows an example edit) and run the last three again",
        steps.source
    );
    Ok(ExitCode::SUCCESS)
}

/// What to do after `policy new`, in the same order for every language: the toolchain, the
/// build, the unit tests, the cases.
struct Steps {
    language: &'static str,
    install: String,
    unit_tests: &'static str,
    source: &'static str,
}

impl Steps {
    fn of(lang: Lang) -> Steps {
        match lang {
            Lang::Rust => Steps {
                language: "Rust",
                install: "rustup target add wasm32-wasip2".to_string(),
                unit_tests: "cargo test",
                source: "src/lib.rs",
            },
            Lang::Python => Steps {
                language: "Python",
                install: format!("pip install componentize-py=={COMPONENTIZE_PY}"),
                unit_tests: "python3 -m unittest",
                source: "policy.py",
            },
            Lang::Js => Steps {
                language: "JavaScript",
                install: "npm install".to_string(),
                unit_tests: "npm test",
                source: "policy.js",
            },
        }
    }

    /// Each command, with what it does.
    fn commands(&self, dir: &str) -> [(String, &'static str); 5] {
        [
            (format!("cd {dir}"), "the project"),
            (self.install.clone(), "the toolchain, once"),
            ("./build.sh".to_string(), "policy.wasm"),
            (self.unit_tests.to_string(), "the unit tests, natively"),
            (
                "essync policy test policy.wasm cases.json".to_string(),
                "the cases, on the component",
            ),
        ]
    }
}

/// A name that is a package name in every language: lowercase letters, digits, `-` and `_`,
/// starting with a letter.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    anyhow::ensure!(
        valid,
        "'{name}' cannot name a policy: use lowercase letters, digits, '-' and '_', starting with a letter"
    );
    Ok(())
}

/// Every file of the project, by path, with its text.
fn files(name: &str, lang: Lang) -> Vec<(String, String)> {
    let type_name: String = name
        .split(['-', '_'])
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", name)
            .replace("{{lib}}", &name.replace('-', "_"))
            .replace("{{type}}", &type_name)
            .replace("{{world_version}}", essync::policy::WORLD_VERSION)
            .replace("{{componentize_py}}", COMPONENTIZE_PY)
            .replace("{{componentize_js}}", COMPONENTIZE_JS)
            .replace("{{example_cases}}", EXAMPLE_CASES.trim_end())
    };
    let templates = match lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
    };
    let mut files: Vec<(String, String)> = templates
        .iter()
        .map(|(path, text)| (path.to_string(), fill(text)))
        .collect();
    files.push(("cases.json".to_string(), CASES.to_string()));
    files.push((
        "wit/policy.wit".to_string(),
        essync::policy::WIT.to_string(),
    ));
    if lang == Lang::Rust {
        let (from, to) = RUST_SDK_WIT_PATH;
        files.push((
            "essync-policy/src/lib.rs".to_string(),
            RUST_SDK.replace(from, to),
        ));
    }
    files
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_steps_come_in_one_order_for_every_language() {
        let order = |lang| -> Vec<String> {
            Steps::of(lang)
                .commands("p")
                .into_iter()
                .map(|(_, what)| what.to_string())
                .collect()
        };
        assert_eq!(order(Lang::Rust), order(Lang::Python));
        assert_eq!(order(Lang::Rust), order(Lang::Js));
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let commands = Steps::of(lang).commands("p");
            assert_eq!(commands[2].0, "./build.sh", "{lang:?}");
            assert!(commands[4].0.starts_with("essync policy test"), "{lang:?}");
        }
    }

    #[test]
    fn names_must_suit_every_language() {
        assert!(check_name("my-policy").is_ok());
        assert!(check_name("p2_merge").is_ok());
        for bad in ["My", "2fast", "a b", "-x", "", "ü"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for (path, text) in files("my-policy", lang) {
                assert!(!text.contains("{{"), "{lang:?} {path} keeps a placeholder");
            }
        }
        let rust = files("my-policy", Lang::Rust);
        let text = |path: &str| {
            rust.iter()
                .find(|(p, _)| p == path)
                .map(|(_, t)| t.clone())
                .unwrap_or_default()
        };
        assert!(text("src/lib.rs").contains("pub struct MyPolicy;"));
        assert!(text("build.sh").contains("release/my_policy.wasm"));
    }

    #[test]
    fn the_rust_sdk_is_written_with_its_wit_path_and_the_workspace_versions() {
        assert!(RUST_SDK.contains(RUST_SDK_WIT_PATH.0));
        // The project's dependencies are the ones this workspace builds the SDK with.
        let workspace = include_str!("../../../../Cargo.toml");
        let sdk = include_str!("templates/rust/sdk-Cargo.toml");
        for dependency in ["serde_json", "wit-bindgen"] {
            let line = |text: &str| {
                text.lines()
                    .find(|l| l.starts_with(&format!("{dependency} =")))
                    .map(str::to_string)
            };
            assert_eq!(line(workspace), line(sdk), "{dependency}");
        }
    }

    #[test]
    fn the_scripts_install_the_toolchain_versions_projects_name() {
        let script = include_str!("../../../../scripts/policy-tools");
        assert!(script.contains(&format!("componentize-py=={COMPONENTIZE_PY}")));
        assert!(script.contains(&format!("componentize-js@{COMPONENTIZE_JS}")));
    }
}
