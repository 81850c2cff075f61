//! End-to-end scenarios: the real essync binary against the real servers, with documents
//! written and read through the servers' own clients (plain HTTP and plain CQL), never through
//! essync's library.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use elasticsearch::Elasticsearch;
use elasticsearch::http::Method;
use elasticsearch::http::headers::HeaderMap;
use futures::StreamExt;
use scylla::client::session::Session;
use scylla::value::CqlTimestamp;
use serde_json::{Value, json};
use uuid::Uuid;

use super::log::{LOG_FORMAT, Round, render};
use super::{cassandra_node, cql_session_at, es_client_at, es_url, unique_name};

/// The keyspace every scenario's table lives in.
pub const KEYSPACE: &str = "essync_e2e";
/// The field essync keeps its metadata in, in Elasticsearch (as documented in the README).
pub const METADATA: &str = "_essync";
/// Rounds start this often in the scenarios, in seconds.
pub const PERIOD: &str = "1";
/// How long a scenario waits for the stores to reach a state: a few periods, plus start-up.
pub const DEADLINE: Duration = Duration::from_secs(40);

/// A document as a user writes it, or as a store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub index: String,
    pub doc_type: Option<String>,
    /// UTC milliseconds.
    pub timestamp: Option<i64>,
    pub content: Value,
}

/// Every document of a store, by id.
pub type Docs = BTreeMap<Uuid, Doc>;

/// The differences between two stores' documents, one line each (empty when equal).
pub fn differences(elasticsearch: &Docs, cassandra: &Docs) -> Vec<String> {
    let mut lines = Vec::new();
    for (id, e) in elasticsearch {
        match cassandra.get(id) {
            None => lines.push(format!("{id}: only in Elasticsearch ({e:?})")),
            Some(c) => {
                if e.index != c.index {
                    lines.push(format!("{id}: index {} vs {}", e.index, c.index));
                }
                if e.doc_type != c.doc_type {
                    lines.push(format!("{id}: type {:?} vs {:?}", e.doc_type, c.doc_type));
                }
                if e.timestamp != c.timestamp {
                    lines.push(format!(
                        "{id}: timestamp {:?} vs {:?}",
                        e.timestamp, c.timestamp
                    ));
                }
                if e.content != c.content {
                    lines.push(format!("{id}: content {} vs {}", e.content, c.content));
                }
            }
        }
    }
    for (id, c) in cassandra {
        if !elasticsearch.contains_key(id) {
            lines.push(format!("{id}: only in Cassandra ({c:?})"));
        }
    }
    lines
}

/// One scenario's world: a Cassandra table and Elasticsearch indices of its own.
pub struct Scenario {
    /// Unique: the table's name and the prefix of the scenario's indices.
    pub name: String,
    /// The keyspace of the table and of essync's state.
    pub keyspace: String,
    pub es: Elasticsearch,
    pub cql: Session,
    /// The servers essync is pointed at.
    es_url: String,
    cassandra_node: String,
}

impl Scenario {
    pub async fn new(prefix: &str) -> Self {
        Self::on(prefix, &es_url(), &cassandra_node()).await
    }

    /// A scenario on other servers than the suite's (the fault tests stop theirs).
    pub async fn on(prefix: &str, es_url: &str, cassandra_node: &str) -> Self {
        Self::in_keyspace(prefix, KEYSPACE, es_url, cassandra_node).await
    }

