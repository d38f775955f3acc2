//! `lxd-connector`: drive LXD instances through the sandboxed connector
//! component, following `lxc`'s conventions.
//!
//! Exit codes: `exec` exits with the command's own code. Any failure of
//! lxd-connector itself (bad usage, unreachable remote, missing instance,
//! a failed transfer) exits 255 after printing one line starting with
//! `lxd-connector:` on standard error.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
mod progress;

use progress::{Counted, Progress};

use lxd_connector::{Client, OutputStream, Preconnect, PutOptions, RunOptions, Runtime, RuntimeOptions, Session};

/// Exit code for every failure of lxd-connector itself.
const FAILURE: u8 = 255;

#[derive(Parser)]
#[command(name = "lxd-connector", version, about = "Drive LXD instances through a sandboxed WebAssembly connector")]
struct Cli {
    /// Load this connector component instead of the built-in one.
    #[arg(long, global = true, env = "LXD_CONNECTOR_COMPONENT", value_name = "PATH")]
    component: Option<PathBuf>,
    /// The client config folder (default: $LXD_CONF, ~/.config/lxc, or
    /// snap's; with --incus: $INCUS_CONF, else ~/.config/incus).
    #[arg(long, global = true, value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// Read the incus client's config (remotes, certificates, pins) instead
    /// of lxc's: for Incus servers added with `incus remote add`.
    #[arg(long, global = true)]
    incus: bool,
    /// Compile the component at every start instead of caching it
    /// (cache: $LXD_CONNECTOR_CACHE_DIR, else ~/.cache/lxd-connector).
    #[arg(long, global = true)]
    no_cache: bool,
    /// Use this project instead of the remote's default.
    #[arg(long, global = true, value_name = "NAME")]
    project: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command through `sh -c` in an instance; exits with its code.
    Exec(ExecArgs),
    /// Copy a local file (or `-` for stdin) into an instance.
    Put(PutArgs),
    /// Copy a file out of an instance to a local path (or `-` for stdout).
    Get(GetArgs),
    /// Show the server version, trust and the instance's status.
    Info(InfoArgs),
    /// Write out the connector component (connector.wasm) for another host.
    Component(ComponentArgs),
}

#[derive(Args)]
struct ExecArgs {
    /// The instance: [REMOTE:]INSTANCE.
    instance: String,
    /// Environment variable for the command (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Working directory for the command.
    #[arg(long, value_name = "DIR")]
    cwd: Option<String>,
    /// Numeric user id to run as.
    #[arg(long, value_name = "UID", allow_negative_numbers = true, value_parser = parse_id)]
    user: Option<u32>,
    /// Numeric group id to run as.
    #[arg(long, value_name = "GID", allow_negative_numbers = true, value_parser = parse_id)]
    group: Option<u32>,
    /// Give up waiting after this many seconds (the command keeps running).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true, value_parser = parse_timeout)]
    timeout: Option<u64>,
    /// Never forward standard input, even when it is not a terminal.
    #[arg(short = 'n', long)]
    no_stdin: bool,
    /// The command; several words are joined with spaces, as ssh does.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Args)]
struct PutArgs {
    /// Local file, or `-` for standard input.
    local: PathBuf,
    /// Destination: [REMOTE:]INSTANCE/PATH (a PATH ending in `/` keeps the file's name).
    target: String,
    /// Permission bits in octal (default: the local file's, 0644 for stdin).
    #[arg(long, allow_negative_numbers = true, value_parser = parse_mode)]
    mode: Option<u32>,
    /// Owner uid (default 0).
    #[arg(long, allow_negative_numbers = true, value_parser = parse_id)]
    uid: Option<u32>,
    /// Owner gid (default 0).
    #[arg(long, allow_negative_numbers = true, value_parser = parse_id)]
    gid: Option<u32>,
    /// Create missing parent folders first, as `mkdir -p` does (mode 0755,
    /// owned by root).
    #[arg(short = 'p', long)]
    parents: bool,
}

#[derive(Args)]
struct GetArgs {
    /// Source: [REMOTE:]INSTANCE/PATH.
    source: String,
    /// Local file or folder, or `-` for standard output.
    local: PathBuf,
}

#[derive(Args)]
struct InfoArgs {
    /// The instance: [REMOTE:]INSTANCE.
    instance: String,
}

#[derive(Args)]
struct ComponentArgs {
    /// Write it to FILE instead of standard output.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("lxd-connector: {}", usage_error(&e, std::env::args().skip(1)));
            return ExitCode::from(FAILURE);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(anyhow!("cannot start the async runtime: {e}")),
    };
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(e),
    }
}

