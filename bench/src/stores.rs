//! Plain clients for both stores, the same crates essync uses (`elasticsearch`, `scylla`),
//! used the way a program that writes and reads as fast as it can would use them: the raw
//! limit, the benchmark's data, the changes and the lag writers all go through here, never
//! through essync.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use elasticsearch::Elasticsearch;
use elasticsearch::http::Method;
use elasticsearch::http::Url;
use elasticsearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use futures::{StreamExt as _, TryStreamExt as _};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::data::{DOC_TYPE, Doc};

/// How documents are bulk-written to Elasticsearch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EsWrites {
    /// Documents per bulk request.
    pub batch: usize,
    /// Bulk requests in flight.
    pub concurrency: usize,
}

/// How Elasticsearch is read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EsReads {
    /// Hits per scroll page.
    pub page: usize,
    /// Scroll slices read at once.
    pub slices: usize,
}

/// How rows are written to Cassandra.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqlWrites {
    /// Rows per unlogged batch (1: single prepared INSERTs).
    pub batch: usize,
    /// Requests in flight.
    pub concurrency: usize,
}

/// How Cassandra is read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqlReads {
    /// Rows per page.
    pub page: i32,
    /// Token ranges read at once.
    pub ranges: usize,
}

impl std::fmt::Display for EsWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bulk {} docs x {} in flight",
            self.batch, self.concurrency
        )
    }
}

impl std::fmt::Display for EsReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "scroll pages of {} x {} slices", self.page, self.slices)
    }
}

impl std::fmt::Display for CqlWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.batch == 1 {
            write!(f, "prepared INSERT x {} in flight", self.concurrency)
        } else {
            write!(
                f,
                "unlogged batches of {} x {} in flight",
                self.batch, self.concurrency
            )
        }
    }
}

impl std::fmt::Display for CqlReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pages of {} x {} token ranges", self.page, self.ranges)
    }
}

/// A plain Elasticsearch client.
#[derive(Clone)]
pub struct Es {
    client: Elasticsearch,
    url: String,
}

impl Es {
    /// A client of the node at `url`.
    pub fn connect(url: &str) -> anyhow::Result<Es> {
        let parsed = Url::parse(url).with_context(|| format!("bad Elasticsearch URL {url}"))?;
        let transport = TransportBuilder::new(SingleNodeConnectionPool::new(parsed))
            .disable_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .context("cannot build the Elasticsearch client")?;
        Ok(Es {
            client: Elasticsearch::new(transport),
            url: url.to_string(),
        })
    }

