//! The command line: `essync [OPTIONS] KEYSPACE:TABLE PERIOD`, and the subcommands beside it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use essync::cassandra::{Consistency, SerialConsistency};
use essync::policy::CompileCache;

/// Keeps Elasticsearch and a Cassandra table in sync, both ways, every PERIOD seconds.
///
/// Every document of the Elasticsearch cluster (any index not starting with '.') is synced with
/// the rows of KEYSPACE.TABLE (id uuid, index_, type, timestamp, content). A WebAssembly policy
/// decides which documents take part and which version wins a conflict; the built-in one keeps
/// the newer timestamp.
#[derive(Debug, Parser)]
#[command(
    name = "essync",
    version,
    subcommand_negates_reqs = true,
    override_usage = "essync [OPTIONS] KEYSPACE:TABLE PERIOD\n       \
                      essync policy new NAME --lang rust|python|js\n       \
                      essync policy check POLICY\n       \
                      essync policy test POLICY CASES\n       \
                      essync policy bench POLICY CASES\n       \
                      essync policy wit\n       \
                      essync errors KEYSPACE:TABLE [--clear]",
    after_help = "Every option can also be set in a TOML file given with --config (or ESSYNC_CONFIG): \
                  the keys are the long option names without '--' (plus `target` and `period`); \
                  the command line overrides the environment, which overrides the file. \
                  --print-config shows the settings in effect, secrets masked.\n\n\
                  Examples:\n  essync -s shop:products 10\n  essync --config /etc/essync/essync.toml\n  \
                  essync --policy prefer-cassandra.wasm --once shop:products 60\n  \
                  essync policy new my-policy --lang python\n  essync policy test my-policy.wasm cases.json"
)]
pub struct Cli {
    /// What to sync: KEYSPACE:TABLE (both created when missing)
    #[arg(value_name = "KEYSPACE:TABLE", required = true, value_parser = parse_target)]
    pub target: Option<Target>,

    /// Seconds between the starts of two rounds (a positive number, e.g. 10 or 0.5)
    #[arg(value_name = "PERIOD", required = true, value_parser = parse_period)]
    pub period: Option<Duration>,

    #[command(flatten)]
    pub sync: SyncOptions,

    #[command(flatten)]
    pub connection: ConnectionOptions,

    /// More output: -v logs every decision, -vv every request
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// How log lines are written: `text` for people, or `json` for programs (one JSON object a
    /// line; each round's summary carries its figures as fields)
    #[arg(
        long,
        value_name = "FORMAT",
        value_enum,
        default_value = "text",
        env = "ESSYNC_LOG_FORMAT",
        global = true
    )]
    pub log_format: LogFormat,

    /// Read settings from this TOML file (command-line options and ESSYNC_* variables override
    /// it)
    #[arg(long, value_name = "FILE", env = "ESSYNC_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Print the settings in effect (from the command line, the environment, the config file and
    /// the defaults) as a config file, secrets masked, and exit
    #[arg(long, global = true)]
    pub print_config: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How a sync runs.
#[derive(Debug, Args)]
pub struct SyncOptions {
    /// Sync all existing data at start (a full reconciliation of both stores), not only changes
    #[arg(short = 's', long = "sync-existing")]
    pub sync_existing: bool,

    /// Run one round (after the -s reconciliation, if asked) and exit
    #[arg(long)]
    pub once: bool,

    /// The policy component (.wasm) to use instead of the built-in last-write-wins
    #[arg(long, value_name = "PATH", env = "ESSYNC_POLICY")]
    pub policy: Option<PathBuf>,

    /// Load the policy file again when it changes (checked at each round's start; SIGHUP
    /// reloads it in any case)
    #[arg(long, requires = "policy")]
    pub policy_reload: bool,

