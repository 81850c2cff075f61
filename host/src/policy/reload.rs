//! Replacing the policy of a running sync, between two rounds.
//!
//! A [`PolicyReload`] watches one policy file. The sync asks it at every round boundary
//! ([`PolicyReload::check`]) whether there is a new policy: there is when a reload was requested
//! ([`ReloadRequest::trigger`], which essync's SIGHUP handler calls) or, when watching, when the
//! file changed since it was last loaded (its size, modification time or inode). The new
//! component is loaded and checked like at start-up (its world, its imports, one instantiation
//! within the limits); a refused one is logged with its reason and the running policy stays.
//! A refused file is not tried again until it changes or another reload is requested, so a
//! half-copied file costs one refusal in the logs, and the copy's last write brings the reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use super::{Compiled, LoadOptions, Policy, PolicyError, PolicySource};

/// Asks a [`PolicyReload`] to load its file at the next round boundary. Cheap to clone; a
/// signal handler may hold one.
#[derive(Debug, Clone, Default)]
pub struct ReloadRequest(Arc<AtomicBool>);

impl ReloadRequest {
    /// Requests a reload.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

/// What identifies a version of the file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let metadata = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
        #[cfg(not(unix))]
        let inode = 0;
        Some(FileStamp {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            inode,
        })
    }
}

/// Loads a new version of a policy file when asked to, or when it changes.
#[derive(Debug)]
pub struct PolicyReload {
    path: PathBuf,
    options: LoadOptions,
    watch: bool,
    request: ReloadRequest,
    /// The file as it was when last loaded (or refused).
    seen: Option<FileStamp>,
}

impl PolicyReload {
    /// Reloads `path` when requested; also when the file changes if `watch`. The running
    /// policy is taken to be the file as it is now.
    pub fn new(path: impl Into<PathBuf>, options: LoadOptions, watch: bool) -> Self {
        let path = path.into();
        let seen = FileStamp::of(&path);
        PolicyReload {
            path,
            options,
            watch,
            request: ReloadRequest::default(),
            seen,
        }
    }

    /// The handle that requests a reload.
    pub fn request(&self) -> ReloadRequest {
        self.request.clone()
    }

    /// The policy file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// At a round boundary: the new policy, if a reload is due and the new component passed
    /// its checks. `None` when nothing is due, or when the new component was refused (the
    /// reason is logged; the caller keeps its policy).
    pub async fn check(&mut self) -> Option<Policy> {
        let requested = self.request.take();
        let stamp = FileStamp::of(&self.path);
        let changed = self.watch && stamp.is_some() && stamp != self.seen;
        if !requested && !changed {
            return None;
        }
        self.seen = stamp;
        let why = if requested {
            "reload requested"
        } else {
            "the file changed"
        };
        tracing::info!("{why}: loading the policy {}", self.path.display());
        let source = PolicySource::File(self.path.clone());
        let options = self.options.clone();
        // Compiling takes CPU time (seconds for a large component): off the async threads.
        let loaded = tokio::task::spawn_blocking(move || {
            let policy = Policy::load(&source, &options)?;
            policy.probe()?;
            Ok::<_, PolicyError>(policy)
        })
        .await;
        match loaded {
            Ok(Ok(policy)) => {
                let compiled = match policy.compiled() {
                    Compiled::FromCache => "from the compile cache".to_string(),
                    Compiled::Fresh { .. } => {
                        format!("compiled in {:.2}s", policy.load_time().as_secs_f64())
                    }
                };
                tracing::info!(
                    "policy reloaded: {} (world essync:policy@{}, {compiled}); the next round uses it",
                    policy.name(),
                    policy.world_version()
                );
                Some(policy)
            }
            Ok(Err(e)) => {
                tracing::error!("the new policy is refused, the running one stays: {e}");
                None
            }
            Err(e) => {
                tracing::error!("the new policy could not be loaded, the running one stays: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("essync-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        dir.join(name)
    }

    use essync_test_policies as components;

    fn policy_bytes() -> Vec<u8> {
        std::fs::read(components::PREFER_CASSANDRA).expect("the built prefer-cassandra policy")
    }

    #[tokio::test]
    async fn nothing_is_loaded_unless_requested_or_changed() {
        let path = scratch("quiet.wasm");
        std::fs::write(&path, policy_bytes()).expect("write");
        let mut reload = PolicyReload::new(&path, LoadOptions::default(), true);
        assert!(reload.check().await.is_none());
        reload.request().trigger();
        let policy = reload
            .check()
            .await
            .expect("a requested reload loads the file");
        assert_eq!(policy.world_version(), crate::policy::WORLD_VERSION);
        assert!(reload.check().await.is_none(), "a request is used once");
    }

    #[tokio::test]
    async fn a_changed_file_is_loaded_when_watched_and_a_broken_one_is_refused_once() {
        let path = scratch("watched.wasm");
        std::fs::write(&path, policy_bytes()).expect("write");
        let mut watched = PolicyReload::new(&path, LoadOptions::default(), true);
        let mut unwatched = PolicyReload::new(&path, LoadOptions::default(), false);
        std::fs::write(&path, "not a policy").expect("write");
        assert!(unwatched.check().await.is_none(), "not watched: no reload");
        assert!(
            watched.check().await.is_none(),
            "a component that is no policy is refused"
        );
        assert!(
            watched.check().await.is_none(),
            "and not tried again until it changes"
        );
        std::fs::write(&path, policy_bytes()).expect("write");
        assert!(watched.check().await.is_some(), "the fixed file is loaded");
    }

    #[tokio::test]
    async fn a_missing_file_is_refused_on_request() {
        let mut reload = PolicyReload::new(scratch("missing.wasm"), LoadOptions::default(), true);
        reload.request().trigger();
        assert!(reload.check().await.is_none());
    }
}
