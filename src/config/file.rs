//! `ringcast serve --config ringcast.toml`: every option of [`Config`] in a
//! TOML file, under its flag's name (`max-queue-bytes = 1048576`).
//!
//! Precedence: a flag, then its `RINGCAST_*` variable, then the file, then
//! the default. The file's values go through the flags' own parsers (they
//! become flags placed before the real ones, for the options that neither a
//! flag nor a variable set), so a value means the same in all three places;
//! but each is first checked on its own, so that a mistake is reported with
//! the file, the line and the key: an unknown key, a value of the wrong TOML
//! type, or one the option cannot take.

use super::Config;
use clap::parser::ValueSource;
use clap::{Args, FromArgMatches};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// `ringcast serve`'s arguments: the options, and where to read more of them.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// TOML file of options, keyed by flag name without the dashes (e.g.
    /// `idle-timeout = "5m"`); flags and RINGCAST_* variables override it.
    /// See contrib/ringcast.example.toml.
    #[arg(long = "config", env = "RINGCAST_CONFIG", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    #[command(flatten)]
    pub options: Config,
}

/// `ringcast serve`'s arguments as a command (without the program name).
fn serve_command() -> clap::Command {
    ServeArgs::augment_args(clap::Command::new("serve")).no_binary_name(true)
}

/// What a file may say about one option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A string, described for the error message.
    Text(&'static str),
    Integer,
    Bool,
    /// An array of strings.
    List,
}

impl Kind {
    fn expects(self) -> &'static str {
        match self {
            Kind::Text(what) => what,
            Kind::Integer => "a non-negative integer",
            Kind::Bool => "true or false",
            Kind::List => "an array of strings",
        }
    }
}

const DURATION: Kind = Kind::Text("a duration string such as \"30s\" or \"5m\"");
const PATH: Kind = Kind::Text("a file path string");
const TEXT: Kind = Kind::Text("a string");

/// Every option a file may set, by flag name (a test checks that this is
/// every flag of `ringcast serve`).
const OPTIONS: &[(&str, Kind)] = &[
    (
        "http",
        Kind::Text("an address string such as \"127.0.0.1:8090\""),
    ),
    ("workers", Kind::Integer),
    ("idle-timeout", DURATION),
    ("max-lifetime", DURATION),
    ("head-timeout", DURATION),
    ("write-timeout", DURATION),
    ("keepalive-timeout", DURATION),
    ("origins", Kind::List),
    ("admin-token", TEXT),
    ("max-queue-bytes", Kind::Integer),
    ("max-streams-per-ip", Kind::Integer),
    ("max-topics-per-core", Kind::Integer),
    ("max-body-bytes", Kind::Integer),
    ("max-header-bytes", Kind::Integer),
    ("ring-capacity", Kind::Integer),
    ("demo", Kind::Bool),
    ("history", Kind::List),
    ("history-max-bytes", Kind::Integer),
    ("sse-ids", Kind::Text("\"client\" or \"topic\"")),
    ("history-cursor-field", TEXT),
    ("heartbeat", DURATION),
    (
        "auth-pocketbase",
        Kind::Text("a URL string such as \"http://127.0.0.1:8090\""),
    ),
    ("auth-jwt-secret", TEXT),
    ("auth-jwt-public-key", PATH),
    ("auth-jwt-algorithm", TEXT),
    ("auth-cache-size", Kind::Integer),
    ("auth-cache-ttl", DURATION),
    ("rules", PATH),
    ("trusted-proxy", Kind::List),
    (
        "redis",
        Kind::Text("a URL string such as \"redis://127.0.0.1:6379\""),
    ),
    ("redis-prefix", TEXT),
];

/// Why the options could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error(
        "{}:{line}: unknown option `{key}`; the keys are the flags of `ringcast serve --help` without the leading --, e.g. `max-queue-bytes`",
        path.display()
    )]
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
    },
    #[error("{}:{line}: `{key}` must be {expects}, not {found}", path.display())]
    Type {
        path: PathBuf,
        line: usize,
        key: String,
        expects: &'static str,
        found: &'static str,
    },
    #[error("{}:{line}: `{key}`: {reason} (expected {expects})", path.display())]
    Value {
        path: PathBuf,
        line: usize,
        key: String,
        expects: &'static str,
        reason: String,
    },
    /// The flags and variables (or the file's values together with them,
    /// e.g. two token modes) do not parse.
    #[error(transparent)]
    Args(#[from] clap::Error),
}