    /// Where compiled policies are kept between runs, or `off` [default:
    /// $XDG_CACHE_HOME/essync/policies, else ~/.cache/essync/policies]
    #[arg(
        long,
        value_name = "DIR",
        env = "ESSYNC_POLICY_CACHE",
        global = true,
        value_parser = parse_cache
    )]
    pub policy_cache: Option<CompileCache>,

    /// Decide and report what would change, but write nothing and save no checkpoint
    #[arg(long)]
    pub dry_run: bool,

    /// Seconds each round re-reads before the previous one, to cover clock skew between
    /// writers and late writes
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub safety_window: Duration,

    /// The most Cassandra rows the write-time sweep examines per round (it finds rows written
    /// with an old or no timestamp; a whole pass over a larger table takes several rounds). A
    /// round that has used its PERIOD takes no sweep page, unless the sweep took none for 10 s
    #[arg(long, value_name = "ROWS", default_value_t = 20_000)]
    pub sweep_rows: usize,

    /// How long the table's lease lasts without renewal: how long a standby waits for a holder
    /// that died on another host, and how long a frozen holder may stay frozen before another
    /// takes over (renewed every third of it; at least 3)
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_lease_ttl)]
    pub lease_ttl: Duration,

    /// Split the table's token ring into N ranges, each synced under a lease of its own, so
    /// that several processes started with the same N share the table (each takes a fair
    /// share). Every process on a table must use the same N; changing it reconciles once
    #[arg(long, value_name = "N", default_value_t = essync::sync::ranges::DEFAULT_RANGES,
          value_parser = parse_ranges)]
    pub ranges: u32,

    /// Serve Prometheus metrics on ADDRESS (e.g. 127.0.0.1:9464), at /metrics
    #[arg(long, value_name = "ADDRESS", env = "ESSYNC_METRICS")]
    pub metrics: Option<std::net::SocketAddr>,

    /// The longest a policy call may run, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 2_000)]
    pub policy_timeout_ms: u64,

    /// The most memory a policy instance may use, in MiB
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub policy_memory_mib: usize,
}