    /// A scenario in a keyspace of its own choosing (a test of the state tables a keyspace
    /// holds, which the other scenarios must not see).
    pub async fn in_keyspace(
        prefix: &str,
        keyspace: &str,
        es_url: &str,
        cassandra_node: &str,
    ) -> Self {
        let cql = cql_session_at(cassandra_node).await;
        cql.query_unpaged(
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': {}}}",
                super::replication_factor()
            ),
            (),
        )
        .await
        .expect("create the scenarios' keyspace");
        Self {
            name: unique_name(prefix),
            keyspace: keyspace.to_string(),
            es: es_client_at(es_url),
            cql,
            es_url: es_url.to_string(),
            cassandra_node: cassandra_node.to_string(),
        }
    }

    /// `KEYSPACE:TABLE` for the command line.
    pub fn target(&self) -> String {
        format!("{}:{}", self.keyspace, self.name)
    }

    /// `KEYSPACE.TABLE` for CQL.
    pub fn table(&self) -> String {
        format!("{}.{}", self.keyspace, self.name)
    }

    /// An index of this scenario.
    pub fn index(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.name)
    }

    /// Creates the table with the seed's schema, as a user would before writing rows.
    pub async fn create_table(&self) {
        self.cql
            .query_unpaged(
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (id uuid PRIMARY KEY, index_ varchar, \
                     type varchar, timestamp timestamp, content varchar)",
                    self.table()
                ),
                (),
            )
            .await
            .expect("create table");
    }

    /// Starts essync on this scenario's table and indices, with `args` before the positional
    /// arguments.
    pub fn essync(&self, args: &[&str]) -> Essync {
        Essync::start(&self.command_args(args))
    }

    /// [`Scenario::essync`] with another PERIOD (seconds).
    pub fn essync_every(&self, period: &str, args: &[&str]) -> Essync {
        let mut all = self.command_args(args);
        if let Some(last) = all.last_mut() {
            *last = period.to_string();
        }
        Essync::start(&all)
    }

    /// The indices essync syncs in this scenario, unless told otherwise.
    pub fn indices(&self) -> String {
        format!("{}_*", self.name)
    }

    /// The full argument list for this scenario; `--es-indices` may be given in `args`.
    pub fn command_args(&self, args: &[&str]) -> Vec<String> {
        let mut all: Vec<String> = vec![
            "--es-url".into(),
            self.es_url.clone(),
            "--cassandra".into(),
            self.cassandra_node.clone(),
        ];
        if !args.contains(&"--es-indices") {
            all.push("--es-indices".into());
            all.push(self.indices());
        }
        all.extend(args.iter().map(|a| a.to_string()));
        all.push(self.target());
        all.push(PERIOD.into());
        all
    }

    /// Writes a document to Elasticsearch as a user would: the content, plus essync's metadata
    /// field when the document has a type or timestamp.
    pub async fn es_write(&self, id: Uuid, doc: &Doc) {
        let mut source = doc.content.clone();
        if doc.doc_type.is_some() || doc.timestamp.is_some() {
            let mut metadata = serde_json::Map::new();
            if let Some(t) = &doc.doc_type {
                metadata.insert("type".into(), json!(t));
            }
            if let Some(ts) = doc.timestamp {
                metadata.insert("timestamp".into(), json!(iso(ts)));
            }
            source[METADATA] = Value::Object(metadata);
        }
        let path = format!("/{}/_doc/{id}", doc.index);
        let answer = self.http(Method::Put, &path, Some(source)).await;
        assert!(
            answer.get("result").is_some(),
            "Elasticsearch refused {path}: {answer}"
        );
    }

    /// Writes many documents to Elasticsearch through the bulk API.
    pub async fn es_bulk(&self, docs: &[(Uuid, Doc)]) {
        let lines: Vec<(String, String, Value)> = docs
            .iter()
            .map(|(id, doc)| {
                let mut source = doc.content.clone();
                if let Some(ts) = doc.timestamp {
                    source[METADATA] = json!({"type": doc.doc_type, "timestamp": iso(ts)});
                }
                (doc.index.clone(), id.to_string(), source)
            })
            .collect();
        super::es_bulk_with(&self.es, &lines).await;
    }

    /// Writes a row to Cassandra as a user would (plain CQL, the driver's write time).
    pub async fn cql_write(&self, id: Uuid, doc: &Doc) {
        self.cql_bulk(&[(id, doc.clone())]).await;
    }

    /// Writes many rows to Cassandra, concurrently.
    pub async fn cql_bulk(&self, docs: &[(Uuid, Doc)]) {
        let mut insert = self
            .cql
            .prepare(format!(
                "INSERT INTO {} (id, index_, type, timestamp, content) VALUES (?, ?, ?, ?, ?)",
                self.table()
            ))
            .await
            .expect("prepare insert");
        // A plain write: the driver may send it again to another node when its node is lost
        // (the multi-node tests kill one), as an application's driver would.
        insert.set_is_idempotent(true);
        let pending: Vec<_> = docs
            .iter()
            .map(|(id, doc)| {
                let insert = &insert;
                async move {
                    let content = doc.content.to_string();
                    retried("insert", || {
                        self.cql.execute_unpaged(
                            insert,
                            (
                                id,
                                &doc.index,
                                &doc.doc_type,
                                doc.timestamp.map(CqlTimestamp),
                                &content,
                            ),
                        )
                    })
                    .await
                }
            })
            .collect();
        let results: Vec<_> = futures::stream::iter(pending)
            .buffer_unordered(128)
            .collect()
            .await;
        assert!(results.iter().all(Result::is_ok), "inserts failed");
    }

    /// Applies a partial update to an Elasticsearch document, as an application does: the
    /// fields given replace theirs, the rest (essync's metadata included) is kept. Like an
    /// application beside another writer (essync), it asks Elasticsearch to retry the update
    /// when the document changed between the update's own read and write.
    pub async fn es_partial_update(&self, index: &str, id: Uuid, fields: Value) {
        let path = format!("/{index}/_update/{id}?retry_on_conflict=5");
        let answer = self
            .http(Method::Post, &path, Some(json!({"doc": fields})))
            .await;
        assert!(
            answer.get("result").is_some(),
            "Elasticsearch refused {path}: {answer}"
        );
    }

    /// Deletes an Elasticsearch document, as an application does.
    pub async fn es_delete(&self, index: &str, id: Uuid) {
        let path = format!("/{index}/_doc/{id}");
        let answer = self.http(Method::Delete, &path, None).await;
        assert_eq!(answer["result"], "deleted", "{path}: {answer}");
    }

    /// Deletes many Elasticsearch documents through the bulk API.
    pub async fn es_bulk_delete(&self, docs: &[(String, Uuid)]) {
        use elasticsearch::http::headers::{CONTENT_TYPE, HeaderValue};
        for chunk in docs.chunks(1000) {
            let mut body = String::new();
            for (index, id) in chunk {
                body.push_str(
                    &json!({"delete": {"_index": index, "_id": id.to_string()}}).to_string(),
                );
                body.push('\n');
            }
            let mut headers = HeaderMap::new();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            let answer: Value = self
                .es
                .send(
                    Method::Post,
                    "/_bulk",
                    headers,
                    Option::<&()>::None,
                    Some(body),
                    None,
                )
                .await
                .expect("bulk delete")
                .json()
                .await
                .expect("bulk answer");
            assert_eq!(answer["errors"], false, "bulk delete failed: {answer}");
        }
    }

    /// Updates the content column alone, as an application does with plain CQL.
    pub async fn cql_update_content(&self, id: Uuid, content: &Value) {
        let update = format!("UPDATE {} SET content = ? WHERE id = ?", self.table());
        let content = content.to_string();
        retried("update content", || {
            self.cql.query_unpaged(update.as_str(), (&content, id))
        })
        .await
        .expect("update content");
    }

    /// Deletes rows with plain CQL, concurrently.
    pub async fn cql_delete(&self, ids: &[Uuid]) {
        let mut delete = self
            .cql
            .prepare(format!("DELETE FROM {} WHERE id = ?", self.table()))
            .await
            .expect("prepare delete");
        delete.set_is_idempotent(true);
        let pending: Vec<_> = ids
            .iter()
            .map(|id| {
                let delete = &delete;
                async move { retried("delete", || self.cql.execute_unpaged(delete, (id,))).await }
            })
            .collect();
        let results: Vec<_> = futures::stream::iter(pending)
            .buffer_unordered(128)
            .collect()
            .await;
        assert!(results.iter().all(Result::is_ok), "deletes failed");
    }

    /// Runs one round of essync to its end (`--once`, with `args` first) and returns its
    /// round summaries; panics when it fails.
    pub fn once(&self, args: &[&str]) -> Vec<Round> {
        let mut all = LOG_FORMAT.to_vec();
        all.extend_from_slice(args);
        all.push("--once");
        let (code, stdout, stderr) = run_to_end(&self.command_args(&all));
        let rendered: Vec<String> = stderr.lines().map(render).collect();
        assert_eq!(
            code,
            Some(0),
            "essync --once failed:\n{stdout}{}",
            rendered.join("\n")
        );
        Round::all_in(&stderr)
    }

    /// Every document of this scenario's indices, read with a plain search after a refresh.
    pub async fn elasticsearch(&self) -> Docs {
        self.elasticsearch_in(&self.indices()).await
    }

    /// Every document of the indices matching `pattern`.
    pub async fn elasticsearch_in(&self, pattern: &str) -> Docs {
        self.http(
            Method::Post,
            &format!("/{pattern}/_refresh?allow_no_indices=true"),
            None,
        )
        .await;
        let mut docs = Docs::new();
        let mut answer = self
            .http(
                Method::Post,
                &format!("/{pattern}/_search?scroll=1m&allow_no_indices=true"),
                Some(json!({"size": 5000, "sort": ["_doc"]})),
            )
            .await;
        loop {
            let hits = answer["hits"]["hits"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if hits.is_empty() {
                break;
            }
            for hit in hits {
                let id: Uuid = hit["_id"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("uuid _id");
                let mut content = hit["_source"].clone();
                let metadata = content
                    .as_object_mut()
                    .and_then(|o| o.remove(METADATA))
                    .unwrap_or(Value::Null);
                docs.insert(
                    id,
                    Doc {
                        index: hit["_index"].as_str().unwrap_or_default().to_string(),
                        doc_type: metadata["type"].as_str().map(str::to_string),
                        timestamp: metadata["timestamp"]
                            .as_str()
                            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                            .map(|t| t.timestamp_millis()),
                        content,
                    },
                );
            }
            let Some(scroll) = answer["_scroll_id"].as_str().map(str::to_string) else {
                break;
            };
            answer = self
                .http(
                    Method::Post,
                    "/_search/scroll",
                    Some(json!({"scroll": "1m", "scroll_id": scroll})),
                )
                .await;
        }
        docs
    }

    /// Every row of this scenario's table, read with plain CQL.
    pub async fn cassandra(&self) -> Docs {
        let mut docs = Docs::new();
        let Ok(pager) = self
            .cql
            .query_iter(
                format!(
                    "SELECT id, index_, type, timestamp, content FROM {}",
                    self.table()
                ),
                (),
            )
            .await
        else {
            // No table yet.
            return docs;
        };
        type Row = (
            Uuid,
            Option<String>,
            Option<String>,
            Option<CqlTimestamp>,
            Option<String>,
        );
        let mut rows = pager.rows_stream::<Row>().expect("row types");
        while let Some(row) = rows.next().await {
            let (id, index, doc_type, timestamp, content) = row.expect("row");
            docs.insert(
                id,
                Doc {
                    index: index.unwrap_or_default(),
                    doc_type,
                    timestamp: timestamp.map(|t| t.0),
                    content: content
                        .and_then(|c| serde_json::from_str(&c).ok())
                        .unwrap_or(Value::Null),
                },
            );
        }
        docs
    }

    /// Polls both stores until `done` holds (every half second, until [`DEADLINE`]), and
    /// returns them; panics with `what` and the differences when it never does.
    pub async fn wait_until(
        &self,
        what: &str,
        done: impl Fn(&Docs, &Docs) -> bool,
    ) -> (Docs, Docs) {
        self.wait_until_within(DEADLINE, what, done).await
    }

    /// [`Scenario::wait_until`] with another deadline, for large volumes.
    pub async fn wait_until_within(
        &self,
        deadline: Duration,
        what: &str,
        done: impl Fn(&Docs, &Docs) -> bool,
    ) -> (Docs, Docs) {
        let start = Instant::now();
        loop {
            let (elasticsearch, cassandra) = (self.elasticsearch().await, self.cassandra().await);
            if done(&elasticsearch, &cassandra) {
                return (elasticsearch, cassandra);
            }
            if start.elapsed() > deadline {
                let mut shown = differences(&elasticsearch, &cassandra);
                shown.truncate(10);
                if shown.is_empty() {
                    // Both sides agree, on something else than expected: show what they hold.
                    shown = elasticsearch
                        .iter()
                        .take(5)
                        .map(|(id, doc)| format!("{id}: {doc:?} on both sides"))
                        .collect();
                }
                panic!(
                    "{what}: not reached within {}s; {} in Elasticsearch, {} in Cassandra; \
                     first differences:\n{}",
                    deadline.as_secs(),
                    elasticsearch.len(),
                    cassandra.len(),
                    shown.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until both stores hold the same `count` documents, field by field.
    pub async fn wait_equal(&self, count: usize) -> Docs {
        let (elasticsearch, _) = self
            .wait_until(
                &format!("both stores equal with {count} documents"),
                |e, c| e.len() == count && differences(e, c).is_empty(),
            )
            .await;
        elasticsearch
    }

    async fn http(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string());
        let response = self
            .es
            .send(
                method,
                path,
                HeaderMap::new(),
                Option::<&()>::None,
                body,
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        response.json().await.unwrap_or(Value::Null)
    }

    /// A raw request, for checks that need more than documents (versions, mappings).
    pub async fn es_request(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        self.http(method, path, body).await
    }
}

/// A document with the given fields.
pub fn doc(index: &str, doc_type: &str, timestamp: i64, content: Value) -> Doc {
    Doc {
        index: index.to_string(),
        doc_type: Some(doc_type.to_string()),
        timestamp: Some(timestamp),
        content,
    }
}

/// Now, in UTC milliseconds.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn iso(millis: i64) -> String {
    DateTime::from_timestamp_millis(millis)
        .expect("valid time")
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The essync command, with none of essync's own `ESSYNC_*` settings inherited from the test's
/// environment: a scenario says everything on the command line.
fn essync_command(args: &[String]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_essync"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ESSYNC_") {
            command.env_remove(name);
        }
    }
    command.args(args).stdin(Stdio::null());
    command
}

/// A running essync process; killed when dropped.
pub struct Essync {
    child: Mutex<Child>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Essync {
    /// Starts essync with `args`, logging as the tests read it ([`LOG_FORMAT`]).
    pub fn start(args: &[String]) -> Self {
        let mut all: Vec<String> = LOG_FORMAT.iter().map(|a| a.to_string()).collect();
        all.extend_from_slice(args);
        let mut child = essync_command(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start essync");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(mut lines) = lines.lock() {
                        lines.push(line);
                    }
                }
            });
        }
        Self {
            child: Mutex::new(child),
            lines,
        }
    }

    /// What essync printed so far, each log line as the text format writes it.
    pub fn output(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|lines| lines.iter().map(|l| render(l)).collect())
            .unwrap_or_default()
    }

    /// Waits until essync printed a line containing `needle`; returns the line.
    pub async fn wait_for_line(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(line) = self.output().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "essync did not print {needle:?} within {}s:\n{}",
                DEADLINE.as_secs(),
                self.output().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The summaries of the rounds done so far.
    pub fn rounds(&self) -> Vec<Round> {
        self.lines
            .lock()
            .map(|lines| lines.iter().filter_map(|l| Round::from_line(l)).collect())
            .unwrap_or_default()
    }

    /// Waits until `count` more rounds than `after` completed; returns their summaries.
    pub async fn wait_rounds(&self, after: usize, count: usize) -> Vec<Round> {
        let start = Instant::now();
        loop {
            let rounds = self.rounds();
            if rounds.len() >= after + count {
                return rounds[after..].to_vec();
            }
            if let Some(status) = self.exited() {
                panic!("essync exited ({status}):\n{}", self.output().join("\n"));
            }
            assert!(
                start.elapsed() < DEADLINE,
                "essync did not finish {count} more rounds within {}s:\n{}",
                DEADLINE.as_secs(),
                self.output().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The exit status, if the process has exited.
    fn exited(&self) -> Option<ExitStatus> {
        self.child.lock().ok()?.try_wait().ok()?
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().map(|c| c.id()).expect("child")
    }

    /// Sends a signal (SIGTERM, SIGINT, SIGKILL by number) to the process.
    pub fn signal(&self, signal: i32) {
        let pid = self.child.lock().map(|c| c.id()).expect("child");
        send_signal(pid, signal);
    }

    /// Runs `writes` with the process stopped (SIGSTOP, then SIGCONT), so that no round reads
    /// or writes between them: the writes happen at once, as far as essync can tell.
    pub async fn paused<T>(&self, writes: impl Future<Output = T>) -> T {
        const SIGSTOP: i32 = 19;
        const SIGCONT: i32 = 18;
        self.signal(SIGSTOP);
        let done = writes.await;
        self.signal(SIGCONT);
        done
    }

    /// Waits for the process to exit (at most [`DEADLINE`]) and returns its status.
    pub async fn wait_exit(&self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "essync did not exit within {}s:\n{}",
                DEADLINE.as_secs(),
                self.output().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Essync {
    fn drop(&mut self) {
        if let Ok(child) = self.child.get_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs an application's write, and sends it again (up to five times, half a second apart) when
/// it fails, as an application beside a cluster does when a node is lost (the multi-node tests
/// kill one): the writes are idempotent, so sending one again leaves the same row.
async fn retried<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
    what: &str,
    mut write: impl FnMut() -> F,
) -> Result<T, E> {
    let mut tries = 0;
    loop {
        match write().await {
            Err(e) if tries < 5 => {
                tries += 1;
                eprintln!("{what} failed ({e}); sent again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            result => return result,
        }
    }
}

/// How long a run expected to end may take before the test fails on it (a hang is a failure
/// that names the command, not a run that never ends).
const RUN_TO_END_WITHIN: Duration = Duration::from_secs(300);

/// Runs essync to completion (for `--once` and for bad arguments) and returns its exit code
/// and output. A process still running after [`RUN_TO_END_WITHIN`] is killed and fails the
/// test with what it printed.
pub fn run_to_end(args: &[String]) -> (Option<i32>, String, String) {
    let mut child = essync_command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run essync");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + RUN_TO_END_WITHIN;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for essync") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().expect("read essync's stdout");
    let stderr = stderr.join().expect("read essync's stderr");
    let Some(status) = status else {
        panic!(
            "essync {args:?} was still running after {}s; it printed:\n{stderr}{stdout}",
            RUN_TO_END_WITHIN.as_secs()
        );
    };
    (status.code(), stdout, stderr)
}

/// Sends a signal (by number) to a process, as `kill -SIGNAL PID` does.
pub fn send_signal(pid: u32, signal: i32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The comparison every scenario relies on must see each kind of difference.
    #[test]
    fn differences_sees_every_field_and_missing_documents() {
        let id = Uuid::new_v4();
        let base = doc("i", "t", 5, json!({"a": 1}));
        let one = |d: Doc| Docs::from([(id, d)]);
        assert!(differences(&one(base.clone()), &one(base.clone())).is_empty());
        for changed in [
            Doc {
                index: "j".into(),
                ..base.clone()
            },
            Doc {
                doc_type: None,
                ..base.clone()
            },
            Doc {
                timestamp: Some(6),
                ..base.clone()
            },
            Doc {
                content: json!({"a": 2}),
                ..base.clone()
            },
        ] {
            assert_eq!(
                differences(&one(base.clone()), &one(changed.clone())).len(),
                1,
                "{changed:?}"
            );
        }
        assert_eq!(differences(&one(base.clone()), &Docs::new()).len(), 1);
        assert_eq!(differences(&Docs::new(), &one(base)).len(), 1);
    }
}