/// The options `args` (what follows `serve`) ask for, with their
/// `--config` file, if any, filling in what no flag or variable set.
pub fn load(args: &[OsString]) -> Result<Config, ConfigError> {
    let matches = serve_command().try_get_matches_from(args)?;
    let Some(path) = matches.get_one::<PathBuf>("config_file").cloned() else {
        return Ok(ServeArgs::from_arg_matches(&matches)?.options);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let mut argv = from_file(&path, &text, |id| {
        matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    })?;
    argv.extend(args.iter().cloned());
    let matches = serve_command().try_get_matches_from(argv)?;
    Ok(ServeArgs::from_arg_matches(&matches)?.options)
}

/// The file's options as flags, each checked; those for which `overridden`
/// (by the option's id) is true are checked and left out.
fn from_file(
    path: &Path,
    text: &str,
    overridden: impl Fn(&str) -> bool,
) -> Result<Vec<OsString>, ConfigError> {
    let table: BTreeMap<Spanned<String>, Spanned<toml::Value>> =
        toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
    let mut entries: Vec<_> = table.into_iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    // The isolated checks must not read the environment: only the file's
    // value is being judged.
    let checker = serve_command().mut_args(|arg| arg.env(None::<&str>));
    let mut argv = Vec::new();
    for (key, value) in entries {
        let line = line_of(text, key.span().start);
        let key = key.into_inner();
        let Some(&(_, kind)) = OPTIONS.iter().find(|(name, _)| *name == key) else {
            return Err(ConfigError::UnknownKey {
                path: path.to_owned(),
                line,
                key,
            });
        };
        let flags = as_flags(&key, kind, value.get_ref()).ok_or_else(|| ConfigError::Type {
            path: path.to_owned(),
            line,
            key: key.clone(),
            expects: kind.expects(),
            found: value.get_ref().type_str(),
        })?;
        if let Err(e) = checker.clone().try_get_matches_from(&flags) {
            return Err(ConfigError::Value {
                path: path.to_owned(),
                line,
                key,
                expects: kind.expects(),
                reason: clap_reason(&e),
            });
        }
        let id = checker
            .get_arguments()
            .find(|a| a.get_long() == Some(&key))
            .map(|a| a.get_id().as_str().to_owned())
            .unwrap_or_default();
        if !overridden(&id) {
            argv.extend(flags);
        }
    }
    Ok(argv)
}

/// `key = value` as the flags that say the same, or `None` if the value is
/// not of the option's TOML type.
fn as_flags(key: &str, kind: Kind, value: &toml::Value) -> Option<Vec<OsString>> {
    let flag = |v: &str| OsString::from(format!("--{key}={v}"));
    match (kind, value) {
        (Kind::Text(_), toml::Value::String(s)) => Some(vec![flag(s)]),
        (Kind::Integer, toml::Value::Integer(n)) => Some(vec![flag(&n.to_string())]),
        (Kind::Bool, toml::Value::Boolean(true)) => Some(vec![OsString::from(format!("--{key}"))]),
        (Kind::Bool, toml::Value::Boolean(false)) => Some(Vec::new()),
        (Kind::List, toml::Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(flag))
            .collect::<Option<Vec<_>>>()
            // An empty list sets nothing: the same as the default.
            .map(|flags| if flags.is_empty() { Vec::new() } else { flags }),
        _ => None,
    }
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// What clap says is wrong with a value, without its usage lines.
fn clap_reason(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn write(text: &str) -> (tempdir::Dir, PathBuf) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("ringcast.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    /// A temporary directory removed on drop (no dependency for one test).
    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let n = N.fetch_add(1, Ordering::Relaxed);
                let path = std::env::temp_dir()
                    .join(format!("ringcast-config-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn flags(path: &Path, text: &str) -> Result<Vec<String>, ConfigError> {
        from_file(path, text, |_| false)
            .map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn every_flag_is_an_option_of_the_file() {
        let command = serve_command();
        let longs: Vec<&str> = command
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|&l| l != "config")
            .collect();
        for long in &longs {
            assert!(
                OPTIONS.iter().any(|(name, _)| name == long),
                "--{long} cannot be set in the file"
            );
        }
        assert_eq!(longs.len(), OPTIONS.len(), "an option that is no flag");
    }

    #[test]
    fn the_file_sets_every_kind_of_option() {
        let (_dir, path) = write("");
        let text = r#"
http = "127.0.0.1:9999"
workers = 3
idle-timeout = "90s"
origins = ["https://a.example", "https://b.example"]
demo = true
trusted-proxy = []
auth-cache-size = 10
"#;
        std::fs::write(&path, text).unwrap();
        let config = load(&args(&["--config", path.to_str().unwrap()])).unwrap();
        assert_eq!(config.http.to_string(), "127.0.0.1:9999");
        assert_eq!(config.workers, Some(3));
        assert_eq!(config.idle_timeout, Duration::from_secs(90));
        assert_eq!(config.origins, ["https://a.example", "https://b.example"]);
        assert!(config.demo);
        assert!(config.auth.trusted_proxy.is_empty());
        assert_eq!(config.auth.auth_cache_size, 10);
        // Untouched options keep their defaults.
        assert_eq!(config.max_topics_per_core, 1_000_000);
    }

    #[test]
    fn a_flag_beats_a_variable_beats_the_file_beats_the_default() {
        let (_dir, path) = write(
            "max-queue-bytes = 1000\nring-capacity = 7\nmax-header-bytes = 5000\nmax-body-bytes = 6000\n",
        );
        // The file alone: a value only the file sets, over the default.
        // (Env: the one variable this test may set; no other test reads it.)
        // SAFETY: this test alone touches this variable.
        unsafe { std::env::set_var("RINGCAST_MAX_HEADER_BYTES", "4000") };
        let config = load(&args(&[
            "--config",
            path.to_str().unwrap(),
            "--max-queue-bytes",
            "2000",
        ]))
        .unwrap();
        unsafe { std::env::remove_var("RINGCAST_MAX_HEADER_BYTES") };
        assert_eq!(config.max_queue_bytes, 2000, "flag over file");
        assert_eq!(config.max_header_bytes, 4000, "variable over file");
        assert_eq!(config.ring_capacity, 7, "file over default");
        assert_eq!(config.max_body_bytes, 6000, "file over default");
        assert_eq!(config.max_lifetime, Duration::from_secs(1800), "default");
        // Flag over variable, as clap does it.
        let matches = serve_command()
            .try_get_matches_from(["--max-queue-bytes", "3"])
            .unwrap();
        assert_eq!(
            matches.value_source("max_queue_bytes"),
            Some(ValueSource::CommandLine)
        );
    }

    #[test]
    fn no_file_is_the_flags_alone() {
        let config = load(&args(&["--workers", "2"])).unwrap();
        assert_eq!(config.workers, Some(2));
    }

    #[test]
    fn an_unknown_key_names_the_key_and_its_line() {
        let (_dir, path) = write("workers = 2\n\nmax-queue-byte = 5\n");
        let err = flags(&path, &std::fs::read_to_string(&path).unwrap()).unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownKey { line: 3, key, .. } if key == "max-queue-byte"),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("ringcast.toml:3: unknown option `max-queue-byte`"),
            "{text}"
        );
        // Snake case is not the flags' spelling.
        assert!(matches!(
            flags(&path, "max_queue_bytes = 5"),
            Err(ConfigError::UnknownKey { .. })
        ));
        // Nor is a table.
        assert!(matches!(
            flags(&path, "[server]\nworkers = 2"),
            Err(ConfigError::UnknownKey { key, .. }) if key == "server"
        ));
    }

    #[test]
    fn a_wrong_type_names_the_key_and_what_it_expects() {
        let (_dir, path) = write("");
        for (text, key, expects, found) in [
            (
                "workers = \"2\"",
                "workers",
                "a non-negative integer",
                "string",
            ),
            (
                "idle-timeout = 30",
                "idle-timeout",
                DURATION.expects(),
                "integer",
            ),
            ("demo = \"yes\"", "demo", "true or false", "string"),
            (
                "origins = \"*\"",
                "origins",
                "an array of strings",
                "string",
            ),
            (
                "origins = [1, 2]",
                "origins",
                "an array of strings",
                "array",
            ),
        ] {
            let err = flags(&path, text).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(&err, ConfigError::Type { key: k, expects: e, found: f, line: 1, .. }
                    if k == key && *e == expects && *f == found),
                "{text}: {err:?}"
            );
            assert!(
                message.contains(&format!("`{key}` must be {expects}")),
                "{message}"
            );
        }
    }

    #[test]
    fn a_value_the_option_cannot_take() {
        let (_dir, path) = write("");
        for (text, key) in [
            ("\n\nidle-timeout = \"soon\"", "idle-timeout"),
            ("\n\nhttp = \"localhost\"", "http"),
            ("\n\nworkers = -1", "workers"),
        ] {
            let err = flags(&path, text).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Value { key: k, line: 3, .. } if k == key),
                "{text}: {err:?}"
            );
        }
    }

    #[test]
    fn syntax_errors_say_where() {
        let (_dir, path) = write("");
        let err = flags(&path, "workers = \n").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = load(&args(&["--config", "/nonexistent/ringcast.toml"])).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    }

    #[test]
    fn the_shipped_example_parses_and_sets_nothing_but_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/ringcast.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            flags(&path, &text).unwrap().is_empty(),
            "every option is commented out"
        );
        // Uncommented, every option parses (checked one by one).
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# ").filter(|l| l.contains(" = ")))
            .filter(|l| !l.starts_with(' '))
            .map(|l| format!("{l}\n"))
            .collect();
        let set = from_file(&path, &uncommented, |_| false).unwrap();
        for (name, _) in OPTIONS {
            assert!(
                uncommented
                    .lines()
                    .any(|l| l.starts_with(&format!("{name} = "))),
                "{name} is not in the example"
            );
        }
        assert!(!set.is_empty());
    }
}
