//! Secured servers: Elasticsearch with security on (HTTPS from a test CA, users, a role limited
//! to `t_sec_*` indices, an API key) and Cassandra with PasswordAuthenticator,
//! CassandraAuthorizer and client certificates required, as `ESSYNC_SECURE=1 scripts/servers
//! up` starts them and describes them in `run/secure/{elasticsearch,cassandra}.json`.
//!
//! Each authentication mode syncs documents both ways; each way of getting it wrong ends with
//! one line that says which; and no secret ever shows in what essync prints, at `-vv`, on a good
//! run or a failing one, in `--help`, `--print-config` or the metrics.
//!
//! These tests need the secured servers, which the default run does not start: `scripts/test`
//! starts them and runs this module with `--ignored`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use elasticsearch::Elasticsearch;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::Method;
use elasticsearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::value::CqlTimestamp;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::scenario::{Essync, run_to_end};
use crate::support::unique_name;

/// How long a document may take to cross over.
const DEADLINE: Duration = Duration::from_secs(40);

/// The secured servers, as `scripts/servers` describes them.
struct Secure {
    es: Value,
    cassandra: Value,
}

/// How essync authenticates to Elasticsearch in a test.
#[derive(Clone, Copy)]
enum EsAuth {
    Password,
    ApiKey,
}

impl Secure {
    fn load() -> Self {
        let dir = secure_dir();
        let read = |name: &str| -> Value {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "cannot read {} ({e}): start the secured servers with ESSYNC_SECURE=1 scripts/servers up",
                    path.display()
                )
            });
            serde_json::from_str(&text).expect("the servers' description is JSON")
        };
        Self {
            es: read("elasticsearch.json"),
            cassandra: read("cassandra.json"),
        }
    }

    fn es(&self, key: &str) -> String {
        self.es[key].as_str().expect(key).to_string()
    }

    fn cassandra(&self, key: &str) -> String {
        self.cassandra[key].as_str().expect(key).to_string()
    }

    fn secret(&self, of: &Value, who: &str) -> String {
        let path = of[who]["password_file"].as_str().expect("password_file");
        read_secret(Path::new(path))
    }

    /// Every secret the tests use, for searching output.
    fn secrets(&self) -> Vec<(String, String)> {
        let api_key = read_secret(Path::new(&self.es("api_key_file")));
        let api_secret = api_key
            .split_once(':')
            .map(|(_, key)| key.to_string())
            .expect("ID:KEY");
        vec![
            (
                "the Elasticsearch password".into(),
                self.secret(&self.es, "user"),
            ),
            (
                "the Elasticsearch reader's password".into(),
                self.secret(&self.es, "reader"),
            ),
            ("the Elasticsearch API key".into(), api_secret),
            (
                "the Cassandra password".into(),
                self.secret(&self.cassandra, "user"),
            ),
            (
                "the Cassandra reader's password".into(),
                self.secret(&self.cassandra, "reader"),
            ),
        ]
    }

    /// essync's Elasticsearch options for `auth`.
    fn es_args(&self, auth: EsAuth, indices: &str) -> Vec<String> {
        let mut args = vec![
            "--es-url".into(),
            self.es("url"),
            "--es-ca".into(),
            self.es("ca"),
            "--es-indices".into(),
            indices.into(),
        ];
        match auth {
            EsAuth::Password => args.extend([
                "--es-user".into(),
                self.es["user"]["user"].as_str().expect("user").into(),
                "--es-password-file".into(),
                self.es["user"]["password_file"]
                    .as_str()
                    .expect("file")
                    .into(),
            ]),
            EsAuth::ApiKey => args.extend(["--es-api-key-file".into(), self.es("api_key_file")]),
        }
        args
    }

    /// essync's Cassandra options: the user essync, its password file, mutual TLS.
    fn cassandra_args(&self) -> Vec<String> {
        vec![
            "--cassandra".into(),
            self.cassandra("node"),
            "--cassandra-ca".into(),
            self.cassandra("ca"),
            "--cassandra-cert".into(),
            self.cassandra("client_cert"),
            "--cassandra-key".into(),
            self.cassandra("client_key"),
            "--cassandra-user".into(),
            self.cassandra["user"]["user"]
                .as_str()
                .expect("user")
                .into(),
            "--cassandra-password-file".into(),
            self.cassandra["user"]["password_file"]
                .as_str()
                .expect("file")
                .into(),
        ]
    }

    /// A whole command line: `auth` to Elasticsearch, the user essync to Cassandra, the table
    /// `name` and the indices `name_*`.
    fn args(&self, auth: EsAuth, name: &str, extra: &[&str]) -> Vec<String> {
        let mut args = self.es_args(auth, &format!("{name}_*"));
        args.extend(self.cassandra_args());
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push(format!("{}:{name}", self.cassandra("keyspace")));
        args.push("1".into());
        args
    }

    /// An Elasticsearch client as the administrator, independent of essync.
    fn es_admin(&self) -> Elasticsearch {
        let url = self.es("url").parse().expect("URL");
        let ca = std::fs::read(self.es("ca")).expect("CA file");
        let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .auth(Credentials::Basic(
                self.es["admin"]["user"].as_str().expect("user").into(),
                self.secret(&self.es, "admin"),
            ))
            .cert_validation(CertificateValidation::Full(
                Certificate::from_pem(&ca).expect("PEM"),
            ))
            .build()
            .expect("transport");
        Elasticsearch::new(transport)
    }

    /// A CQL session as the superuser, over mutual TLS, independent of essync.
    async fn cql_admin(&self) -> Session {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_file_iter(self.cassandra("ca")).expect("CA") {
            roots
                .add(certificate.expect("PEM"))
                .expect("CA certificate");
        }
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(self.cassandra("client_cert"))
                .expect("client certificate")
                .collect::<Result<_, _>>()
                .expect("PEM");
        let key = PrivateKeyDer::from_pem_file(self.cassandra("client_key")).expect("key");
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client certificate");
        SessionBuilder::new()
            .known_node(self.cassandra("node"))
            .user(
                self.cassandra["admin"]["user"].as_str().expect("user"),
                self.secret(&self.cassandra, "admin"),
            )
            .tls_context(Some(Arc::new(tls)))
            .build()
            .await
            .expect("the secured Cassandra answers its superuser")
    }
}

