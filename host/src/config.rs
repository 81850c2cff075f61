//! Settings from a TOML file (`--config FILE`, or `ESSYNC_CONFIG`), merged under the command
//! line and the environment, and `--print-config`.
//!
//! The file's keys are the long option names without `--` (`es-url`, `sweep-rows`, ...) plus
//! `target` and `period` for the two positional arguments: they are read off the clap
//! definition of the command line, so every option, including one added later, can be set in a
//! file with no code of its own here. A value from the file is handed to clap as if it had
//! been typed, so it is checked by the same parser as the option; an unknown key, a value of
//! the wrong kind or a value the option refuses is reported with the file's line.
//!
//! Precedence: the command line, then `ESSYNC_*` environment variables, then the file, then the
//! built-in defaults.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, FromArgMatches};

use crate::cli::{self, Cli};

/// Options that are about the file itself, or actions, not settings.
const NOT_SETTINGS: [&str; 4] = ["help", "version", "config", "print_config"];

/// Why the settings could not be read.
#[derive(Debug)]
pub enum Error {
    /// The command line itself (clap's own error, with `--help` and `--version` among them).
    CommandLine(clap::Error),
    /// The config file: one line, naming the file (and the line, when it is about one).
    File(String),
}

impl From<clap::Error> for Error {
    fn from(error: clap::Error) -> Self {
        Error::CommandLine(error)
    }
}

/// The command line with the config file merged in.
pub struct Settings {
    /// What the program runs with.
    pub cli: Cli,
    /// Where each value came from, for `--print-config`.
    matches: ArgMatches,
    /// The options whose values came from the file.
    from_file: BTreeSet<String>,
    /// The file, if any.
    file: Option<PathBuf>,
}

/// Parses `args` (the program's name first), merging in the config file if one is named.
pub fn parse(args: Vec<OsString>) -> Result<Settings, Error> {
    // First pass: what the command line and the environment say, positional arguments not yet
    // required (the file may give them).
    let first = match relaxed().try_get_matches_from(&args) {
        Ok(matches) => matches,
        // --help and --version as the real command shows them.
        Err(e) if !e.use_stderr() => {
            return Err(cli::command()
                .try_get_matches_from(&args)
                .err()
                .unwrap_or(e)
                .into());
        }
        Err(e) => return Err(e.into()),
    };
    let file = first.get_one::<PathBuf>("config").cloned();
    // Each option the file sets, and where ("FILE, line N").
    let mut from_file = BTreeMap::new();
    let mut merged = args.clone();
    if let Some(path) = &file {
        let (options, positionals) = from_config_file(path, &first, &mut from_file)?;
        let at = 1.min(merged.len());
        merged.splice(at..at, options);
        merged.extend(positionals);
    }
    let print = first.get_flag("print_config");
    // --print-config shows what is set even when the positional arguments are not.
    let mut command = if print { relaxed() } else { cli::command() };
    let matches = command
        .try_get_matches_from_mut(&merged)
        .map_err(|e| blame_file(e, &command, &from_file))?;
    let cli = Cli::from_arg_matches(&matches)?;
    Ok(Settings {
        cli,
        matches,
        from_file: from_file.into_keys().collect(),
        file,
    })
}

impl Settings {
    /// Whether `--print-config` was asked for.
    pub fn print_requested(&self) -> bool {
        self.cli.print_config
    }

    /// The settings in effect, as a config file: one line per option, with where its value
    /// came from; secrets masked.
    pub fn print(&self) -> String {
        let command = cli::command();
        let mut out = String::from(
            "# essync's settings in effect: the command line overrides the environment, which\n\
             # overrides the config file, which overrides the defaults. Secrets are masked.\n",
        );
        if let Some(file) = &self.file {
            out.push_str(&format!("# config file: {}\n", file.display()));
        }
        for arg in settings(&command) {
            let id = arg.get_id().as_str();
            let key = key_of(arg);
            let source = match self.matches.value_source(id) {
                Some(_) if self.from_file.contains(id) => "config file".to_string(),
                Some(ValueSource::CommandLine) => "command line".to_string(),
                Some(ValueSource::EnvVariable) => match arg.get_env() {
                    Some(name) => format!("environment, {}", name.to_string_lossy()),
                    None => "environment".to_string(),
                },
                Some(ValueSource::DefaultValue) => "default".to_string(),
                _ => "not set".to_string(),
            };
            let value = match arg.get_action() {
                ArgAction::SetTrue | ArgAction::SetFalse => {
                    Some(self.matches.get_flag(id).to_string())
                }
                ArgAction::Count => Some(self.matches.get_count(id).to_string()),
                _ => self.matches.get_raw(id).map(|raw| {
                    let values: Vec<String> = raw
                        .map(|v| {
                            if is_secret(arg) {
                                toml_string("********")
                            } else {
                                toml_scalar(&v.to_string_lossy())
                            }
                        })
                        .collect();
                    if takes_many(arg) {
                        format!("[{}]", values.join(", "))
                    } else {
                        values.join(", ")
                    }
                }),
            };
            match value {
                Some(value) => out.push_str(&format!("{key} = {value}  # {source}\n")),
                None => out.push_str(&format!("# {key} = ({source})\n")),
            }
        }
        out
    }
}

