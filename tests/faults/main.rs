//! The slower test group: faults injected into a real essync and real servers, and a soak.
//!
//! The tests here kill essync, and stop and freeze servers of their own (see [`outage`]), so
//! they run one at a time ([`serial`]), and cargo runs this binary apart from the main suite
//! (`tests/all`). `scripts/test` runs it with the rest.

// The support of the main suite, shared: not every helper of it is used here.
#[allow(dead_code, unused_imports)]
#[path = "../all/support/mod.rs"]
mod support;

mod cluster;
mod freeze;
mod kill;
mod lease;
mod model;
mod outage;
mod rolling;
mod soak;

/// One fault test at a time.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}