fn fail(e: anyhow::Error) -> ExitCode {
    let _ = std::io::stdout().flush();
    eprintln!("lxd-connector: {e:#}");
    ExitCode::from(FAILURE)
}

async fn run(cli: Cli) -> Result<u8> {
    let name = match &cli.command {
        Command::Exec(args) => args.instance.as_str(),
        Command::Info(args) => args.instance.as_str(),
        Command::Put(args) => args.target.split('/').next().unwrap_or_default(),
        Command::Get(args) => args.source.split('/').next().unwrap_or_default(),
        // Loads nothing and reaches no remote.
        Command::Component(args) => return write_component(cli.component.as_deref(), args).map(|()| 0),
    };
    let runtime = Runtime::new(RuntimeOptions {
        // The handshakes overlap with loading the component.
        preconnect: Preconnect::guess(name),
        component: cli.component.clone(),
        client: if cli.incus { Client::Incus } else { Client::Lxc },
        config_dir: cli.config_dir.clone(),
        cache_dir: if cli.no_cache { None } else { lxd_connector::cache::default_dir() },
        ..RuntimeOptions::default()
    })?;
    let project = cli.project.as_deref();
    match cli.command {
        Command::Exec(args) => exec(&runtime, project, args).await,
        Command::Put(args) => put(&runtime, project, args).await.map(|()| 0),
        Command::Get(args) => get(&runtime, project, args).await.map(|()| 0),
        Command::Info(args) => info(&runtime, project, args).await.map(|()| 0),
        Command::Component(_) => unreachable!("written before the runtime loads"),
    }
}

async fn connect(runtime: &Runtime, project: Option<&str>, name: &str) -> Result<Session> {
    let mut target = runtime.parse_name(name).await?;
    if let Some(p) = project {
        target.set("project", p);
    }
    Ok(runtime.connect_target(&target).await?)
}

async fn exec(runtime: &Runtime, project: Option<&str>, args: ExecArgs) -> Result<u8> {
    let env = args.env;
    let stdin = if args.no_stdin || std::io::stdin().is_terminal() {
        None
    } else {
        let mut data = Vec::new();
        std::io::stdin().read_to_end(&mut data).context("reading standard input")?;
        // An empty input reads the same as the /dev/null the command gets
        // anyway, and saves an upload.
        Some(data).filter(|d| !d.is_empty())
    };
    let options = RunOptions {
        stdin,
        // parse_timeout keeps this far from overflowing.
        timeout_ms: args.timeout.map(|s| s.saturating_mul(1000)),
        env,
        cwd: args.cwd,
        user: args.user,
        group: args.group,
    };
    // One command: the connect checks ride along with it.
    let mut session = open(runtime, project, &args.instance).await?;
    // On a terminal the output shows as it grows; piped, it is written
    // whole at the end (and the command costs no round trip more).
    let live = std::io::stdout().is_terminal();
    let command = args.command.join(" ");
    let out = if live {
        session
            .run_live(&command, &options, |stream, data| {
                let _ = match stream {
                    OutputStream::Stdout => std::io::stdout().write_all(data).and_then(|()| std::io::stdout().flush()),
                    OutputStream::Stderr => std::io::stderr().write_all(data).and_then(|()| std::io::stderr().flush()),
                };
            })
            .await?
    } else {
        session.run(&command, &options).await?
    };
    session.close().await;
    if !live {
        std::io::stdout().write_all(&out.stdout).and_then(|()| std::io::stdout().flush()).context("writing stdout")?;
        std::io::stderr().write_all(&out.stderr).and_then(|()| std::io::stderr().flush()).context("writing stderr")?;
    }
    Ok(u8::try_from(out.exit_code).unwrap_or(FAILURE))
}