/// Where the stores are.
#[derive(Debug, Args, Clone)]
pub struct ConnectionOptions {
    /// Elasticsearch URL(s), comma-separated
    #[arg(
        long = "es-url",
        value_name = "URL",
        env = "ESSYNC_ES_URL",
        default_value = "http://127.0.0.1:9200",
        value_delimiter = ',',
        global = true
    )]
    pub es_urls: Vec<String>,

    /// The Elasticsearch indices to sync, as comma-separated patterns (`shop-*,-shop-test`);
    /// system and hidden indices (`.`-prefixed) never take part
    #[arg(
        long = "es-indices",
        value_name = "PATTERNS",
        env = "ESSYNC_ES_INDICES",
        default_value = "*",
        global = true
    )]
    pub es_indices: String,

    /// Elasticsearch user (basic authentication)
    #[arg(long, value_name = "USER", env = "ESSYNC_ES_USER", global = true)]
    pub es_user: Option<String>,

    /// Elasticsearch password (prefer --es-password-file or ESSYNC_ES_PASSWORD: the command line
    /// is visible to every user of the machine)
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "ESSYNC_ES_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub es_password: Option<String>,

    /// A file holding the Elasticsearch password (one line)
    #[arg(
        long,
        value_name = "FILE",
        env = "ESSYNC_ES_PASSWORD_FILE",
        conflicts_with = "es_password",
        global = true
    )]
    pub es_password_file: Option<PathBuf>,

    /// Elasticsearch API key, as ID:KEY or as the `encoded` form Elasticsearch returns (prefer
    /// --es-api-key-file or ESSYNC_ES_API_KEY)
    #[arg(
        long,
        value_name = "ID:KEY",
        env = "ESSYNC_ES_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub es_api_key: Option<String>,

    /// A file holding the Elasticsearch API key (ID:KEY or encoded, one line)
    #[arg(
        long,
        value_name = "FILE",
        env = "ESSYNC_ES_API_KEY_FILE",
        conflicts_with = "es_api_key",
        global = true
    )]
    pub es_api_key_file: Option<PathBuf>,

    /// PEM file of the certificate authorities Elasticsearch's certificate is checked against
    /// (beside the public web roots)
    #[arg(long, value_name = "FILE", env = "ESSYNC_ES_CA", global = true)]
    pub es_ca: Option<PathBuf>,

    /// Accept any Elasticsearch TLS certificate (self-signed test clusters only)
    #[arg(long, global = true)]
    pub es_insecure: bool,

    /// Ask Elasticsearch for gzip-compressed answers: less traffic, more CPU on both sides (for
    /// a cluster reached over a slow or metered network; near the cluster, leave it off)
    #[arg(long, env = "ESSYNC_ES_GZIP", global = true)]
    pub es_gzip: bool,

    /// The longest one Elasticsearch request may take, in seconds: a server that does not
    /// answer within it fails the round, which is tried again after a backoff
    #[arg(
        long,
        value_name = "SECONDS",
        env = "ESSYNC_ES_TIMEOUT",
        default_value = "60",
        value_parser = parse_timeout,
        global = true
    )]
    pub es_timeout: Duration,

    /// Cassandra contact point(s) HOST:PORT, comma-separated
    #[arg(
        long = "cassandra",
        value_name = "HOST:PORT",
        env = "ESSYNC_CASSANDRA",
        default_value = "127.0.0.1:9042",
        value_delimiter = ',',
        global = true
    )]
    pub cassandra_nodes: Vec<String>,

    /// Cassandra user (PasswordAuthenticator)
    #[arg(
        long,
        value_name = "USER",
        env = "ESSYNC_CASSANDRA_USER",
        global = true
    )]
    pub cassandra_user: Option<String>,

    /// Cassandra password (prefer --cassandra-password-file or ESSYNC_CASSANDRA_PASSWORD)
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "ESSYNC_CASSANDRA_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub cassandra_password: Option<String>,

    /// A file holding the Cassandra password (one line)
    #[arg(
        long,
        value_name = "FILE",
        env = "ESSYNC_CASSANDRA_PASSWORD_FILE",
        conflicts_with = "cassandra_password",
        global = true
    )]
    pub cassandra_password_file: Option<PathBuf>,

    /// Talk to Cassandra over TLS (client encryption), checking its certificate against the
    /// public web roots unless --cassandra-ca is given
    #[arg(long, env = "ESSYNC_CASSANDRA_TLS", global = true)]
    pub cassandra_tls: bool,

    /// PEM file of the certificate authorities Cassandra's certificate is checked against
    /// (implies --cassandra-tls)
    #[arg(long, value_name = "FILE", env = "ESSYNC_CASSANDRA_CA", global = true)]
    pub cassandra_ca: Option<PathBuf>,

    /// PEM file of the client certificate to show Cassandra (mutual TLS, with
    /// --cassandra-key; implies --cassandra-tls)
    #[arg(
        long,
        value_name = "FILE",
        env = "ESSYNC_CASSANDRA_CERT",
        requires = "cassandra_key",
        global = true
    )]
    pub cassandra_cert: Option<PathBuf>,

    /// PEM file of the client certificate's private key
    #[arg(
        long,
        value_name = "FILE",
        env = "ESSYNC_CASSANDRA_KEY",
        requires = "cassandra_cert",
        global = true
    )]
    pub cassandra_key: Option<PathBuf>,

    /// Accept any Cassandra TLS certificate (self-signed test clusters only; implies
    /// --cassandra-tls)
    #[arg(long, global = true)]
    pub cassandra_insecure: bool,

    /// The most bytes of one Elasticsearch bulk request, in MiB (a request is also cut at
    /// 1,000 documents)
    #[arg(
        long,
        value_name = "MIB",
        env = "ESSYNC_ES_BULK_MIB",
        default_value_t = 16,
        value_parser = clap::value_parser!(u32).range(1..=100),
        global = true
    )]
    pub es_bulk_mib: u32,

    /// How many Elasticsearch bulk requests essync keeps in flight at once
    #[arg(
        long,
        value_name = "N",
        env = "ESSYNC_ES_BULK_IN_FLIGHT",
        default_value_t = 4,
        value_parser = clap::value_parser!(u32).range(1..=64),
        global = true
    )]
    pub es_bulk_in_flight: u32,

    /// How essync's Cassandra writes stay race-safe: `fenced` (plain writes at one microsecond
    /// after the write time read, at the pace of the cluster) or `lwt` (lightweight
    /// transactions, a Paxos round per row)
    #[arg(
        long,
        value_name = "MODE",
        env = "ESSYNC_CASSANDRA_WRITES",
        default_value = "fenced",
        value_parser = parse_write_mode,
        global = true
    )]
    pub cassandra_writes: essync::cassandra::WriteMode,

    /// Consistency level of essync's reads: LOCAL_QUORUM overlaps every LOCAL_QUORUM write of
    /// the datacenter, so a round sees what the last one wrote
    #[arg(
        long,
        value_name = "LEVEL",
        env = "ESSYNC_CASSANDRA_READ_CONSISTENCY",
        default_value = "local-quorum",
        value_parser = parse_consistency,
        global = true
    )]
    pub cassandra_read_consistency: Consistency,

    /// Consistency level of essync's writes: LOCAL_QUORUM survives the loss of a replica and
    /// does not wait for other datacenters
    #[arg(
        long,
        value_name = "LEVEL",
        env = "ESSYNC_CASSANDRA_WRITE_CONSISTENCY",
        default_value = "local-quorum",
        value_parser = parse_consistency,
        global = true
    )]
    pub cassandra_write_consistency: Consistency,

    /// Consistency level of the compare-and-set (Paxos) phase of writes: SERIAL keeps them
    /// linearizable across datacenters; LOCAL_SERIAL is faster when every essync writing the
    /// table runs in one datacenter
    #[arg(
        long,
        value_name = "LEVEL",
        env = "ESSYNC_CASSANDRA_SERIAL_CONSISTENCY",
        default_value = "serial",
        value_parser = parse_serial_consistency,
        global = true
    )]
    pub cassandra_serial_consistency: SerialConsistency,

    /// The datacenter essync is in: requests go to its nodes, and LOCAL_* levels mean it
    /// (needed on a cluster of several datacenters)
    #[arg(
        long = "cassandra-local-dc",
        value_name = "NAME",
        env = "ESSYNC_CASSANDRA_LOCAL_DC",
        global = true
    )]
    pub cassandra_local_dc: Option<String>,

    /// The longest one Cassandra request may take, in seconds (also the bound of a connection
    /// attempt): a node that does not answer within it fails the round, which is tried again
    /// after a backoff
    #[arg(
        long,
        value_name = "SECONDS",
        env = "ESSYNC_CASSANDRA_TIMEOUT",
        default_value = "30",
        value_parser = parse_timeout,
        global = true
    )]
    pub cassandra_timeout: Duration,

    /// The replication of a keyspace essync creates, as a CQL map
    #[arg(
        long,
        value_name = "CQL_MAP",
        env = "ESSYNC_CASSANDRA_REPLICATION",
        default_value = "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        global = true
    )]
    pub replication: String,
}

