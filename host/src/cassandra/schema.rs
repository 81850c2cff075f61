//! The keyspace, the table and its time index: created when missing, checked when present.

use std::collections::HashMap;

use scylla::client::session::Session;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::CassandraError;

/// The columns essync needs, with their CQL types as `system_schema` names them.
const REQUIRED: [(&str, &str); 5] = [
    ("id", "uuid"),
    ("index_", "text"),
    ("type", "text"),
    ("timestamp", "timestamp"),
    ("content", "text"),
];

/// `CREATE TABLE IF NOT EXISTS KEYSPACE.TABLE (COLUMNS)`, with the table's id chosen by essync.
///
/// Cassandra gives a new table a random id. Two processes that create one table at once
/// through different coordinators (two essync processes starting together on a new keyspace)
/// would create it twice, with two ids; the nodes then disagree on the table and refuse its
/// writes until an operator repairs the schema by hand. Every process derives the same id from
/// the table's name, so concurrent creations are one creation.
pub(crate) fn create_table(keyspace: &str, table: &str, columns: &str) -> String {
    let id = table_id(keyspace, table);
    format!("CREATE TABLE IF NOT EXISTS {keyspace}.{table} ({columns}) WITH ID = {id}")
}

/// Waits until the reachable nodes hold one schema version. A table that exists already makes
/// `CREATE TABLE IF NOT EXISTS` a no-op, and the driver waits for no agreement after it; but the
/// table may have just been created by another process, through another node, and not have
/// reached the node that serves the next read yet ("table does not exist"). Bounded by the
/// driver's schema agreement timeout; a cluster that does not agree by then is warned about, and
/// essync goes on.
pub(crate) async fn agree(session: &Session) {
    if let Err(e) = session.await_schema_agreement().await {
        tracing::warn!("the Cassandra nodes do not agree on the schema yet ({e}); going on");
    }
}

