//! The ledgers of earlier versions, copied once into a sync's ledger at its first start: each
//! kept the whole synced document of every id, with the sync's name in every row, first in one
//! table for every sync of the keyspace (`essync_ledger`), then in one per sync
//! (`essync_ledger_TABLE`). The copy keeps what identifies each synced version (and its
//! content, when the policy merges from it), then marks the ledger as copied; an interrupted
//! copy is made again at the next start, before any sync work. The earlier tables are left as
//! they are: essync says when they can be dropped.

use futures::StreamExt;
use scylla::value::CqlTimestamp;
use uuid::Uuid;

use super::{Ledger, Record, Synced, SyncedVersion};
use crate::cassandra::CassandraError;
use crate::cassandra::cql::Cql;

/// The table that held the ledgers of every sync of a keyspace in the earliest versions, and
/// the prefix of the per-sync tables that followed (`essync_ledger_TABLE`).
pub const LEGACY_LEDGER_TABLE: &str = "essync_ledger";

/// Rows per page and per burst of writes while copying.
const COPY_PAGE: usize = 1000;

/// A row of an earlier ledger.
type LegacyRow = (
    String,
    Uuid,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

/// Copies this sync's entries from the newest earlier ledger that exists into `ledger`, then
/// marks the copy made. Returns how many entries were copied.
pub(super) async fn copy(
    ledger: &Ledger,
    keyspace: &str,
    sync: &str,
) -> Result<u64, CassandraError> {
    let per_sync = super::named(&format!("{LEGACY_LEDGER_TABLE}_"), sync);
    let source = if table_exists(&ledger.cql, keyspace, &per_sync).await? {
        per_sync
    } else if table_exists(&ledger.cql, keyspace, LEGACY_LEDGER_TABLE).await? {
        LEGACY_LEDGER_TABLE.to_string()
    } else {
        return ledger.mark_copied().await.map(|()| 0);
    };
    let source = format!("{keyspace}.{source}");
    tracing::info!(
        "copying the entries of {sync} from {source} (an earlier version's ledger) to {} (once)",
        ledger.table
    );
    let action = format!("to copy {source}");
    let mut select = ledger
        .cql
        .prepare(
            "ledger_copy",
            format!(
                "SELECT sync, id, digest, index_, type, timestamp, content, es_seq_no, \
                 es_primary_term, cassandra_written_at, pending, seen_es, seen_cassandra \
                 FROM {source}"
            ),
            &action,
        )
        .await?;
    select.set_page_size(COPY_PAGE as i32);
    let mut rows = ledger
        .cql
        .iter(select, (), &action)
        .await?
        .rows_stream::<LegacyRow>()
        .map_err(|e| CassandraError::protocol(&action, e))?;
    let mut copied = 0_u64;
    let mut page = Vec::with_capacity(COPY_PAGE);
    while let Some(row) = rows.next().await {
        let row = row.map_err(|e| CassandraError::protocol(&action, e))?;
        if row.0 != sync {
            continue;
        }
        page.push(row);
        if page.len() == COPY_PAGE {
            copied += write_page(ledger, &mut page).await?;
        }
    }
    copied += write_page(ledger, &mut page).await?;
    ledger.mark_copied().await?;
    tracing::info!(
        "copied {copied} ledger entries of {sync} to {}; {source} can be dropped once every \
         sync of the keyspace runs this version",
        ledger.table
    );
    Ok(copied)
}

/// Writes the entries of a page of earlier rows (taken out of `page`); returns how many.
async fn write_page(ledger: &Ledger, page: &mut Vec<LegacyRow>) -> Result<u64, CassandraError> {
    let mut records = Vec::with_capacity(page.len());
    let mut intents = Vec::new();
    for row in page.drain(..) {
        let (_, id, digest, index, doc_type, timestamp, content, seq_no, term, written_at, a, b, c) =
            row;
        let entry = super::entry_of((
            id,
            digest,
            index,
            doc_type.clone(),
            timestamp,
            seq_no,
            term,
            written_at,
            a,
            b,
            c,
        ));
        let Some(entry) = entry else { continue };
        if let Some(intent) = entry.intent {
            intents.push((id, intent));
        }
        if let Some(base) = entry.base {
            records.push(record_of(id, base, content));
        }
    }
    let count = (records.len() + intents.len()) as u64;
    ledger.record(&records).await?;
    // After the records, which would clear them.
    ledger.intend(&intents).await?;
    Ok(count)
}

/// The record of an earlier entry: what identifies its synced version, and its content when
/// the earlier ledger had it (kept if the policy merges).
fn record_of(id: Uuid, base: Synced, content: Option<String>) -> Record {
    let content = content.filter(|text| {
        serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.is_object())
    });
    Record {
        id,
        version: SyncedVersion {
            digest: base.digest,
            index: base.index,
            doc_type: base.doc_type,
            timestamp: Some(base.timestamp),
            content,
        },
        elasticsearch: base.elasticsearch,
        cassandra_written_at: base.cassandra_written_at,
        clears_intent: false,
    }
}

/// Whether `keyspace.table` exists.
pub(super) async fn table_exists(
    cql: &Cql,
    keyspace: &str,
    table: &str,
) -> Result<bool, CassandraError> {
    let action = format!("to look for {keyspace}.{table}");
    let rows = cql
        .query(
            "schema",
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?",
            (keyspace, table),
            &action,
        )
        .await?
        .into_rows_result()
        .map_err(|e| CassandraError::protocol(&action, e))?;
    Ok(rows.rows_num() > 0)
}
