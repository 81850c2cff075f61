//! The ledger's size on disk: essync's ledger of a table, flushed from Cassandra's memtables,
//! its SSTables' files (every component) over its rows.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, ensure};
use uuid::Uuid;

use crate::servers::Servers;
use crate::stores::Cql;

/// What the ledger of one table takes on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerSize {
    /// The ledger's tables (today one, `essync_synced_TABLE`).
    pub tables: Vec<String>,
    /// Bytes of their SSTables.
    pub bytes: u64,
    /// Their rows.
    pub rows: u64,
}

impl LedgerSize {
    /// Bytes per row, when there are rows.
    pub fn bytes_per_row(&self) -> Option<f64> {
        (self.rows > 0).then(|| self.bytes as f64 / self.rows as f64)
    }
}

/// Flushes the ledger tables of `table` to disk and measures them.
pub async fn measure(servers: &Servers, cql: &Cql, table: &str) -> anyhow::Result<LedgerSize> {
    let tables = cql.ledger_tables(table).await?;
    ensure!(
        !tables.is_empty(),
        "no ledger table of {} in system_schema.tables",
        cql.qualified(table)
    );
    let names: Vec<String> = tables.iter().map(|(name, _)| name.clone()).collect();
    servers.flush_cassandra(cql.keyspace(), &names).await?;
    let directories = cql.data_directories().await?;
    ensure!(
        !directories.is_empty(),
        "Cassandra names no data_file_directories"
    );
    let mut size = LedgerSize {
        tables: names,
        bytes: 0,
        rows: 0,
    };
    for (name, id) in &tables {
        size.bytes += sstable_bytes(&directories, cql.keyspace(), name, *id)?;
        size.rows += cql.count_rows(name).await?;
    }
    Ok(size)
}

/// The size of the files of `keyspace.table` (its SSTables' components) in Cassandra's data
/// directories: `DIRECTORY/KEYSPACE/TABLE-ID`, without its `snapshots` and `backups`.
fn sstable_bytes(
    directories: &[PathBuf],
    keyspace: &str,
    table: &str,
    id: Uuid,
) -> anyhow::Result<u64> {
    let folder = format!("{table}-{}", id.simple());
    let mut found = false;
    let mut bytes = 0;
    for directory in directories {
        let path = directory.join(keyspace).join(&folder);
        if !path.is_dir() {
            continue;
        }
        found = true;
        bytes += files_bytes(&path)?;
    }
    ensure!(
        found,
        "no folder {keyspace}/{folder} in Cassandra's data directories ({})",
        directories
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(bytes)
}

/// The size of the regular files directly in `folder`.
fn files_bytes(folder: &Path) -> anyhow::Result<u64> {
    let mut bytes = 0;
    for entry in
        std::fs::read_dir(folder).with_context(|| format!("cannot read {}", folder.display()))?
    {
        let metadata = entry?.metadata()?;
        if metadata.is_file() {
            bytes += metadata.len();
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tables_folder_is_summed_without_its_subfolders() {
        let root = std::env::temp_dir().join(format!("essync-bench-ledger-{}", std::process::id()));
        let id = Uuid::from_u128(0x1234);
        let folder = root.join("ks").join(format!("t-{}", id.simple()));
        std::fs::create_dir_all(folder.join("snapshots")).expect("folders");
        std::fs::write(folder.join("nb-1-big-Data.db"), [0u8; 100]).expect("a file");
        std::fs::write(folder.join("nb-1-big-Index.db"), [0u8; 20]).expect("a file");
        std::fs::write(folder.join("snapshots").join("old"), [0u8; 999]).expect("a file");
        let bytes = sstable_bytes(std::slice::from_ref(&root), "ks", "t", id);
        let missing = sstable_bytes(std::slice::from_ref(&root), "ks", "u", id);
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(bytes.expect("the folder's size"), 120);
        assert!(missing.is_err());
    }

    #[test]
    fn bytes_per_row_needs_rows() {
        let size = LedgerSize {
            tables: vec!["essync_synced_t".into()],
            bytes: 1000,
            rows: 8,
        };
        assert_eq!(size.bytes_per_row(), Some(125.0));
        assert_eq!(LedgerSize { rows: 0, ..size }.bytes_per_row(), None);
    }
}