async fn open(runtime: &Runtime, project: Option<&str>, name: &str) -> Result<Session> {
    let mut target = runtime.parse_name(name).await?;
    if let Some(p) = project {
        target.set("project", p);
    }
    Ok(runtime.open_target(&target).await?)
}

/// Splits `[REMOTE:]INSTANCE/PATH` into the instance name and the absolute path.
fn split_file_target(spec: &str) -> Result<(&str, String)> {
    let instance_end = spec.find(':').map_or(0, |i| i + 1);
    match spec[instance_end..].find('/') {
        Some(i) if i > 0 => Ok((&spec[..instance_end + i], spec[instance_end + i..].to_string())),
        _ => bail!("{spec:?}: give the file as [REMOTE:]INSTANCE/PATH, e.g. c1/etc/motd"),
    }
}

async fn put(runtime: &Runtime, project: Option<&str>, args: PutArgs) -> Result<()> {
    let (name, mut path) = split_file_target(&args.target)?;
    let from_stdin = args.local.as_os_str() == "-";
    if path.ends_with('/') {
        let Some(file_name) = args.local.file_name().filter(|_| !from_stdin) else {
            bail!("{}: name the destination file when reading standard input", args.target);
        };
        let Some(file_name) = file_name.to_str() else {
            bail!(
                "{}: the local file name {:?} is not UTF-8, which LXD's file API cannot carry; \
                 name the destination file, e.g. {}NAME",
                args.target,
                file_name,
                args.target
            );
        };
        path.push_str(file_name);
    }
    let mut mode = args.mode;
    let mut size = None;
    let source: Box<dyn tokio::io::AsyncRead + Unpin> = if from_stdin {
        Box::new(tokio::io::stdin())
    } else {
        let file = tokio::fs::File::open(&args.local)
            .await
            .with_context(|| format!("cannot open {}", args.local.display()))?;
        let meta = file.metadata().await.with_context(|| format!("cannot read {}", args.local.display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file; put copies one file", args.local.display());
        }
        if mode.is_none() {
            use std::os::unix::fs::PermissionsExt;
            mode = Some(meta.permissions().mode() & 0o7777);
        }
        size = Some(meta.len());
        Box::new(file)
    };
    let mut session = connect(runtime, project, name).await?;
    let options = PutOptions { mode, uid: args.uid, gid: args.gid, create_parents: args.parents };
    let progress = Progress::new(format!("put {}", args.target), size, std::io::stderr().is_terminal());
    session.put(&path, options, Counted::new(source, progress)).await?;
    session.close().await;
    Ok(())
}

async fn get(runtime: &Runtime, project: Option<&str>, args: GetArgs) -> Result<()> {
    let (name, path) = split_file_target(&args.source)?;
    let mut session = connect(runtime, project, name).await?;
    if args.local.as_os_str() == "-" {
        // Its stdout is the data: a progress line still only on a terminal stderr.
        let progress = Progress::new(format!("get {}", args.source), None, std::io::stderr().is_terminal());
        session.get(&path, Counted::new(tokio::io::stdout(), progress)).await?;
        session.close().await;
        return Ok(());
    }
    let mut dest = args.local.clone();
    if dest.is_dir() {
        let Some(file_name) = Path::new(&path).file_name() else {
            bail!("{path:?} names no file to copy into {}", dest.display());
        };
        dest.push(file_name);
    }
    // Written beside the destination and renamed at the end: a failed
    // transfer never leaves a half file or clobbers an existing one.
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let partial = dir.join(format!(".{file_name}.lxd-connector-partial"));
    let file = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("cannot write {} (through the temporary file {})", dest.display(), partial.display()))?;
    let progress = Progress::new(format!("get {}", args.source), None, std::io::stderr().is_terminal());
    let result = session.get(&path, Counted::new(file, progress)).await;
    session.close().await;
    let info = match result {
        Ok(info) => info,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(info.mode & 0o7777));
    }
    std::fs::rename(&partial, &dest).with_context(|| format!("cannot move the file into place at {}", dest.display()))?;
    Ok(())
}