/// The options of the command line that `essync policy` keeps: the others (the stores, the
/// config file) are the sync's, and `essync errors`'s.
const POLICY_OPTIONS: [&str; 2] = ["verbose", "policy_cache"];

/// The `essync policy` commands that load no policy, so have no use for `--policy-cache`.
const POLICY_COMMANDS_WITHOUT_CACHE: [&str; 2] = ["new", "wit"];

/// The command line as clap runs it: [`Cli`], with each policy command showing and taking only
/// the options it uses.
///
/// The sync's options are global, so that `essync errors` takes them wherever they stand on its
/// line; clap gives a global option to every subcommand, except one that defines an option of
/// the same id. So `essync policy` defines, in place of each sync option, a hidden one that
/// refuses to be given ([`NotAPolicyOption`]); its own subcommands then do not know the option
/// at all. `new` and `wit` do the same with `--policy-cache`.
pub fn command() -> clap::Command {
    let command = Cli::command();
    let foreign: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|arg| arg.is_global_set() && !POLICY_OPTIONS.contains(&arg.get_id().as_str()))
        .cloned()
        .collect();
    let cache = command
        .get_arguments()
        .find(|arg| arg.get_id() == "policy_cache")
        .cloned();
    command.mut_subcommand("policy", |policy| {
        let policy = foreign.iter().fold(policy, |policy, arg| {
            policy.arg(refused(arg, "policy", "policy commands use no database"))
        });
        POLICY_COMMANDS_WITHOUT_CACHE
            .iter()
            .fold(policy, |policy, name| match &cache {
                Some(cache) => policy.mut_subcommand(name, |sub| {
                    sub.arg(refused(
                        cache,
                        &format!("policy {name}"),
                        "it loads no policy",
                    ))
                }),
                None => policy,
            })
    })
}

/// A hidden option that stands in for `arg` in `essync COMMAND` and refuses any use, saying
/// why.
fn refused(arg: &clap::Arg, command: &str, why: &'static str) -> clap::Arg {
    let flag = arg
        .get_long()
        .map(|long| format!("--{long}"))
        .unwrap_or_else(|| arg.get_id().to_string());
    let command = command.to_string();
    arg.clone()
        .hide(true)
        .global(false)
        .env(None)
        .default_value(None)
        .value_delimiter(None)
        .requires(clap::builder::Resettable::Reset)
        .conflicts_with(clap::builder::Resettable::Reset)
        .action(clap::ArgAction::Set)
        .num_args(0..=1)
        .default_missing_value("")
        .value_parser(move |_: &str| -> Result<String, NotAPolicyOption> {
            Err(NotAPolicyOption {
                flag: flag.clone(),
                command: command.clone(),
                why,
            })
        })
}

