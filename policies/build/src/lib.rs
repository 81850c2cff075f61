//! Builds policy crates of the essync workspace as WebAssembly components, for the build
//! scripts that need them: essync's (the default policy it embeds) and the test policies'
//! (`policies/testing/artifacts`, the components the tests and benchmarks load).
//!
//! One nested `cargo build --release --target wasm32-wasip2` builds the crates asked for into a
//! target directory under the calling build script's OUT_DIR (the way wasmtime builds its test
//! programs), with none of the outer build's flags, wrappers or profile leaking in.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Rust target policies are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// What the policies share: a change there rebuilds them all.
const SDK: &str = "policies/sdk";

/// Why a build failed, and whether cargo should show the nested build's messages.
pub enum Failure {
    /// One line says it all (a missing target, say).
    Plain(String),
    /// The nested build failed: its messages went to stderr.
    WithLog(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Plain(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::Plain(message.to_string())
    }
}

/// Runs a build script's work and reports a failure the way cargo shows it: one line that says
/// what to do, and for a failed nested build, its messages too.
pub fn run(work: impl FnOnce() -> Result<(), Failure>) {
    match work() {
        Ok(()) => {}
        Err(Failure::Plain(message)) => println!("cargo::error={message}"),
        // Failing the script as well makes cargo show the nested build's messages.
        Err(Failure::WithLog(message)) => {
            println!("cargo::error={message}");
            std::process::exit(1);
        }
    }
}

/// The workspace's root: the folder above the calling crate's that holds `policies/sdk`.
pub fn workspace_root() -> Result<PathBuf, Failure> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    manifest_dir
        .ancestors()
        .find(|dir| dir.join(SDK).is_dir() && dir.join("Cargo.toml").is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| Failure::from("the crate is not inside the essync workspace"))
}

/// Builds the policy crates `packages` (package name and folder, under `root`) and returns the
/// path of each component, in the same order. Tells cargo to run the calling build script
/// again when their sources, the SDK's, the WIT or the workspace's manifests change (editing a
/// cases file or a README rebuilds nothing).
pub fn build(root: &Path, packages: &[(&str, &str)]) -> Result<Vec<PathBuf>, Failure> {
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);
    let mut watched = vec![
        "wit".to_string(),
        "Cargo.toml".to_string(),
        "Cargo.lock".to_string(),
    ];
    for dir in packages.iter().map(|(_, dir)| *dir).chain([SDK]) {
        watched.push(format!("{dir}/src"));
        watched.push(format!("{dir}/Cargo.toml"));
    }
    for path in watched {
        println!("cargo::rerun-if-changed={}", root.join(path).display());
    }

    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    check_wasm_target(&rustc)?;

    let target_dir = out_dir.join("policies");
    let mut cargo = Command::new(env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")));
    cargo
        .arg("build")
        .arg("--release")
        .arg("--locked")
        .arg("--target")
        .arg(WASM_TARGET)
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"));
    for (package, _) in packages {
        cargo.arg("--package").arg(package);
    }
    clear_inherited_env(&mut cargo);
    cargo
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTC", &rustc)
        // Components are shipped, not debugged: without debug info they are ~15x smaller,
        // which is what the binary embeds and what every load compiles.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    let output = cargo
        .output()
        .map_err(|e| format!("cannot run cargo to build the policies: {e}"))?;
    if !output.status.success() {
        // The compiler's messages, for whoever reads the build log, then one line.
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        return Err(Failure::WithLog(format!(
            "building the policy components for {WASM_TARGET} failed ({}): see the messages below",
            output.status
        )));
    }

    let wasm_dir = target_dir.join(WASM_TARGET).join("release");
    packages
        .iter()
        .map(|(package, _)| {
            let path = wasm_dir.join(format!("{}.wasm", package.replace('-', "_")));
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!("the policy build did not produce {}", path.display()).into())
            }
        })
        .collect()
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("cargo did not set {name} for the build script"))
}

/// The missing target is the one failure a newcomer meets: say how to fix it, in one line.
fn check_wasm_target(rustc: &OsString) -> Result<(), String> {
    let missing = || {
        format!(
            "the {WASM_TARGET} Rust target is missing: run `rustup target add {WASM_TARGET}` (or scripts/setup)"
        )
    };
    let output = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    if !output.status.success() {
        return Err(missing());
    }
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if libdir.is_empty() || !Path::new(&libdir).is_dir() {
        return Err(missing());
    }
    Ok(())
}

/// Removes what cargo set for the calling build script (or the user set for the host build)
/// that would leak into the nested build: host flags and wrappers (clippy's, coverage's),
/// target, profile and feature settings. Network, registry and jobserver settings are kept.
fn clear_inherited_env(cargo: &mut Command) {
    const EXACT: &[&str] = &[
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_INCREMENTAL",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_CRATE_NAME",
        "CARGO_RUSTC_CURRENT_DIR",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_LINKER",
        "OUT_DIR",
        "TARGET",
        "HOST",
        "OPT_LEVEL",
        "DEBUG",
        "PROFILE",
        "NUM_JOBS",
    ];
    const PREFIXES: &[&str] = &[
        "CARGO_CFG_",
        "CARGO_FEATURE_",
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_PROFILE_",
        "CARGO_BUILD_",
        "CARGO_LLVM_COV",
        "CARGO_BIN_",
    ];
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if EXACT.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p)) {
            cargo.env_remove(key);
        }
    }
}
