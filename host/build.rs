//! Builds the default policy (`policies/last-write-wins`) for `wasm32-wasip2`, so that the
//! binary can embed it: `ESSYNC_BUILTIN_POLICY` (a `rustc-env`) is the path of its component,
//! which `policy::Policy::builtin` embeds with `include_bytes!`.
//!
//! Only the default policy is built here, so a release build builds nothing else. The other
//! policies, which only the tests and benchmarks load, are built by the dev-dependency
//! `essync-test-policies` (`policies/testing/artifacts`).

use essync_policy_build::{Failure, build, run, workspace_root};

fn main() {
    run(|| {
        let root = workspace_root()?;
        let built = build(&root, &[("last-write-wins", "policies/last-write-wins")])?;
        let builtin = built
            .first()
            .ok_or_else(|| Failure::from("the default policy was not built"))?;
        println!(
            "cargo::rustc-env=ESSYNC_BUILTIN_POLICY={}",
            builtin.display()
        );
        Ok(())
    });
}