/// An option of the sync given to a policy command.
#[derive(Debug, thiserror::Error)]
#[error("{flag} is not an option of `essync {command}`: {why} (see essync {command} --help)")]
pub struct NotAPolicyOption {
    flag: String,
    command: String,
    why: &'static str,
}

impl SyncOptions {
    /// The compile cache the command line asks for.
    pub fn compile_cache(&self) -> CompileCache {
        self.policy_cache
            .clone()
            .unwrap_or_else(CompileCache::default_location)
    }
}

/// Subcommands beside the sync itself.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write, check, test or benchmark a policy component, with no database
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// List the documents of a sync that could not be synced, with their reasons
    Errors {
        /// The synced table, KEYSPACE:TABLE
        #[arg(value_name = "KEYSPACE:TABLE", value_parser = parse_target)]
        target: Target,
        /// Forget every recorded failure (they are recorded again if they fail again)
        #[arg(long)]
        clear: bool,
    },
    /// Show which essync process syncs a table, its checkpoint and its recorded failures
    Status {
        /// The synced table, KEYSPACE:TABLE
        #[arg(value_name = "KEYSPACE:TABLE", value_parser = parse_target)]
        target: Target,
    },
}

/// `essync policy ...`
#[derive(Debug, Subcommand)]
#[command(
    after_help = "Policy commands use no database: the options of the sync do not apply to them \
                  (see docs/policies.md in essync's repository for writing, testing and running \
                  a policy)."
)]
pub enum PolicyCommand {
    /// Write a ready policy project into the folder NAME: the WIT, a build script, cases, unit
    /// tests and a README
    New {
        /// The folder to create (its name names the policy)
        name: PathBuf,
        /// The language of the policy
        #[arg(long, value_enum)]
        lang: Lang,
    },
    /// Print the WIT of the policy interface this essync was built with
    Wit,
    /// Validate a policy component and print its world and version, its exports, and how
    /// essync answers each of its imports (provided in a sandbox, or denied)
    Check {
        /// The component (.wasm); `builtin` names the built-in default policy
        policy: PathBuf,
    },
    /// Run a policy component on fixture cases and report pass/fail per case
    #[command(after_help = CASES_HELP, after_long_help = CASES_LONG_HELP)]
    Test {
        /// The component (.wasm); `builtin` names the built-in default policy
        policy: PathBuf,
        /// The cases file (JSON; its format is below)
        cases: PathBuf,
    },
    /// Measure a policy component: load time, cost per document of filter and resolve in
    /// batches of 1,000 made from the cases, peak memory per call
    Bench {
        /// The component (.wasm); `builtin` names the built-in default policy
        policy: PathBuf,
        /// The cases file (JSON) whose inputs make the batches
        cases: PathBuf,
    },
}

/// What `essync policy test -h` says about the cases file.
const CASES_HELP: &str = "CASES is a JSON file: {\"cases\": [{\"name\", \"kind\": \"filter\" or \
                          \"resolve\", \"input\", \"expect\"}, ...]}. --help describes it; the \
                          cases format in full: docs/policies.md in essync's repository.";

/// What `essync policy test --help` says about the cases file: the format in brief, for those who
/// installed the binary alone.
const CASES_LONG_HELP: &str = "\
The cases format (in full, with examples: docs/policies.md in essync's repository; `essync policy \
new` writes a cases.json to start from):

  {\"cases\": [ {\"name\": \"...\", \"kind\": \"filter\", \"input\": {...}, \"expect\": ...}, ... ]}

  kind     filter or resolve
  input    filter: {\"side\": \"elasticsearch\" | \"cassandra\", \"document\": DOC, \"deleted\": false}
           resolve: {\"id\"?, \"base\"?: DOC, \"elasticsearch\"?: DOC, \"cassandra\"?: DOC}
             (an absent version: that side deleted the document, or never had it)
  DOC      {\"index\": \"books\", \"timestamp\": \"2024-05-01T10:00:00Z\" or milliseconds,
            \"content\"?: {...}, \"type\"?: \"_doc\", \"stamp\"?: \"written\" | \"observed\", \"id\"?: UUID}
  expect   filter: \"keep\", \"skip\", {\"skip\": \"reason\"}, {\"transform\": DOC}
           resolve: \"unchanged\", \"use-elasticsearch\", \"use-cassandra\", \"delete\", {\"write\": DOC}
           both: \"error\", or {\"error\": \"text the message contains\"}

Every case passes or prints a diff of the expected and the actual answer; the command exits with \
1 when one fails. The filter cases run as one batch and the resolve cases as another, as in a \
sync round.";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event, for people
    Text,
    /// One JSON object per line, for programs
    Json,
}

/// The languages `essync policy new` writes a project in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust, built with cargo for wasm32-wasip2
    Rust,
    /// Python, built with componentize-py
    Python,
    /// JavaScript, built with componentize-js
    Js,
}

/// KEYSPACE:TABLE, validated as Cassandra identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The keyspace.
    pub keyspace: String,
    /// The table.
    pub table: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.keyspace, self.table)
    }
}