/// A value the file gave that its option refuses is reported with the file's line; any other
/// error is the command line's.
fn blame_file(
    error: clap::Error,
    command: &Command,
    from_file: &BTreeMap<String, String>,
) -> Error {
    let Some(ContextValue::String(shown)) = error.get(ContextKind::InvalidArg) else {
        return error.into();
    };
    let culprit = command.get_arguments().find(|arg| {
        let ours = match arg.get_long() {
            Some(long) => shown == &format!("--{long}") || shown.starts_with(&format!("--{long} ")),
            None => arg
                .get_value_names()
                .is_some_and(|names| names.iter().any(|n| shown == &format!("<{n}>"))),
        };
        ours && from_file.contains_key(arg.get_id().as_str())
    });
    match culprit.and_then(|arg| from_file.get(arg.get_id().as_str())) {
        Some(at) => Error::File(format!("{at}: {}", clap_line(&error))),
        None => error.into(),
    }
}

/// The command with its positional arguments optional.
fn relaxed() -> Command {
    cli::command().mut_args(|arg| {
        if arg.is_positional() {
            arg.required(false)
        } else {
            arg
        }
    })
}

/// The options a file may set: every argument of the top-level command (the global ones the
/// subcommands share among them), but help, version and the config options.
fn settings(command: &Command) -> impl Iterator<Item = &Arg> {
    command
        .get_arguments()
        .filter(|arg| !NOT_SETTINGS.contains(&arg.get_id().as_str()))
}

/// The key of an option in a config file: its long name, or its id for a positional argument.
fn key_of(arg: &Arg) -> String {
    arg.get_long()
        .map(str::to_string)
        .unwrap_or_else(|| arg.get_id().to_string())
}

/// Options whose values are secrets say so by hiding their environment values from `--help`.
fn is_secret(arg: &Arg) -> bool {
    arg.is_hide_env_values_set()
}

fn takes_many(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
}