async fn info(runtime: &Runtime, project: Option<&str>, args: InfoArgs) -> Result<()> {
    let mut session = connect(runtime, project, &args.instance).await?;
    let facts = session.describe().await?;
    session.close().await;
    let mut out = std::io::stdout().lock();
    for (key, value) in facts {
        writeln!(out, "{key}: {value}")?;
    }
    Ok(())
}

/// Writes the component this binary loads (the built-in one, or the
/// `--component` file) for a host of another kind: its bytes, unchanged.
fn write_component(from: Option<&Path>, args: &ComponentArgs) -> Result<()> {
    let file;
    let bytes: &[u8] = match from {
        Some(path) => {
            file = std::fs::read(path).with_context(|| format!("reading the component {}", path.display()))?;
            &file
        }
        None => lxd_connector::EMBEDDED_COMPONENT,
    };
    match &args.output {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
        }
        _ if std::io::stdout().is_terminal() => {
            bail!("the component is binary: give -o FILE or redirect standard output")
        }
        _ => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush()).context("writing the component to standard output")
        }
    }
}

/// A clap usage error as the one line every failure prints: clap's
/// message without its usage block, and where to read the usage.
fn usage_error(e: &clap::Error, args: impl Iterator<Item = String>) -> String {
    use clap::error::ErrorKind;
    const COMMANDS: [&str; 4] = ["exec", "put", "get", "info"];
    let command = args.take_while(|a| a != "--").find(|a| COMMANDS.contains(&a.as_str()));
    let help = match &command {
        Some(c) => format!("lxd-connector {c} --help"),
        None => "lxd-connector --help".to_string(),
    };
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand && command.is_none() {
        return format!("give a command: {}; see `{help}`", COMMANDS.join(", "));
    }
    let text = e.render().to_string();
    let mut parts = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        // clap's "use '-- VALUE'" tip would make the value exec's command.
        if !line.is_empty() && !line.contains("use '-- ") {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    format!("{}; see `{help}`", parts.join(" ").trim_end_matches(['.', ':']))
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 && !digits.starts_with(['+', '-']) => Ok(m),
        _ => Err(format!("{s:?} is not an octal file mode; give permission bits from 0000 to 7777, such as 0644")),
    }
}

/// A user or group id: 0 to 4294967294 (4294967295 is `(uid_t) -1`,
/// which Linux reads as "no change").
fn parse_id(s: &str) -> Result<u32, String> {
    const RANGE: &str = "ids are whole numbers from 0 to 4294967294";
    if s.starts_with('-') {
        return Err(format!("{s} is negative; {RANGE}"));
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a number; {RANGE} (names are not looked up: give the numeric id)"));
    }
    match s.parse::<u32>() {
        Ok(id) if id < u32::MAX => Ok(id),
        _ => Err(format!("{s} is too large; {RANGE}")),
    }
}

/// Longest `--timeout` LXD honours (see the guest's limit), in seconds.
const MAX_TIMEOUT_S: u64 = i64::MAX as u64 / 1_000_000_000;

