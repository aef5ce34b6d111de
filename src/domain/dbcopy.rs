//! `novart db copy --to postgres://…`: moves a SQLite instance into an
//! empty PostgreSQL database, every table with its ids, then checks that
//! every table has as many rows as the source and every wallet equals its
//! ledger. The stored files stay where they are (the data directory or the
//! bucket): nodes on PostgreSQL share them through S3-compatible storage.

use super::{backup, db, Db};
use crate::config::Config;
use crate::error::{AppError, AppResult};

/// What was copied.
#[derive(Debug)]
pub struct CopyReport {
    /// (table, rows) in the order copied.
    pub tables: Vec<(String, i64)>,
}

/// Copies the instance's SQLite database into the empty PostgreSQL
/// database at `url`. `progress` hears each table once copied.
pub fn to_postgres(
    config: &Config,
    url: &str,
    mut progress: impl FnMut(&str, i64),
) -> AppResult<CopyReport> {
    if config.database.is_postgres() {
        return Err(AppError::invalid(
            "database.url",
            "this instance already uses PostgreSQL; db copy reads its SQLite database (leave database.url empty)",
        ));
    }
    if !config.db_path().exists() {
        return Err(AppError::invalid(
            "path",
            format!("there is no database at {}", config.db_path().display()),
        ));
    }
    let _lock = backup::lock_data_dir(config).map_err(|_| {
        AppError::Conflict(format!(
            "a server is using {}: stop it first, so that nothing changes during the copy",
            config.db_path().display()
        ))
    })?;
    let source = Db::open(config)?;
    let src = source.get()?;
    let target = Db::open_postgres(url, 2)?;
    let mut dst = target.get()?;
    if !db::copy::is_empty(&dst)? {
        return Err(AppError::Conflict(format!(
            "{} is not empty: give a new, empty database (CREATE DATABASE ...)",
            crate::config::redacted_database_url(url)
        )));
    }
    super::schema::migrate(&mut dst)?;
    let tables = db::copy::tables(&src)?;
    let copied = db::write(&mut dst, |tx| {
        let mut copied = Vec::new();
        let (derived, plain): (Vec<_>, Vec<_>) = tables
            .iter()
            .partition(|t| db::copy::DERIVED.contains(&t.name.as_str()));
        for t in plain {
            let n = db::copy::copy_rows(&src, tx, t)?;
            copied.push((t.name.clone(), n));
        }
        // The triggers counted the copied tasks; the source's own counts
        // (and when each creator was last served) replace theirs.
        for t in derived {
            db::copy::clear(tx, &t.name)?;
            let n = db::copy::copy_rows(&src, tx, t)?;
            copied.push((t.name.clone(), n));
        }
        db::copy::reset_sequences(tx, &tables)?;
        Ok(copied)
    })?;
    for (table, n) in &copied {
        progress(table, *n);
        let there = db::copy::count(&dst, table)?;
        if there != *n {
            return Err(AppError::internal(format!(
                "{table}: {n} row(s) copied but {there} found in the target"
            )));
        }
    }
    let mismatches = db::ledger::mismatches(&dst)?;
    if !mismatches.is_empty() {
        return Err(AppError::internal(format!(
            "{} wallet(s) differ from their ledger in the target",
            mismatches.len()
        )));
    }
    Ok(CopyReport { tables: copied })
}
