//! Compiled policies kept on disk between runs.
//!
//! Compiling a component is most of what loading a policy costs: milliseconds for a Rust
//! policy, seconds for a Python or JavaScript one (10-20 MB, most of it the language's
//! runtime). wasmtime's compilation cache keeps the machine code on disk, keyed by a hash of
//! the component's bytes, of the engine's settings (the sandbox's, epoch interruption
//! included) and of wasmtime's version, so a later load of the same component by the same
//! essync reads it back instead of compiling it again. A changed component, or another essync
//! version, is compiled afresh and kept beside.
//!
//! Several processes may share one directory: entries are written to a new file and renamed
//! into place, so a reader sees a whole entry or none, and one that cannot be read is compiled
//! again. wasmtime trims the directory in the background (5 GiB or 65,536 files at most).

use std::path::{Path, PathBuf};

use wasmtime::{Cache, CacheConfig};

/// Where compiled policies are kept between runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CompileCache {
    /// Compile the component at every load.
    #[default]
    Off,
    /// Keep compiled code in this directory (created when missing).
    Dir(PathBuf),
}

impl CompileCache {
    /// The default location: `$XDG_CACHE_HOME/essync/policies`, or `~/.cache/essync/policies`
    /// when `XDG_CACHE_HOME` is not set; `Off` when neither says where.
    pub fn default_location() -> CompileCache {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|dir| dir.is_absolute())
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .filter(|home| home.is_absolute())
                    .map(|home| home.join(".cache"))
            });
        match base {
            Some(base) => CompileCache::Dir(base.join("essync").join("policies")),
            None => CompileCache::Off,
        }
    }

    /// The directory, if the cache is on.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            CompileCache::Off => None,
            CompileCache::Dir(dir) => Some(dir),
        }
    }

    /// A cache for one engine, or `None` (compile every time) when it is off or its directory
    /// cannot be used: a cache that does not work costs time, never a load, so that is a
    /// warning.
    pub(super) fn open(&self) -> Option<Cache> {
        let dir = self.dir()?;
        let dir = match std::path::absolute(dir) {
            Ok(dir) => dir,
            Err(e) => {
                tracing::warn!(
                    "the policy compile cache {} cannot be used ({e}); compiling without it",
                    dir.display()
                );
                return None;
            }
        };
        let mut config = CacheConfig::new();
        config.with_directory(&dir);
        match Cache::new(config) {
            Ok(cache) => Some(cache),
            Err(e) => {
                tracing::warn!(
                    "the policy compile cache {} cannot be used ({}); compiling without it",
                    dir.display(),
                    super::one_line(&e)
                );
                None
            }
        }
    }
}

/// How a policy's compiled code was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compiled {
    /// Compiled at this load; kept in the cache if there is one.
    Fresh {
        /// Whether the compiled code went to the compile cache.
        cached: bool,
    },
    /// Read back from the compile cache.
    FromCache,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_location_is_under_the_user_cache_directory() {
        // Only checks the shape: the variables belong to the whole test process.
        match CompileCache::default_location() {
            CompileCache::Dir(dir) => assert!(dir.ends_with("essync/policies"), "{dir:?}"),
            CompileCache::Off => assert!(
                std::env::var_os("HOME").is_none() && std::env::var_os("XDG_CACHE_HOME").is_none()
            ),
        }
    }

    #[test]
    fn an_unusable_directory_means_no_cache_not_a_failure() {
        let file = std::env::temp_dir().join(format!("essync-cache-file-{}", std::process::id()));
        std::fs::write(&file, "a file, not a directory").expect("a scratch file");
        assert!(CompileCache::Dir(file.join("sub")).open().is_none());
        assert!(CompileCache::Off.open().is_none());
        let _ = std::fs::remove_file(file);
    }
}