fn given(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// The options (to put before the command line's arguments) and positional arguments (to put
/// after them) that the file adds.
fn from_config_file(
    path: &Path,
    first: &ArgMatches,
    from_file: &mut BTreeMap<String, String>,
) -> Result<(Vec<OsString>, Vec<OsString>), Error> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::File(format!("cannot read the config file {shown}: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| Error::File(format!("{shown}: {}", one_line(&e))))?;
    let lines = key_lines(&text);
    let line_of = |key: &str| lines.get(key).copied().unwrap_or(1);

    let mut command = cli::command();
    command.build();
    let by_key: BTreeMap<String, &Arg> = settings(&command).map(|a| (key_of(a), a)).collect();
    let subcommand = first.subcommand_name().is_some();
    let positionals_given = command
        .get_positionals()
        .any(|arg| first.value_source(arg.get_id().as_str()).is_some());

    let mut options = Vec::new();
    let mut positionals = Vec::new();
    for (key, value) in &table {
        let at = format!("{shown}, line {}", line_of(key));
        let Some(arg) = by_key.get(key.as_str()) else {
            let why = if NOT_SETTINGS.contains(&key.replace('-', "_").as_str()) {
                format!("'{key}' cannot be set in a config file")
            } else {
                format!(
                    "unknown setting '{key}' (the settings are the long options of essync --help \
                     without '--', and target and period)"
                )
            };
            return Err(Error::File(format!("{at}: {why}")));
        };
        if overridden(&command, first, arg) {
            continue;
        }
        match added(arg, key, value, &at)? {
            Added::Options(added) => options.extend(added),
            Added::Positional(..) if subcommand || positionals_given => continue,
            Added::Positional(index, value) => positionals.push((index, value)),
        }
        from_file.insert(arg.get_id().to_string(), at);
    }
    positionals.sort_by_key(|(index, _)| *index);
    // The positional arguments go after a `--`, so that a value starting with '-' stays one.
    let positionals: Vec<OsString> = if positionals.is_empty() {
        Vec::new()
    } else {
        std::iter::once(OsString::from("--"))
            .chain(positionals.into_iter().map(|(_, v)| v))
            .collect()
    };
    Ok((options, positionals))
}

/// Whether the command line or the environment gives `arg`, or an option that excludes it (a
/// password file given on the command line over a password in the file): they win.
fn overridden(command: &clap::Command, first: &ArgMatches, arg: &Arg) -> bool {
    let excludes = |a: &Arg, b: &Arg| {
        command
            .get_arg_conflicts_with(a)
            .iter()
            .any(|c| c.get_id() == b.get_id())
    };
    given(first, arg.get_id().as_str())
        || command.get_arguments().any(|other| {
            given(first, other.get_id().as_str()) && (excludes(arg, other) || excludes(other, arg))
        })
}

/// What one setting of the file adds to the command line.
enum Added {
    Options(Vec<OsString>),
    /// A positional argument, at its index.
    Positional(usize, OsString),
}

/// The arguments the setting `key = value` of the file stands for (`at` says where it is).
fn added(arg: &Arg, key: &str, value: &toml::Value, at: &str) -> Result<Added, Error> {
    let flag = format!("--{key}");
    let refused = |why: &str| Error::File(format!("{at}: '{key}' {why}"));
    match arg.get_action() {
        ArgAction::SetTrue => match value {
            toml::Value::Boolean(true) => Ok(Added::Options(vec![OsString::from(&flag)])),
            toml::Value::Boolean(false) => Ok(Added::Options(Vec::new())),
            _ => Err(refused("must be true or false")),
        },
        ArgAction::Count => match value.as_integer() {
            Some(n) if (0..=8).contains(&n) => Ok(Added::Options(
                (0..n).map(|_| OsString::from(&flag)).collect(),
            )),
            _ => Err(refused("must be a number from 0 to 8")),
        },
        _ => {
            let values = scalars(value).ok_or_else(|| {
                refused(if takes_many(arg) {
                    "must be a string, a number, a boolean or an array of them"
                } else {
                    "must be a string, a number, a boolean"
                })
            })?;
            if values.len() != 1 && !takes_many(arg) {
                return Err(refused("takes one value"));
            }
            if arg.is_positional() {
                let index = arg.get_index().unwrap_or(usize::MAX);
                return Ok(Added::Positional(index, OsString::from(&values[0])));
            }
            Ok(Added::Options(
                values
                    .iter()
                    .map(|v| OsString::from(format!("{flag}={v}")))
                    .collect(),
            ))
        }
    }
}

/// A TOML value as option values: a scalar is one, an array of scalars is several.
fn scalars(value: &toml::Value) -> Option<Vec<String>> {
    match value {
        toml::Value::String(s) => Some(vec![s.clone()]),
        toml::Value::Integer(n) => Some(vec![n.to_string()]),
        toml::Value::Float(f) => Some(vec![f.to_string()]),
        toml::Value::Boolean(b) => Some(vec![b.to_string()]),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::Array(_) | toml::Value::Table(_) => None,
                other => scalars(other).map(|mut v| v.remove(0)),
            })
            .collect(),
        toml::Value::Datetime(_) | toml::Value::Table(_) => None,
    }
}

/// The line (from 1) of each top-level key of a TOML document.
fn key_lines(text: &str) -> BTreeMap<String, usize> {
    let Ok(document) = toml::de::DeTable::parse(text) else {
        return BTreeMap::new();
    };
    let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    document
        .get_ref()
        .iter()
        .map(|(key, _)| (key.get_ref().to_string(), line(key.span().start)))
        .collect()
}

/// A TOML error on one line: its message and where it is.
fn one_line(error: &toml::de::Error) -> String {
    let message = error.message().trim().replace('\n', " ");
    match error.span() {
        Some(_) => {
            let first = error.to_string();
            let location = first
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("TOML parse error at ")
                .to_string();
            format!("{location}: {message}")
        }
        None => message,
    }
}

