//! The policy runtime: runs filtering and conflict resolution components.