fn parse_target(s: &str) -> Result<Target, String> {
    let (keyspace, table) = s.split_once(':').ok_or_else(|| {
        format!("'{s}' is not KEYSPACE:TABLE (the ':' and the table are missing)")
    })?;
    for (what, name) in [("keyspace", keyspace), ("table", table)] {
        if name.is_empty() {
            return Err(format!("the {what} name in '{s}' is empty"));
        }
        let valid = name.len() <= 48
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        if !valid {
            return Err(format!(
                "'{name}' is not a valid {what} name (letters, digits and '_', starting with a letter, at most 48)"
            ));
        }
    }
    Ok(Target {
        keyspace: keyspace.to_string(),
        table: table.to_string(),
    })
}

fn parse_write_mode(s: &str) -> Result<essync::cassandra::WriteMode, String> {
    match s {
        "fenced" => Ok(essync::cassandra::WriteMode::Fenced),
        "lwt" => Ok(essync::cassandra::WriteMode::Lwt),
        other => Err(format!("'{other}' is not a write mode (fenced or lwt)")),
    }
}

/// The consistency levels, as CQL names them, with `-` or `_`, in any case.
const CONSISTENCY_LEVELS: [(&str, Consistency); 9] = [
    ("any", Consistency::Any),
    ("one", Consistency::One),
    ("two", Consistency::Two),
    ("three", Consistency::Three),
    ("quorum", Consistency::Quorum),
    ("all", Consistency::All),
    ("local-quorum", Consistency::LocalQuorum),
    ("each-quorum", Consistency::EachQuorum),
    ("local-one", Consistency::LocalOne),
];

fn parse_consistency(s: &str) -> Result<Consistency, String> {
    let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
    CONSISTENCY_LEVELS
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, level)| *level)
        .ok_or_else(|| {
            format!(
                "'{s}' is not a consistency level (one of any, one, two, three, quorum, all, \
                 local-quorum, each-quorum, local-one)"
            )
        })
}

fn parse_serial_consistency(s: &str) -> Result<SerialConsistency, String> {
    match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
        "serial" => Ok(SerialConsistency::Serial),
        "local-serial" => Ok(SerialConsistency::LocalSerial),
        _ => Err(format!(
            "'{s}' is not a serial consistency level (serial or local-serial)"
        )),
    }
}

fn parse_cache(s: &str) -> Result<CompileCache, String> {
    match s.trim() {
        "" => Err("the policy cache needs a directory, or `off`".to_string()),
        "off" => Ok(CompileCache::Off),
        dir => Ok(CompileCache::Dir(PathBuf::from(dir))),
    }
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let seconds: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("'{s}' is not between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A lease's time to live: whole seconds, at least 3 (renewed every third), at most a day.
fn parse_lease_ttl(s: &str) -> Result<Duration, String> {
    let ttl = parse_seconds(s)?;
    if ttl < Duration::from_secs(3) || ttl.subsec_nanos() != 0 {
        return Err(format!(
            "'{s}' is not a whole number of seconds, at least 3"
        ));
    }
    Ok(ttl)
}

/// A number of ranges: 1 to [`essync::sync::ranges::MAX_RANGES`].
fn parse_ranges(s: &str) -> Result<u32, String> {
    let max = essync::sync::ranges::MAX_RANGES;
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("'{s}' is not a number of ranges from 1 to {max}")),
    }
}

/// A request timeout: a positive number of seconds, at most a day.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let timeout = parse_seconds(s)?;
    if timeout < Duration::from_millis(100) {
        return Err(format!(
            "'{s}' is too short for a request timeout (at least 0.1 seconds)"
        ));
    }
    Ok(timeout)
}