/// The first line of a clap error, without its "error: ".
fn clap_line(error: &clap::Error) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string()
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A value as TOML: a number when it reads as one, a string otherwise.
fn toml_scalar(s: &str) -> String {
    if s.parse::<i64>().is_ok() || (s.parse::<f64>().is_ok_and(f64::is_finite) && s.contains('.')) {
        s.to_string()
    } else {
        toml_string(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("essync-config-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn parse_with(path: &Path, args: &[&str]) -> Result<Settings, Error> {
        let mut all: Vec<OsString> = vec!["essync".into(), "--config".into(), path.into()];
        all.extend(args.iter().map(OsString::from));
        parse(all)
    }

    fn file_error(result: Result<Settings, Error>) -> String {
        match result {
            Err(Error::File(message)) => message,
            Err(Error::CommandLine(e)) => panic!("a command-line error: {e}"),
            Ok(_) => panic!("no error"),
        }
    }

    #[test]
    fn every_option_is_a_key_and_the_command_line_overrides_the_file() {
        let path = file(
            "every",
            "target = \"shop:products\"\nperiod = 5\nsweep-rows = 300\nonce = true\n\
             es-url = [\"http://a:9200\", \"http://b:9200\"]\nverbose = 2\n\
             cassandra-serial-consistency = \"local-serial\"\n",
        );
        let settings = parse_with(&path, &["--sweep-rows", "7"]).unwrap();
        let cli = &settings.cli;
        assert_eq!(cli.target.as_ref().unwrap().to_string(), "shop.products");
        assert_eq!(cli.period.unwrap().as_secs(), 5);
        assert_eq!(cli.sync.sweep_rows, 7);
        assert!(cli.sync.once);
        assert_eq!(cli.verbose, 2);
        // The environment overrides the file (scripts/test sets ESSYNC_ES_URL, for one).
        let urls: Vec<String> = match std::env::var("ESSYNC_ES_URL") {
            Ok(urls) => urls.split(',').map(str::to_string).collect(),
            Err(_) => vec!["http://a:9200".to_string(), "http://b:9200".to_string()],
        };
        assert_eq!(cli.connection.es_urls, urls);
        assert_eq!(
            cli.connection.cassandra_serial_consistency,
            essync::cassandra::SerialConsistency::LocalSerial
        );
        // Positional arguments on the command line replace both of the file's.
        let settings = parse_with(&path, &["other:table", "9"]).unwrap();
        assert_eq!(
            settings.cli.target.as_ref().unwrap().to_string(),
            "other.table"
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn every_long_option_of_the_command_line_can_be_set_in_a_file() {
        let command = cli::command();
        let keys: Vec<String> = settings(&command).map(key_of).collect();
        for key in [
            "es-url",
            "es-password-file",
            "cassandra-local-dc",
            "sync-existing",
            "policy-timeout-ms",
            "target",
            "period",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} is not a setting");
        }
        assert!(!keys.iter().any(|k| k == "config" || k == "help"));
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name_and_line() {
        let path = file("unknown", "period = 5\n\n# a comment\nes-urls = \"x\"\n");
        let message = file_error(parse_with(&path, &["ks:t"]));
        assert!(message.contains("line 4"), "{message}");
        assert!(message.contains("'es-urls'"), "{message}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_bad_value_is_refused_with_the_line_and_the_option_s_own_reason() {
        let path = file("bad", "sweep-rows = \"many\"\n");
        let message = file_error(parse_with(&path, &["ks:t", "5"]));
        assert!(message.contains("line 1"), "{message}");
        assert!(message.contains("--sweep-rows"), "{message}");
        let path = file("flag", "once = \"yes\"\n");
        let message = file_error(parse_with(&path, &["ks:t", "5"]));
        assert!(message.contains("true or false"), "{message}");
        let path = file("syntax", "once = \n");
        let message = file_error(parse_with(&path, &["ks:t", "5"]));
        assert!(message.contains("line 1"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn a_password_file_on_the_command_line_wins_over_a_password_in_the_file() {
        let path = file("password", "es-user = \"u\"\nes-password = \"from-file\"\n");
        let settings = parse_with(&path, &["--es-password-file", "/p", "ks:t", "5"]).unwrap();
        assert_eq!(settings.cli.connection.es_password, None);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn print_config_masks_secrets_and_says_where_each_value_came_from() {
        let path = file(
            "print",
            "es-user = \"essync\"\nes-password = \"hunter2\"\nsweep-rows = 300\n",
        );
        let settings = parse_with(&path, &["--print-config", "--once"]).unwrap();
        assert!(settings.print_requested());
        let printed = settings.print();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("es-password = \"********\"  # config file"),
            "{printed}"
        );
        assert!(
            printed.contains("sweep-rows = 300  # config file"),
            "{printed}"
        );
        assert!(printed.contains("once = true  # command line"), "{printed}");
        assert!(
            printed.contains("safety-window = 5  # default"),
            "{printed}"
        );
        // What it prints is a config file essync reads back.
        let again = file("again", &printed.replace("\"********\"", "\"x\""));
        parse_with(&again, &["ks:t", "5"]).unwrap();
        std::fs::remove_file(path).unwrap();
        std::fs::remove_file(again).unwrap();
    }
}