    /// Sends a request; an answer other than 2xx is an error naming the request.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Bytes>,
        content_type: &'static str,
    ) -> anyhow::Result<Value> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let query = if query.is_empty() { None } else { Some(query) };
        let response = self
            .client
            .send(method, path, headers, query, body, None)
            .await
            .with_context(|| format!("Elasticsearch at {} did not answer {path}", self.url))?;
        let status = response.status_code().as_u16();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("the answer to {path} broke off"))?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .with_context(|| format!("the answer to {path} is not JSON"))?
        };
        if !(200..300).contains(&status) {
            bail!(
                "Elasticsearch answered {path} with HTTP {status}: {}",
                value
                    .pointer("/error/reason")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
            );
        }
        Ok(value)
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let body = body.map(|b| Bytes::from(b.to_string()));
        self.send(method, path, query, body, "application/json")
            .await
    }

    /// Creates `index` anew (deleting an earlier one), mapped as essync maps the indices it
    /// creates (`_essync.type` a keyword, `_essync.timestamp` a date).
    pub async fn create_index(&self, index: &str) -> anyhow::Result<()> {
        self.create_index_with(index, json!({})).await
    }

    /// [`Es::create_index`] with these index `settings`.
    pub async fn create_index_with(&self, index: &str, settings: Value) -> anyhow::Result<()> {
        self.delete_indices(index).await?;
        let body = json!({"settings": settings, "mappings": {"properties": {"_essync": {"properties": {
            "type": {"type": "keyword"},
            "timestamp": {"type": "date", "format": "strict_date_optional_time||epoch_millis"}
        }}}}});
        self.json(Method::Put, &format!("/{index}"), &[], Some(&body))
            .await
            .with_context(|| format!("cannot create the index {index}"))?;
        Ok(())
    }

    /// Deletes the indices `names` (comma-separated, no wildcards), those that exist.
    pub async fn delete_indices(&self, names: &str) -> anyhow::Result<()> {
        self.json(
            Method::Delete,
            &format!("/{names}"),
            &[("ignore_unavailable", "true"), ("allow_no_indices", "true")],
            None,
        )
        .await
        .with_context(|| format!("cannot delete the indices {names}"))?;
        Ok(())
    }

    /// Makes everything written to `index` searchable.
    pub async fn refresh(&self, index: &str) -> anyhow::Result<()> {
        self.json(Method::Post, &format!("/{index}/_refresh"), &[], None)
            .await?;
        Ok(())
    }

    /// Waits (up to a minute) until every shard copy of `index` has its global checkpoint at
    /// its last operation: only then does everything written count as processed on every copy,
    /// which is what essync's change feed reads up to. Data a user backfills has long been
    /// there; right after a bulk load the global checkpoint may still lag behind.
    pub async fn settle(&self, index: &str) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let stats = self
                .json(
                    Method::Get,
                    &format!("/{index}/_stats"),
                    &[
                        ("level", "shards"),
                        ("filter_path", "indices.*.shards.*.seq_no"),
                    ],
                    None,
                )
                .await?;
            let copies: Vec<&Value> = stats
                .pointer(&format!("/indices/{index}/shards"))
                .and_then(Value::as_object)
                .map(|shards| {
                    shards
                        .values()
                        .filter_map(Value::as_array)
                        .flatten()
                        .filter_map(|copy| copy.get("seq_no"))
                        .collect()
                })
                .unwrap_or_default();
            let settled = !copies.is_empty()
                && copies
                    .iter()
                    .all(|s| s.get("global_checkpoint") == s.get("max_seq_no"));
            if settled {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("the global checkpoint of {index} did not reach its last write in 60 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The bulk request bodies that index `docs`, `batch` documents each (built before the
    /// clock starts: the limit is the server's, not the serializer's).
    pub fn bulk_bodies(docs: &[Doc], batch: usize) -> Vec<Bytes> {
        docs.chunks(batch.max(1))
            .map(|chunk| {
                let mut body = String::with_capacity(chunk.len() * 1200);
                for doc in chunk {
                    body.push_str(&format!("{{\"index\":{{\"_id\":\"{}\"}}}}\n", doc.id));
                    body.push_str(&doc.es_source());
                    body.push('\n');
                }
                Bytes::from(body)
            })
            .collect()
    }

    /// Sends bulk `bodies` to `index`, `concurrency` at a time, then refreshes the index (the
    /// documents count as written once searchable). Any item error fails the whole.
    pub async fn bulk_write(
        &self,
        index: &str,
        bodies: Vec<Bytes>,
        concurrency: usize,
    ) -> anyhow::Result<()> {
        let path = format!("/{index}/_bulk");
        let failed: usize = futures::stream::iter(bodies)
            .map(|body| {
                let path = &path;
                async move {
                    let answer = self
                        .send(
                            Method::Post,
                            path,
                            &[("filter_path", "errors,items.*.error")],
                            Some(body),
                            "application/x-ndjson",
                        )
                        .await?;
                    let errors = answer
                        .get("items")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    anyhow::Ok(errors)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .try_fold(0, |sum, errors| async move { Ok(sum + errors) })
            .await?;
        if failed > 0 {
            bail!("{failed} documents were refused by the bulk writes to {index}");
        }
        self.refresh(index).await
    }

    /// Reads every document of `index` (scroll, sorted by `_doc`); returns how many.
    pub async fn read_all(&self, index: &str, reads: EsReads) -> anyhow::Result<usize> {
        let slices = reads.slices.max(1);
        let counts: Vec<usize> = futures::future::try_join_all(
            (0..slices).map(|slice| self.read_slice(index, reads.page, slice, slices)),
        )
        .await?;
        Ok(counts.iter().sum())
    }

    async fn read_slice(
        &self,
        index: &str,
        page: usize,
        slice: usize,
        slices: usize,
    ) -> anyhow::Result<usize> {
        let mut body = json!({"size": page, "sort": ["_doc"]});
        if slices > 1 {
            body["slice"] = json!({"id": slice, "max": slices});
        }
        let mut answer = self
            .json(
                Method::Post,
                &format!("/{index}/_search"),
                &[("scroll", "1m")],
                Some(&body),
            )
            .await?;
        let mut read = 0;
        loop {
            let hits = answer
                .pointer("/hits/hits")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            read += hits;
            let Some(scroll_id) = answer.get("_scroll_id").and_then(Value::as_str) else {
                bail!("a scroll of {index} came back without a scroll id");
            };
            let scroll_id = scroll_id.to_string();
            if hits == 0 {
                self.json(
                    Method::Delete,
                    "/_search/scroll",
                    &[],
                    Some(&json!({"scroll_id": [scroll_id]})),
                )
                .await?;
                return Ok(read);
            }
            answer = self
                .json(
                    Method::Post,
                    "/_search/scroll",
                    &[],
                    Some(&json!({"scroll": "1m", "scroll_id": scroll_id})),
                )
                .await?;
        }
    }

    /// Indexes one document (as an application does: one request, no refresh).
    pub async fn index_one(&self, doc: &Doc) -> anyhow::Result<()> {
        self.send(
            Method::Put,
            &format!("/{}/_doc/{}", doc.index, doc.id),
            &[],
            Some(Bytes::from(doc.es_source())),
            "application/json",
        )
        .await?;
        Ok(())
    }

    /// Which of `ids` `index` holds now (a real-time multi-get, without sources).
    pub async fn found(&self, index: &str, ids: &[Uuid]) -> anyhow::Result<Vec<Uuid>> {
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let answer = self
            .json(
                Method::Post,
                &format!("/{index}/_mget"),
                &[("_source", "false")],
                Some(&json!({ "ids": ids })),
            )
            .await?;
        Ok(answer
            .get("docs")
            .and_then(Value::as_array)
            .map(|docs| {
                docs.iter()
                    .filter(|d| d.get("found").and_then(Value::as_bool) == Some(true))
                    .filter_map(|d| d.get("_id").and_then(Value::as_str))
                    .filter_map(|id| Uuid::parse_str(id).ok())
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// A plain Cassandra client on one keyspace.
pub struct Cql {
    session: Session,
    keyspace: String,
}

impl Cql {
    /// Connects to `node` and creates `keyspace` when missing.
    pub async fn connect(node: &str, keyspace: &str) -> anyhow::Result<Cql> {
        let session = SessionBuilder::new()
            .known_node(node)
            .connection_timeout(Duration::from_secs(10))
            .build()
            .await
            .with_context(|| format!("Cassandra is not reachable at {node}"))?;
        session
            .query_unpaged(
                format!(
                    "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
                     {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
                ),
                (),
            )
            .await
            .with_context(|| format!("cannot create the keyspace {keyspace}"))?;
        Ok(Cql {
            session,
            keyspace: keyspace.to_string(),
        })
    }

    /// The keyspace.
    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    /// `keyspace.table`.
    pub fn qualified(&self, table: &str) -> String {
        format!("{}.{table}", self.keyspace)
    }

    /// Creates `table` anew with essync's columns (dropping an earlier one).
    pub async fn create_table(&self, table: &str) -> anyhow::Result<()> {
        self.drop_table(table).await?;
        self.session
            .query_unpaged(
                format!(
                    "CREATE TABLE {} (id uuid PRIMARY KEY, index_ varchar, type varchar, \
                     timestamp timestamp, content varchar)",
                    self.qualified(table)
                ),
                (),
            )
            .await
            .with_context(|| format!("cannot create the table {}", self.qualified(table)))?;
        Ok(())
    }

    /// Drops `table` if it exists.
    pub async fn drop_table(&self, table: &str) -> anyhow::Result<()> {
        self.session
            .query_unpaged(
                format!("DROP TABLE IF EXISTS {}", self.qualified(table)),
                (),
            )
            .await
            .with_context(|| format!("cannot drop the table {}", self.qualified(table)))?;
        Ok(())
    }

    async fn prepare(&self, cql: String) -> anyhow::Result<PreparedStatement> {
        self.session
            .prepare(cql.clone())
            .await
            .with_context(|| format!("cannot prepare {cql}"))
    }

    /// The plain INSERT of a whole row into `table`.
    pub async fn insert(&self, table: &str) -> anyhow::Result<PreparedStatement> {
        self.prepare(format!(
            "INSERT INTO {} (id, index_, type, timestamp, content) VALUES (?, ?, ?, ?, ?)",
            self.qualified(table)
        ))
        .await
    }

    /// Writes `docs` with `insert` as `writes` says.
    pub async fn write(
        &self,
        insert: &PreparedStatement,
        docs: &[Doc],
        writes: CqlWrites,
    ) -> anyhow::Result<()> {
        let concurrency = writes.concurrency.max(1);
        if writes.batch <= 1 {
            futures::stream::iter(docs)
                .map(|doc| async move {
                    self.session
                        .execute_unpaged(insert, row(doc))
                        .await
                        .map(|_| ())
                })
                .buffer_unordered(concurrency)
                .try_collect::<()>()
                .await
                .context("a Cassandra INSERT failed")?;
            return Ok(());
        }
        let batch_of = |n: usize| {
            let mut batch = Batch::new(BatchType::Unlogged);
            for _ in 0..n {
                batch.append_statement(insert.clone());
            }
            batch
        };
        let full = batch_of(writes.batch);
        let last = batch_of(docs.len() % writes.batch);
        futures::stream::iter(docs.chunks(writes.batch))
            .map(|chunk| {
                let batch = if chunk.len() == writes.batch {
                    &full
                } else {
                    &last
                };
                async move {
                    let rows: Vec<_> = chunk.iter().map(row).collect();
                    self.session.batch(batch, rows).await.map(|_| ())
                }
            })
            .buffer_unordered(concurrency)
            .try_collect::<()>()
            .await
            .context("a Cassandra batch failed")?;
        Ok(())
    }

    /// Writes one row (as an application does).
    pub async fn write_one(&self, insert: &PreparedStatement, doc: &Doc) -> anyhow::Result<()> {
        self.session
            .execute_unpaged(insert, row(doc))
            .await
            .context("a Cassandra INSERT failed")?;
        Ok(())
    }

    /// Reads every row of `table` with its content; returns how many.
    pub async fn read_all(&self, table: &str, reads: CqlReads) -> anyhow::Result<usize> {
        let mut select = self
            .prepare(format!(
                "SELECT id, index_, type, timestamp, content FROM {} \
                 WHERE token(id) >= ? AND token(id) <= ?",
                self.qualified(table)
            ))
            .await?;
        select.set_page_size(reads.page.max(1));
        let counts = futures::future::try_join_all(token_ranges(reads.ranges).into_iter().map(
            |(low, high)| {
                let select = select.clone();
                async move {
                    type Row = (
                        Uuid,
                        Option<String>,
                        Option<String>,
                        Option<CqlTimestamp>,
                        Option<String>,
                    );
                    let mut rows = self
                        .session
                        .execute_iter(select, (low, high))
                        .await?
                        .rows_stream::<Row>()?;
                    let mut read = 0usize;
                    while let Some(row) = rows.try_next().await? {
                        read += usize::from(row.4.is_some());
                    }
                    anyhow::Ok(read)
                }
            },
        ))
        .await
        .with_context(|| format!("cannot read {}", self.qualified(table)))?;
        Ok(counts.iter().sum())
    }

    /// The tables of the keyspace that hold essync's ledger of `table` (see [`is_ledger_of`]),
    /// read from `system_schema.tables`, with their ids.
    pub async fn ledger_tables(&self, table: &str) -> anyhow::Result<Vec<(String, Uuid)>> {
        let rows = self
            .session
            .query_unpaged(
                "SELECT table_name, id FROM system_schema.tables WHERE keyspace_name = ?",
                (&self.keyspace,),
            )
            .await
            .with_context(|| format!("cannot list the tables of {}", self.keyspace))?
            .into_rows_result()?;
        let mut tables = Vec::new();
        for row in rows.rows::<(String, Uuid)>()? {
            let (name, id) = row?;
            if is_ledger_of(&name, table) {
                tables.push((name, id));
            }
        }
        Ok(tables)
    }

    /// Rows of `table` (`SELECT COUNT(*)`).
    pub async fn count_rows(&self, table: &str) -> anyhow::Result<u64> {
        let mut count = scylla::statement::unprepared::Statement::new(format!(
            "SELECT COUNT(*) FROM {}",
            self.qualified(table)
        ));
        count.set_request_timeout(Some(Duration::from_secs(120)));
        let (rows,) = self
            .session
            .query_unpaged(count, ())
            .await
            .with_context(|| format!("cannot count the rows of {}", self.qualified(table)))?
            .into_rows_result()?
            .single_row::<(i64,)>()?;
        Ok(rows.max(0) as u64)
    }

    /// The server's data directories (`data_file_directories`, from `system_views.settings`).
    pub async fn data_directories(&self) -> anyhow::Result<Vec<PathBuf>> {
        let rows = self
            .session
            .query_unpaged(
                "SELECT value FROM system_views.settings WHERE name = 'data_file_directories'",
                (),
            )
            .await
            .context("cannot read Cassandra's data_file_directories")?
            .into_rows_result()?;
        let (value,) = rows.single_row::<(Option<String>,)>()?;
        let value = value.unwrap_or_default();
        Ok(value
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect())
    }

    /// `SELECT id ... WHERE id IN ?` on `table`.
    pub async fn select_ids(&self, table: &str) -> anyhow::Result<PreparedStatement> {
        self.prepare(format!(
            "SELECT id FROM {} WHERE id IN ?",
            self.qualified(table)
        ))
        .await
    }

    /// Which of `ids` the table of `select` (from [`Cql::select_ids`]) holds now.
    pub async fn found(
        &self,
        select: &PreparedStatement,
        ids: &[Uuid],
    ) -> anyhow::Result<Vec<Uuid>> {
        let rows = self
            .session
            .execute_unpaged(select, (ids,))
            .await
            .context("a Cassandra lookup by id failed")?
            .into_rows_result()?;
        Ok(rows
            .rows::<(Uuid,)>()?
            .filter_map(Result::ok)
            .map(|(id,)| id)
            .collect())
    }
}

/// A document as the bound values of the INSERT.
fn row(doc: &Doc) -> (Uuid, &str, &str, CqlTimestamp, &str) {
    (
        doc.id,
        doc.index.as_str(),
        DOC_TYPE,
        CqlTimestamp(doc.timestamp),
        doc.content.as_str(),
    )
}

/// Whether `name` is a ledger table of `table`: one of essync's tables (`essync_...`) that
/// belongs to `table`, which stands among the `_`-separated parts of its name (so the ledger
/// of `n_12` is not taken for that of `n_123`). essync's ledger has been `essync_ledger_TABLE`
/// and is `essync_synced_TABLE`; its state tables shared by every sync (`essync_checkpoints`,
/// `essync_errors`) name no table.
pub fn is_ledger_of(name: &str, table: &str) -> bool {
    let Some(rest) = name.strip_prefix("essync") else {
        return false;
    };
    let table = table.to_lowercase();
    rest.match_indices(&format!("_{table}")).any(|(at, found)| {
        let after = &rest[at + found.len()..];
        after.is_empty() || after.starts_with('_')
    })
}

/// `count` inclusive ranges that cover the Murmur3 token ring.
fn token_ranges(count: usize) -> Vec<(i64, i64)> {
    let count = count.max(1) as i128;
    let span = (i64::MAX as i128 - i64::MIN as i128 + 1) / count;
    (0..count)
        .map(|i| {
            let low = i64::MIN as i128 + i * span;
            let high = if i == count - 1 {
                i64::MAX as i128
            } else {
                low + span - 1
            };
            (low as i64, high as i64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_tables_are_recognised_by_their_table() {
        assert!(is_ledger_of("essync_synced_n_123", "n_123"));
        assert!(is_ledger_of("essync_ledger_n_123", "n_123"));
        assert!(is_ledger_of("essync_ledger_n_123_content", "n_123"));
        assert!(!is_ledger_of("essync_synced_n_1234", "n_123"));
        assert!(!is_ledger_of("essync_synced_xn_123", "n_123"));
        assert!(!is_ledger_of("essync_ledger", "n_123"));
        assert!(!is_ledger_of("essync_errors", "n_123"));
        assert!(!is_ledger_of("n_123", "n_123"));
    }

    #[test]
    fn token_ranges_cover_the_ring_without_overlap() {
        for count in [1, 2, 3, 4, 7] {
            let ranges = token_ranges(count);
            assert_eq!(ranges.len(), count);
            assert_eq!(ranges[0].0, i64::MIN);
            assert_eq!(ranges[count - 1].1, i64::MAX);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].1 + 1, pair[1].0);
            }
        }
    }
}