fn secure_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("ESSYNC_TEST_SECURE_DIR") {
        return dir.into();
    }
    std::env::var("ESSYNC_WORK")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.work"))
        .join("run/secure")
}

fn read_secret(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .trim_end()
        .to_string()
}

async fn es_send(es: &Elasticsearch, method: Method, path: &str, body: Option<Value>) -> Value {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let response = es
        .send(
            method,
            path,
            headers,
            Option::<&()>::None,
            body.map(|b| b.to_string()),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    response.json().await.unwrap_or(Value::Null)
}

/// Starts essync with `args`, checks a document written to each side reaches the other.
async fn syncs_both_ways(secure: &Secure, name: &str, args: &[String]) {
    let essync = Essync::start(args);
    essync.wait_rounds(0, 1).await;
    let es = secure.es_admin();
    let cql = secure.cql_admin().await;
    let index = format!("{name}_docs");
    let table = format!("{}.{name}", secure.cassandra("keyspace"));

    let from_es = Uuid::new_v4();
    let put = es_send(
        &es,
        Method::Put,
        &format!("/{index}/_doc/{from_es}"),
        Some(json!({"from": "elasticsearch"})),
    )
    .await;
    assert!(put.get("result").is_some(), "{put}");
    let from_cassandra = Uuid::new_v4();
    cql.query_unpaged(
        format!(
            "INSERT INTO {table} (id, index_, type, timestamp, content) VALUES (?, ?, ?, ?, ?)"
        ),
        (
            from_cassandra,
            &index,
            "note",
            CqlTimestamp(chrono::Utc::now().timestamp_millis()),
            r#"{"from": "cassandra"}"#,
        ),
    )
    .await
    .expect("insert as the superuser");

    let start = Instant::now();
    loop {
        let in_cassandra = cql
            .query_unpaged(
                format!("SELECT content FROM {table} WHERE id = ?"),
                (from_es,),
            )
            .await
            .expect("select")
            .into_rows_result()
            .expect("rows")
            .maybe_first_row::<(Option<String>,)>()
            .expect("row")
            .and_then(|(content,)| content);
        let in_es = es_send(
            &es,
            Method::Get,
            &format!("/{index}/_doc/{from_cassandra}"),
            None,
        )
        .await;
        let arrived_in_cassandra = in_cassandra
            .as_deref()
            .is_some_and(|c| c.contains("elasticsearch"));
        let arrived_in_es = in_es["_source"]["from"] == "cassandra";
        if arrived_in_cassandra && arrived_in_es {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "not synced within {}s (in Cassandra: {in_cassandra:?}; in Elasticsearch: {in_es}):\n{}",
            DEADLINE.as_secs(),
            essync.output().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
#[ignore = "needs the secured servers (ESSYNC_SECURE=1 scripts/servers up); scripts/test runs it"]
async fn a_user_and_password_with_a_ca_file_and_a_cassandra_client_certificate_sync_both_ways() {
    let secure = Secure::load();
    let name = unique_name("sec_password");
    let args = secure.args(EsAuth::Password, &name, &[]);
    syncs_both_ways(&secure, &name, &args).await;
}

#[tokio::test]
#[ignore = "needs the secured servers (ESSYNC_SECURE=1 scripts/servers up); scripts/test runs it"]
async fn an_api_key_syncs_both_ways() {
    let secure = Secure::load();
    let name = unique_name("sec_api_key");
    let args = secure.args(EsAuth::ApiKey, &name, &[]);
    syncs_both_ways(&secure, &name, &args).await;
}

/// Replaces the value after `flag` in `args`.
fn with(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    let at = args.iter().position(|a| a == flag).expect(flag) + 1;
    args[at] = value.to_string();
    args
}

/// Removes `flag` and its value from `args`.
fn without(mut args: Vec<String>, flag: &str) -> Vec<String> {
    let at = args.iter().position(|a| a == flag).expect(flag);
    args.drain(at..at + 2);
    args
}

/// A file holding `text`, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("essync-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write a temporary file");
        Self(path)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
#[ignore = "needs the secured servers (ESSYNC_SECURE=1 scripts/servers up); scripts/test runs it"]
async fn each_way_of_getting_security_wrong_ends_with_one_line_that_says_which() {
    let secure = Secure::load();
    let name = unique_name("sec_wrong");
    let good = secure.args(EsAuth::Password, &name, &["--once"]);
    let wrong_secret = format!("not-the-password-{}", Uuid::new_v4().simple());
    let wrong = TempFile::new("wrong-password", &format!("{wrong_secret}\n"));
    let es_url = secure.es("url");
    let plain_es_url = es_url.replace("https://", "http://");
    let reader = |args: Vec<String>, flag_user: &str, flag_file: &str, of: &Value| {
        let args = with(
            args,
            flag_user,
            of["reader"]["user"].as_str().expect("user"),
        );
        with(
            args,
            flag_file,
            of["reader"]["password_file"].as_str().expect("file"),
        )
    };
    let cases: Vec<(&str, Vec<String>, Vec<&str>)> = vec![
        (
            "a wrong Elasticsearch password",
            with(good.clone(), "--es-password-file", &wrong.path()),
            vec!["refused the credentials of user 'essync'"],
        ),
        (
            "an Elasticsearch certificate from an unknown CA",
            without(good.clone(), "--es-ca"),
            vec!["certificate of Elasticsearch", "not trusted", "--es-ca"],
        ),
        (
            "plain HTTP to Elasticsearch's HTTPS port",
            with(good.clone(), "--es-url", &plain_es_url),
            vec!["https://"],
        ),
        (
            "an Elasticsearch user without the rights essync needs",
            reader(good.clone(), "--es-user", "--es-password-file", &secure.es),
            vec!["'essync_reader' lacks privileges", "write", "create_index"],
        ),
        (
            "a wrong Cassandra password",
            with(good.clone(), "--cassandra-password-file", &wrong.path()),
            vec!["Cassandra", "refused the credentials of user 'essync'"],
        ),
        (
            "a Cassandra certificate from an unknown CA",
            without(good.clone(), "--cassandra-ca"),
            vec!["certificate of Cassandra", "not trusted", "--cassandra-ca"],
        ),
        (
            "no client certificate for Cassandra",
            without(without(good.clone(), "--cassandra-cert"), "--cassandra-key"),
            vec!["requires a client certificate", "--cassandra-cert"],
        ),
        (
            "plain CQL to Cassandra's TLS port",
            without(
                without(without(good.clone(), "--cassandra-cert"), "--cassandra-key"),
                "--cassandra-ca",
            ),
            vec!["TLS", "--cassandra-tls"],
        ),
        (
            "a Cassandra user without the rights essync needs",
            reader(
                good.clone(),
                "--cassandra-user",
                "--cassandra-password-file",
                &secure.cassandra,
            ),
            vec!["essync_reader has no CREATE permission"],
        ),
    ];
    let mut secrets = secure.secrets();
    secrets.push(("the wrong password".into(), wrong_secret.clone()));
    for (what, args, expected) in cases {
        let (code, stdout, stderr) = run_to_end(&args);
        assert!(
            matches!(code, Some(c) if c != 0),
            "{what}: exit code {code:?}"
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{what}: not one line:\n{stderr}{stdout}");
        assert!(lines[0].starts_with("essync: "), "{what}: {}", lines[0]);
        for needle in expected {
            assert!(
                lines[0].contains(needle),
                "{what}: '{}' does not say '{needle}'",
                lines[0]
            );
        }
        for (secret_name, secret) in &secrets {
            assert!(
                !stderr.contains(secret.as_str()) && !stdout.contains(secret.as_str()),
                "{what}: {secret_name} was printed"
            );
        }
    }
}

/// Runs essync with `args` and `env` (and nothing else from the test's environment) to its
/// end; everything it printed.
fn run_with_env(args: &[String], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_essync"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ESSYNC_") {
            command.env_remove(name);
        }
    }
    let output = command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run essync");
    let mut printed = String::from_utf8_lossy(&output.stdout).into_owned();
    printed.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code(), printed)
}

/// A GET over plain TCP; the whole answer.
fn http_get(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the metrics port");
    write!(stream, "GET {path} HTTP/1.1\r\nhost: {address}\r\n\r\n").expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
}

#[tokio::test]
#[ignore = "needs the secured servers (ESSYNC_SECURE=1 scripts/servers up); scripts/test runs it"]
async fn no_secret_shows_in_logs_errors_help_print_config_or_metrics_even_at_vv() {
    let secure = Secure::load();
    let secrets = secure.secrets();
    let es_password = secure.secret(&secure.es, "user");
    let cassandra_password = secure.secret(&secure.cassandra, "user");
    let api_key = read_secret(Path::new(&secure.es("api_key_file")));
    let mut printed: Vec<(String, String)> = Vec::new();

    // A good run with the secrets in files, at -vv, serving metrics.
    let name = unique_name("sec_quiet");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let address = format!("127.0.0.1:{port}");
    let essync =
        Essync::start(&secure.args(EsAuth::Password, &name, &["-vv", "--metrics", &address]));
    essync.wait_rounds(0, 2).await;
    let metrics = http_get(&address, "/metrics");
    assert!(metrics.contains("essync_rounds"), "{metrics}");
    printed.push(("the metrics".into(), metrics));
    essync.signal(15);
    essync.wait_exit().await;
    printed.push(("a good run at -vv".into(), essync.output().join("\n")));

    // A good run with the API key and the passwords in the environment, at -vv.
    let name = unique_name("sec_quiet_env");
    let args = without(
        without(
            secure.args(EsAuth::ApiKey, &name, &["-vv", "--once"]),
            "--es-api-key-file",
        ),
        "--cassandra-password-file",
    );
    let (code, output) = run_with_env(
        &args,
        &[
            ("ESSYNC_ES_API_KEY", &api_key),
            ("ESSYNC_CASSANDRA_PASSWORD", &cassandra_password),
        ],
    );
    assert_eq!(code, Some(0), "{output}");
    printed.push(("a good run with secrets in the environment".into(), output));

    // A failing run at -vv: the right Cassandra password, a wrong Elasticsearch one.
    let wrong = format!("{es_password}-wrong");
    let args = without(
        without(
            secure.args(EsAuth::Password, &name, &["-vv", "--once"]),
            "--es-password-file",
        ),
        "--cassandra-password-file",
    );
    let (code, output) = run_with_env(
        &args,
        &[
            ("ESSYNC_ES_PASSWORD", &wrong),
            ("ESSYNC_CASSANDRA_PASSWORD", &cassandra_password),
        ],
    );
    assert_ne!(code, Some(0), "{output}");
    assert!(output.contains("refused the credentials"), "{output}");
    printed.push(("a failing run at -vv".into(), output));

    // --help and --print-config, with secrets in the environment and in a config file.
    let config = TempFile::new(
        "secrets.toml",
        &format!("es-user = \"essync\"\nes-password = \"{es_password}\"\n"),
    );
    let env = [
        ("ESSYNC_ES_API_KEY", api_key.as_str()),
        ("ESSYNC_CASSANDRA_PASSWORD", cassandra_password.as_str()),
    ];
    let (code, output) = run_with_env(&["--help".to_string()], &env);
    assert_eq!(code, Some(0), "{output}");
    printed.push(("--help".into(), output));
    let (code, output) = run_with_env(
        &[
            "--config".to_string(),
            config.path(),
            "--print-config".to_string(),
        ],
        &env,
    );
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("es-password = \"********\""), "{output}");
    printed.push(("--print-config".into(), output));

    for (what, text) in &printed {
        for (secret_name, secret) in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{secret_name} shows in {what}"
            );
        }
    }
    // The search itself finds a secret where there is one.
    let planted = format!("log line with {cassandra_password} in it");
    assert!(
        secrets
            .iter()
            .any(|(_, secret)| planted.contains(secret.as_str())),
        "the search for secrets cannot find one"
    );
}
