//! Shared by policy crates.
