//! `novart db copy --to postgres://…`: moves a SQLite instance into an
//! empty PostgreSQL database (the server must be stopped).

use clap::Subcommand;

use super::{fail, CliResult};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum DbCmd {
    /// Copy this instance's SQLite database into an empty PostgreSQL
    /// database: every table with its ids, the sequences set after them;
    /// then check the row counts and that every wallet equals its ledger.
    /// The server must be stopped meanwhile. The stored files stay where
    /// they are (several nodes share them through S3-compatible storage:
    /// `novart storage migrate --to s3` first).
    Copy {
        /// The empty target, e.g. postgres://novart:secret@db.internal/novart
        /// (add ?sslmode=require for TLS).
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

pub fn run(config: &Config, cmd: DbCmd) -> CliResult {
    match cmd {
        DbCmd::Copy { to } => copy(config, &to),
    }
}

fn copy(config: &Config, to: &str) -> CliResult {
    let mut probe = config.clone();
    probe.database.url = to.to_string();
    probe
        .validate_database()
        .map_err(|e| fail(2, e.to_string()))?;
    let report = crate::domain::dbcopy::to_postgres(config, to, |table, rows| {
        eprintln!("{table}: {rows} row(s)");
    })?;
    let rows: i64 = report.tables.iter().map(|(_, n)| n).sum();
    println!(
        "copied {} table(s), {rows} row(s) into {}; row counts match and every wallet equals its ledger",
        report.tables.len(),
        crate::config::redacted_database_url(to)
    );
    println!(
        "to run on it: set database.url in the config (or NOVART_DATABASE__URL), then start the server; the SQLite file is left as it was"
    );
    Ok(())
}
