//! `novart storage migrate --to s3|local`: moves the stored files to the
//! other backend (the server must be stopped).

use clap::{Subcommand, ValueEnum};

use super::{fail, CliResult};
use crate::config::{Backend, Config};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum To {
    /// The data directory.
    Local,
    /// The bucket in [storage.s3].
    S3,
}

#[derive(Debug, Subcommand)]
pub enum StorageCmd {
    /// Copy every stored file to the other backend, verify each copy (size
    /// and SHA-256), then record the switch. Safe to run again after an
    /// interruption. The server must be stopped meanwhile.
    Migrate {
        /// Where the files go.
        #[arg(long)]
        to: To,
    },
}

pub fn run(config: &Config, cmd: StorageCmd) -> CliResult {
    match cmd {
        StorageCmd::Migrate { to } => migrate(config, to),
    }
}

fn migrate(config: &Config, to: To) -> CliResult {
    let to = match to {
        To::Local => Backend::Local,
        To::S3 => Backend::S3,
    };
    if !config.database.is_postgres() && !config.db_path().exists() {
        return Err(fail(
            1,
            format!("there is no database at {}", config.db_path().display()),
        ));
    }
    // A server writing new images meanwhile would leave them behind. (On
    // PostgreSQL the nodes hold no lock here: stop every node first.)
    let _lock = crate::domain::backup::lock_data_dir(config).map_err(|_| {
        fail(
            1,
            "the server is running on this data directory: stop it first (images it writes during the copy would be left behind), then run the command again",
        )
    })?;
    let db = crate::domain::Db::open(config)?;
    let conn = db.get()?;
    let mut last = 0;
    let moved = crate::domain::storage_move::migrate(&conn, config, to, |_, done, total| {
        if done == total || done >= last + 100 {
            last = done;
            eprintln!("{done}/{total} file(s)");
        }
    })?;
    let target = match to {
        Backend::Local => "local",
        Backend::S3 => "s3",
    };
    println!(
        "{} file(s) copied and verified, {} already there ({} bytes in all)",
        moved.copied, moved.already_there, moved.bytes
    );
    if !moved.missing.is_empty() {
        println!(
            "{} file(s) the database names were not on the old backend (novart doctor lists them): {}",
            moved.missing.len(),
            moved.missing.join(", ")
        );
    }
    println!(
        "the instance's files are now on \"{target}\": set storage.backend = \"{target}\" in the config (or NOVART_STORAGE__BACKEND={target}) before starting the server. The old copies are left in place; remove them once the server runs on the new backend."
    );
    Ok(())
}