fn parse_timeout(s: &str) -> Result<u64, String> {
    const LEAVE_OUT: &str = "leave --timeout out to wait as long as the command runs";
    if s.starts_with('-') || s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a whole number of seconds; give at least 1, or {LEAVE_OUT}"));
    }
    match s.parse::<u64>() {
        Ok(0) => Err(format!("0 seconds would give up before the command starts; give at least 1, or {LEAVE_OUT}")),
        Ok(n) if n <= MAX_TIMEOUT_S => Ok(n),
        _ => Err(format!("{s} seconds is longer than LXD can wait (at most {MAX_TIMEOUT_S}, about 292 years); {LEAVE_OUT}")),
    }
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some(("", _)) => Err(format!("{s:?} has no name before '='; write NAME=VALUE")),
        Some((k, v)) => Ok((k.to_string(), v.to_string())),
        None => Err(format!("{s:?} has no '='; write {s}=VALUE (or {s}= for an empty value)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_targets_split_after_the_instance() {
        assert_eq!(split_file_target("c1/etc/motd").unwrap(), ("c1", "/etc/motd".to_string()));
        assert_eq!(split_file_target("r:c1/tmp/").unwrap(), ("r:c1", "/tmp/".to_string()));
        assert!(split_file_target("c1").is_err());
        assert!(split_file_target("/etc/motd").is_err());
        assert!(split_file_target("r:/etc").is_err());
    }

    #[test]
    fn bad_option_values_are_refused_naming_the_value_and_the_range() {
        for (case, got, part) in [
            ("negative id", parse_id("-1"), "-1 is negative"),
            ("huge id", parse_id("99999999999"), "too large"),
            ("(uid_t)-1", parse_id("4294967295"), "too large"),
            ("name for an id", parse_id("root"), "numeric id"),
            ("signed id", parse_id("+5"), "not a number"),
            ("zero timeout", parse_timeout("0").map(|_| 0), "at least 1"),
            ("negative timeout", parse_timeout("-1").map(|_| 0), "whole number"),
            ("fractional timeout", parse_timeout("1.5").map(|_| 0), "whole number"),
            ("timeout past LXD's limit", parse_timeout("9223372037").map(|_| 0), "at most 9223372036"),
            ("timeout past u64", parse_timeout("99999999999999999999").map(|_| 0), "longer than LXD can wait"),
            ("negative mode", parse_mode("-1"), "0000 to 7777"),
        ] {
            match got {
                Err(msg) => assert!(msg.contains(part), "{case}: {msg}"),
                Ok(v) => panic!("{case}: accepted as {v}"),
            }
        }
        assert_eq!(parse_id("4294967294"), Ok(4294967294));
        assert_eq!(parse_timeout("9223372036"), Ok(9223372036));
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_env("A="), Ok(("A".into(), String::new())));
        assert!(parse_env("A").unwrap_err().contains("A=VALUE"));
        assert!(parse_env("=b").unwrap_err().contains("no name"));
    }

    #[test]
    fn usage_errors_become_one_line_naming_the_subcommand_help() {
        for args in [
            &["exec", "c1", "--user", "-1", "--", "id"][..],
            &["exec", "c1"],
            &["put", "--mode", "999", "a", "c1/tmp/a"],
            &["exec", "c1", "--bogus", "--", "true"],
            &["get"],
            &[],
            &["frobnicate"],
        ] {
            let argv = std::iter::once("lxd-connector").chain(args.iter().copied());
            let Err(e) = Cli::try_parse_from(argv) else { panic!("{args:?} parsed") };
            let line = usage_error(&e, args.iter().map(|a| a.to_string()));
            assert!(!line.contains('\n') && !line.starts_with("error"), "{args:?}: {line:?}");
            assert!(!line.contains("'-- "), "{args:?}: a tip that would run the value as the command: {line}");
            let help = match args.first().filter(|a| ["exec", "put", "get"].contains(a)) {
                Some(c) => format!("`lxd-connector {c} --help`"),
                None => "`lxd-connector --help`".to_string(),
            };
            assert!(line.ends_with(&format!("see {help}")), "{args:?}: {line}");
        }
    }

    #[test]
    fn modes_are_octal_permission_bits() {
        assert_eq!(parse_mode("0755"), Ok(0o755));
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0o4755"), Ok(0o4755));
        assert!(parse_mode("999").is_err());
        assert!(parse_mode("17777").is_err());
    }
}
