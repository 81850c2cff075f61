//! The sync engine: rounds, checkpoints, decisions.
