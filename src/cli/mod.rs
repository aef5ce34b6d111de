//! The admin command line. Each command group lives in its own file and calls
//! the same domain functions as the web.

mod announce;
mod appeals;
mod audit;
mod bans;
mod codes;
mod credits;
mod database;
mod keys;
mod limits;
mod ops;
mod privacy;
mod setup;
mod storage;
mod tasks;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::error::AppError;

#[derive(Debug, Parser)]
#[command(
    name = "novart",
    version,
    about = "Novart Studio: a self-hostable AI image studio",
    long_about = "Novart Studio: a self-hostable AI image studio.\n\nWith no command, starts the studio (`novart serve`). Configuration comes from ./novart.toml, --config PATH or NOVART_CONFIG, and NOVART_<SECTION>__<KEY> environment variables."
)]
pub struct Cli {
    /// Configuration file (default: ./novart.toml if present).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the web studio (the default).
    Serve,
    /// Write a novart.toml with every default and create the database.
    Init {
        /// Directory for novart.toml and the data (default: the current one).
        #[arg(long, value_name = "PATH")]
        dir: Option<PathBuf>,
        /// Overwrite an existing novart.toml.
        #[arg(long)]
        force: bool,
        /// Who runs this instance, as /privacy and /terms name them
        /// (legal.operator_name; asked for when standard input is a terminal).
        #[arg(long, value_name = "NAME")]
        operator: Option<String>,
        /// How people reach the operator: an e-mail address or a URL
        /// (legal.contact; asked for when standard input is a terminal).
        #[arg(long, value_name = "EMAIL_OR_URL")]
        contact: Option<String>,
    },
    /// Bring the database schema up to date.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    User(user::UserCmd),
    /// Create, list and revoke redemption codes.
    #[command(subcommand)]
    Codes(codes::CodesCmd),
    /// Grant, deduct and inspect credits.
    #[command(subcommand)]
    Credits(credits::CreditsCmd),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
    /// The database: move a SQLite instance into PostgreSQL.
    #[command(subcommand)]
    Db(database::DbCmd),
    /// Where stored images live: move them between the data directory and
    /// S3-compatible storage.
    #[command(subcommand)]
    Storage(storage::StorageCmd),
    /// Decide creators' requests for higher API key limits.
    #[command(subcommand)]
    Limits(limits::LimitsCmd),
    /// Answer users' privacy requests.
    #[command(subcommand)]
    Privacy(privacy::PrivacyCmd),
    /// Look at and cancel generation tasks.
    #[command(subcommand)]
    Tasks(tasks::TasksCmd),
    /// Restrict an account. Scope all (the default) suspends it: sessions
    /// end, queued tasks are refunded, API keys answer 403 and the web
    /// refuses new tasks, redemptions and keys. Narrower scopes: generate
    /// (no new tasks, web or API; queued ones refunded), api (API keys
    /// refused, the website works), upload (no reference images).
    Ban {
        /// The account's e-mail address.
        email: String,
        /// all, generate, api or upload.
        #[arg(long, default_value = "all")]
        scope: String,
        /// How long: 30m, 12h, 7d, ... or permanent.
        #[arg(long = "for", value_name = "LENGTH")]
        length: String,
        /// Why: shown to the account where it concerns it, and kept in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Users' appeals against restrictions: list, accept (lifts the
    /// restriction) or reject, each with a message to the user.
    #[command(subcommand)]
    Appeals(appeals::AppealsCmd),
    /// List bans and restrictions, newest first (with --active only those in force).
    Bans {
        /// Only restrictions in force now.
        #[arg(long)]
        active: bool,
        /// How many rows at most.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Lift an account's ban and restrictions (only one scope's with --scope).
    Unban {
        /// The account's e-mail address.
        email: String,
        /// Lift only this kind (all, generate, api or upload; default: every one).
        #[arg(long)]
        scope: Option<String>,
        /// Why: shown to the account where it concerns it, and kept in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Send a message to every account's inbox, or to one.
    Announce {
        /// The message's title.
        #[arg(long)]
        title: String,
        /// The message's text.
        #[arg(long)]
        body: String,
        /// Only this account (default: everyone).
        #[arg(long, value_name = "EMAIL")]
        to: Option<String>,
    },
    /// Write one account's data export (the ZIP "Download my data" gives).
    ExportUser {
        /// The account's e-mail address.
        email: String,
        /// Where to write the ZIP file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Show the newest audit log entries (admin actions and risk decisions).
    Audit {
        /// How many rows at most.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the retention sweep now (expired images, orphans, sessions).
    Cleanup,
    /// Write a backup (database and stored files) into a new directory,
    /// while the server keeps running.
    Backup {
        /// The file to write the copy to.
        path: PathBuf,
    },
    /// Restore a backup into the data directory (the server must be
    /// stopped); the backup is checked first.
    Restore {
        /// The backup file.
        path: PathBuf,
    },
    /// The instance at a glance: queue, tasks, accounts, sessions, credits,
    /// webhooks, database size (what /metrics exports as gauges).
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The image services: each provider's health (up, degraded, down),
    /// load, recent latency and errors, as each running server node sees
    /// them (recorded every few seconds).
    Providers {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check the database, the ledger and the queue (exit 1 on a problem).
    Doctor {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// A failed command: the message goes to stderr as one line.
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl From<AppError> for CliError {
    fn from(e: AppError) -> Self {
        let code = match e {
            AppError::Invalid { .. } => 2,
            _ => 1,
        };
        let message = match e {
            AppError::NotFound => "not found".to_string(),
            AppError::Internal(m) => m,
            other => other.to_string(),
        };
        CliError { code, message }
    }
}

impl From<crate::config::ConfigError> for CliError {
    fn from(e: crate::config::ConfigError) -> Self {
        CliError {
            code: 2,
            message: e.to_string(),
        }
    }
}

pub fn fail(code: u8, message: impl Into<String>) -> CliError {
    CliError {
        code,
        message: message.into(),
    }
}

pub type CliResult = Result<(), CliError>;

/// Records an admin action of the command line in the audit log.
pub fn audit(
    conn: &mut crate::domain::Connection,
    action: &str,
    target: &str,
    reason: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> Result<(), CliError> {
    let actor = crate::domain::audit::cli_actor();
    crate::domain::audit::record_now(
        conn,
        &crate::domain::audit::Entry {
            actor: &actor,
            action,
            target,
            reason,
            before,
            after,
            ip: None,
        },
    )?;
    Ok(())
}

/// A command's output piped into `head`: when the reader goes away, the
/// command ends silently (the default SIGPIPE action, as for any Unix
/// tool) instead of panicking on a failed print. The server keeps Rust's
/// default (ignored, errors returned), as a client closing a socket must
/// not stop it.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring a signal's default action before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

pub fn run(cli: Cli) -> ExitCode {
    let command = cli.command.unwrap_or(Command::Serve);
    if !matches!(command, Command::Serve) {
        quiet_on_closed_pipe();
    }
    if std::env::var_os("NOVART_LOG").is_none() && !matches!(command, Command::Serve) {
        std::env::set_var("NOVART_LOG", "warn");
    }
    crate::init_tracing();
    let result = match command {
        Command::Init {
            dir,
            force,
            operator,
            contact,
        } => setup::init(dir, force, operator, contact),
        command => match Config::load(cli.config.as_deref()) {
            Err(e) => Err(e.into()),
            Ok(config) => match command {
                Command::Serve => setup::serve(config),
                Command::Migrate => setup::migrate(&config),
                Command::User(cmd) => user::run(&config, cmd),
                Command::Tasks(cmd) => tasks::run(&config, cmd),
                Command::Credits(cmd) => credits::run(&config, cmd),
                Command::Codes(cmd) => codes::run(&config, cmd),
                Command::Keys(cmd) => keys::run(&config, cmd),
                Command::Storage(cmd) => storage::run(&config, cmd),
                Command::Db(cmd) => database::run(&config, cmd),
                Command::Limits(cmd) => limits::run(&config, cmd),
                Command::Privacy(cmd) => privacy::run(&config, cmd),
                Command::Ban {
                    email,
                    scope,
                    length,
                    reason,
                } => bans::ban(&config, &email, &scope, &length, &reason),
                Command::Unban {
                    email,
                    scope,
                    reason,
                } => bans::unban(&config, &email, scope.as_deref(), &reason),
                Command::Appeals(cmd) => appeals::run(&config, cmd),
                Command::Bans {
                    active,
                    limit,
                    json,
                } => bans::list(&config, active, limit, json),
                Command::ExportUser { email, out } => bans::export_user(&config, &email, &out),
                Command::Cleanup => tasks::cleanup(&config),
                Command::Audit { limit, json } => audit::run(&config, limit, json),
                Command::Announce { title, body, to } => {
                    announce::run(&config, &title, &body, to.as_deref())
                }
                Command::Doctor { json } => setup::doctor(&config, json),
                Command::Backup { path } => ops::backup(&config, &path),
                Command::Restore { path } => ops::restore(&config, &path),
                Command::Stats { json } => ops::stats(&config, json),
                Command::Providers { json } => ops::providers(&config, json),
                Command::Init { .. } => unreachable!("handled above"),
            },
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// Reads one line (a password) from standard input, without its line ending.
pub fn read_stdin_line() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| fail(1, format!("reading standard input: {e}")))?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    Ok(line.to_string())
}