/// The id essync gives the table `keyspace.table`: the same from every process, unique per name.
fn table_id(keyspace: &str, table: &str) -> Uuid {
    let name = format!("essync table {keyspace}.{table}").to_ascii_lowercase();
    let hash = Sha256::digest(name.as_bytes());
    let mut bytes = [0; 16];
    bytes.copy_from_slice(&hash[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Checks a keyspace or table name: a plain CQL identifier, used unquoted (so case-folded).
pub fn check_name(what: &'static str, name: &str) -> Result<String, CassandraError> {
    let valid = !name.is_empty()
        && name.len() <= 48
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if valid {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(CassandraError::InvalidName {
            what,
            name: name.to_string(),
        })
    }
}

/// Creates the keyspace when missing. An existing one is left alone: even `CREATE KEYSPACE IF
/// NOT EXISTS` needs the CREATE permission on all keyspaces, which a user limited to its
/// keyspace does not have.
pub(crate) async fn ensure_keyspace(
    session: &Session,
    keyspace: &str,
    replication: &str,
) -> Result<(), CassandraError> {
    let action = format!("to look for keyspace {keyspace}");
    let found = session
        .query_unpaged(
            "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .map_err(|e| CassandraError::execution(&action, &e))?
        .into_rows_result()
        .map_err(|e| CassandraError::protocol(&action, e))?
        .rows_num()
        > 0;
    if found {
        return Ok(());
    }
    let statement =
        format!("CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}");
    session
        .query_unpaged(statement, ())
        .await
        .map_err(|e| CassandraError::execution(format!("to create keyspace {keyspace}"), &e))?;
    Ok(())
}

/// Creates the table when missing, or checks that the existing one has essync's columns.
pub(crate) async fn ensure_table(
    session: &Session,
    keyspace: &str,
    table: &str,
) -> Result<(), CassandraError> {
    let statement = create_table(
        keyspace,
        table,
        "id uuid PRIMARY KEY, index_ varchar, type varchar, timestamp timestamp, content varchar",
    );
    session.query_unpaged(statement, ()).await.map_err(|e| {
        CassandraError::execution(format!("to create table {keyspace}.{table}"), &e)
    })?;
    check_table(session, keyspace, table).await
}

async fn check_table(session: &Session, keyspace: &str, table: &str) -> Result<(), CassandraError> {
    let action = format!("to read the columns of {keyspace}.{table}");
    let rows = session
        .query_unpaged(
            "SELECT column_name, kind, type FROM system_schema.columns \
             WHERE keyspace_name = ? AND table_name = ?",
            (keyspace, table),
        )
        .await
        .map_err(|e| CassandraError::execution(&action, &e))?
        .into_rows_result()
        .map_err(|e| CassandraError::protocol(&action, e))?;
    let columns: HashMap<String, (String, String)> = rows
        .rows::<(String, String, String)>()
        .map_err(|e| CassandraError::protocol(&action, e))?
        .filter_map(Result::ok)
        .map(|(name, kind, cql_type)| (name, (kind, cql_type)))
        .collect();
    let incompatible = |reason: String| CassandraError::IncompatibleTable {
        table: format!("{keyspace}.{table}"),
        reason,
    };
    for (name, wanted) in REQUIRED {
        let Some((kind, cql_type)) = columns.get(name) else {
            return Err(incompatible(format!(
                "it has no column '{name}' ({wanted}); essync needs id uuid PRIMARY KEY, \
                 index_ text, type text, timestamp timestamp, content text"
            )));
        };
        if cql_type != wanted {
            return Err(incompatible(format!(
                "column '{name}' is {cql_type}; essync needs {wanted}"
            )));
        }
        if name == "id" && kind != "partition_key" {
            return Err(incompatible(format!(
                "column 'id' is a {kind} column; essync needs it as the whole primary key"
            )));
        }
        if name != "id" && kind != "regular" {
            return Err(incompatible(format!(
                "column '{name}' is a {kind} column; essync needs a regular column"
            )));
        }
    }
    if let Some((name, (kind, _))) = columns
        .iter()
        .find(|(name, (kind, _))| name.as_str() != "id" && kind != "regular")
    {
        return Err(incompatible(format!(
            "column '{name}' is a {kind} column; essync needs 'id' as the only primary key column"
        )));
    }
    Ok(())
}

/// Creates a storage-attached index on `timestamp` when missing, so recent rows are read by
/// range instead of a scan. Returns whether one is usable (Cassandra 5 has SAI; ScyllaDB and
/// older Cassandra do not, and essync then finds changes by its write-time sweep alone).
pub(crate) async fn ensure_time_index(
    session: &Session,
    keyspace: &str,
    table: &str,
) -> Result<bool, CassandraError> {
    let statement = format!(
        "CREATE INDEX IF NOT EXISTS {table}_essync_timestamp ON {keyspace}.{table} (timestamp) USING 'sai'"
    );
    match session.query_unpaged(statement, ()).await {
        Ok(_) => Ok(true),
        Err(e) => {
            if has_time_index(session, keyspace, table).await? {
                return Ok(true);
            }
            tracing::warn!(
                table = %format!("{keyspace}.{table}"),
                reason = %e,
                "no storage-attached index on 'timestamp'; changes are found by the write-time sweep alone"
            );
            Ok(false)
        }
    }
}

async fn has_time_index(
    session: &Session,
    keyspace: &str,
    table: &str,
) -> Result<bool, CassandraError> {
    let action = format!("to read the indexes of {keyspace}.{table}");
    let rows = session
        .query_unpaged(
            "SELECT options FROM system_schema.indexes WHERE keyspace_name = ? AND table_name = ?",
            (keyspace, table),
        )
        .await
        .map_err(|e| CassandraError::execution(&action, &e))?
        .into_rows_result()
        .map_err(|e| CassandraError::protocol(&action, e))?;
    let found = rows
        .rows::<(HashMap<String, String>,)>()
        .map_err(|e| CassandraError::protocol(&action, e))?
        .filter_map(Result::ok)
        .any(|(options,)| {
            options.get("target").map(String::as_str) == Some("timestamp")
                && options
                    .get("class_name")
                    .is_some_and(|c| c.contains("StorageAttachedIndex"))
        });
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::{check_name, create_table, table_id};

    #[test]
    fn a_table_gets_the_same_id_from_every_process_and_one_per_name() {
        // Pinned: every version of essync must create a table under the same id.
        assert_eq!(
            table_id("ks", "essync_leases").to_string(),
            "ef2ba78b-cd14-8859-b62d-d8fadb0263c6"
        );
        assert_eq!(
            table_id("KS", "Essync_Leases"),
            table_id("ks", "essync_leases")
        );
        assert_ne!(
            table_id("ks", "essync_leases"),
            table_id("ks", "essync_errors")
        );
        assert_ne!(table_id("ks", "a_b"), table_id("ks_a", "b"));
        assert_eq!(
            create_table("ks", "t", "id uuid PRIMARY KEY"),
            format!(
                "CREATE TABLE IF NOT EXISTS ks.t (id uuid PRIMARY KEY) WITH ID = {}",
                table_id("ks", "t")
            )
        );
    }

    #[test]
    fn names_are_plain_identifiers_folded_to_lowercase() {
        assert_eq!(check_name("keyspace", "Shop_1").unwrap(), "shop_1");
        assert!(check_name("table", "1shop").is_err());
        assert!(check_name("table", "sh op").is_err());
        assert!(check_name("table", "").is_err());
        assert!(check_name("table", &"a".repeat(49)).is_err());
    }
}