fn parse_period(s: &str) -> Result<Duration, String> {
    let seconds: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("the period must be more than 0 seconds, not '{s}'"));
    }
    if seconds > 31_536_000.0 {
        return Err(format!("a period of '{s}' seconds is more than a year"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
        command().debug_assert();
    }

    #[test]
    fn request_timeouts_have_defaults_and_refuse_nothing_and_text() {
        let cli = Cli::try_parse_from(["essync", "ks:t", "5"]).unwrap();
        assert_eq!(cli.connection.es_timeout, Duration::from_secs(60));
        assert_eq!(cli.connection.cassandra_timeout, Duration::from_secs(30));
        let cli = Cli::try_parse_from([
            "essync",
            "--es-timeout",
            "2.5",
            "--cassandra-timeout",
            "3",
            "ks:t",
            "5",
        ])
        .unwrap();
        assert_eq!(cli.connection.es_timeout, Duration::from_millis(2500));
        assert_eq!(cli.connection.cassandra_timeout, Duration::from_secs(3));
        assert!(parse_timeout("0").unwrap_err().contains("too short"));
        assert!(parse_timeout("soon").is_err());
    }

    #[test]
    fn targets_need_a_keyspace_and_a_table() {
        assert!(parse_target("ks").unwrap_err().contains("KEYSPACE:TABLE"));
        assert!(parse_target("ks:").unwrap_err().contains("table name"));
        assert!(parse_target(":t").unwrap_err().contains("keyspace name"));
        assert!(
            parse_target("ks:t-1")
                .unwrap_err()
                .contains("not a valid table")
        );
        let target = parse_target("shop:products").unwrap();
        assert_eq!(target.to_string(), "shop.products");
    }

    #[test]
    fn periods_are_positive_seconds() {
        assert!(parse_period("0").is_err());
        assert!(parse_period("-1").is_err());
        assert!(parse_period("ten").is_err());
        assert!(parse_period("NaN").is_err());
        assert_eq!(parse_period("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_period("0.5").unwrap(), Duration::from_millis(500));
    }

    #[test]
    fn consistency_levels_are_read_as_cql_names_them() {
        assert_eq!(
            parse_consistency("LOCAL_QUORUM").unwrap(),
            Consistency::LocalQuorum
        );
        assert_eq!(
            parse_consistency("each-quorum").unwrap(),
            Consistency::EachQuorum
        );
        assert!(parse_consistency("serial").is_err());
        assert!(
            parse_consistency("most")
                .unwrap_err()
                .contains("local-quorum")
        );
        assert_eq!(
            parse_serial_consistency("LOCAL_SERIAL").unwrap(),
            SerialConsistency::LocalSerial
        );
        assert!(parse_serial_consistency("quorum").is_err());
    }

    #[test]
    fn subcommands_need_no_target() {
        let cli = Cli::try_parse_from(["essync", "policy", "check", "p.wasm"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Policy(PolicyCommand::Check { .. }))
        ));
        assert!(Cli::try_parse_from(["essync", "ks:t"]).is_err());
        let cli = Cli::try_parse_from(["essync", "-s", "ks:t", "5"]).unwrap();
        assert!(cli.sync.sync_existing);
    }

    #[test]
    fn the_policy_cache_is_a_directory_or_off_and_reloading_needs_a_policy_file() {
        let cli =
            Cli::try_parse_from(["essync", "policy", "wit", "--policy-cache", "off"]).unwrap();
        assert_eq!(cli.sync.compile_cache(), CompileCache::Off);
        let cli = Cli::try_parse_from(["essync", "--policy-cache", "/tmp/c", "ks:t", "5"]).unwrap();
        assert_eq!(
            cli.sync.compile_cache(),
            CompileCache::Dir(PathBuf::from("/tmp/c"))
        );
        assert!(Cli::try_parse_from(["essync", "--policy-reload", "ks:t", "5"]).is_err());
        let cli = Cli::try_parse_from([
            "essync",
            "--policy",
            "p.wasm",
            "--policy-reload",
            "ks:t",
            "5",
        ])
        .unwrap();
        assert!(cli.sync.policy_reload);
        let cli = Cli::try_parse_from(["essync", "policy", "new", "p", "--lang", "js"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Policy(PolicyCommand::New { lang: Lang::Js, .. }))
        ));
    }
}
