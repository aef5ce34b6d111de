//! Backups: `novart backup PATH`, `novart restore PATH` and the scheduled
//! daily backup with rotation.
//!
//! A backup is a directory: `novart.db` (SQLite's online backup API, copied
//! a bounded number of pages at a time so writers are never held up for
//! long), the stored files its rows point to (copied after the database, so
//! every file the copy knows about exists), the operator's `legal/` texts,
//! and `BACKUP.txt` saying what is inside. Files are never changed after
//! they are written, so copying them while the server runs is safe; a file
//! that retention deleted between the two steps belonged to an expired row,
//! and that row is dropped from the copy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection as LiteConnection, OpenFlags};

use crate::domain::Connection;
use serde::Serialize;

use crate::config::Config;
use crate::error::{AppError, AppResult};

use super::blobs::{BlobError, Store};

/// Pages copied per step, and the pause between steps (writers run then).
const PAGES_PER_STEP: i32 = 512;
const PAUSE: Duration = Duration::from_millis(5);

/// What a backup holds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub path: PathBuf,
    pub db_bytes: u64,
    pub files: u64,
    pub file_bytes: u64,
    /// Rows dropped from the copy because retention deleted their files
    /// while the backup ran.
    pub dropped_rows: u64,
    pub users: i64,
    pub tasks: i64,
    pub checks_ok: bool,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> AppError {
    AppError::internal(format!("{what} {}: {e}", path.display()))
}

/// Copies one file, creating its directory.
fn copy_file(from: &Path, to: &Path) -> std::io::Result<u64> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(from, to)
}

fn copy_tree(from: &Path, to: &Path) -> AppResult<()> {
    if !from.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(from).map_err(|e| io("reading", from, e))? {
        let entry = entry.map_err(|e| io("reading", from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            copy_file(&src, &dst).map_err(|e| io("copying", &src, e))?;
        }
    }
    Ok(())
}

/// Online backup of the live database into `dest` (a new file), a bounded
/// number of pages per step with writers running in between. SQLite starts
/// a backup over when another connection writes between steps; after a few
/// restarts the rest is copied in one step, which in WAL mode reads one
/// snapshot without blocking writers, so the backup always finishes.
pub fn copy_database(live: &LiteConnection, dest: &Path) -> AppResult<()> {
    use rusqlite::backup::StepResult;
    let mut out = LiteConnection::open(dest)?;
    {
        let backup = rusqlite::backup::Backup::new(live, &mut out)?;
        let (mut restarts, mut last_remaining) = (0, i32::MAX);
        loop {
            let pages = if restarts >= 3 { -1 } else { PAGES_PER_STEP };
            match backup.step(pages)? {
                StepResult::Done => break,
                StepResult::More => {
                    let remaining = backup.progress().remaining;
                    if remaining > last_remaining {
                        restarts += 1;
                    }
                    last_remaining = remaining;
                }
                // Busy or locked: try again after the pause.
                _ => {}
            }
            std::thread::sleep(PAUSE);
        }
    }
    // A single self-contained file: no WAL beside it.
    out.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}

/// Writes a backup of the instance into `dest` (created; must be empty).
pub fn create(config: &Config, dest: &Path) -> AppResult<Report> {
    if config.database.is_postgres() {
        return Err(AppError::invalid(
            "database.url",
            "novart backup copies a SQLite instance; on PostgreSQL back up the database with pg_dump and the bucket with its own tools (README, Running more than one node)",
        ));
    }
    if dest.exists()
        && std::fs::read_dir(dest)
            .map_err(|e| io("reading", dest, e))?
            .next()
            .is_some()
    {
        return Err(AppError::invalid(
            "path",
            format!("{} is not empty; give a new directory.", dest.display()),
        ));
    }
    std::fs::create_dir_all(dest).map_err(|e| io("creating", dest, e))?;
    let live = LiteConnection::open_with_flags(
        config.db_path(),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    live.busy_timeout(Duration::from_secs(10))?;
    let db_file = dest.join("novart.db");
    copy_database(&live, &db_file)?;
    drop(live);

    let copy = Connection::sqlite(LiteConnection::open(&db_file)?);
    let (mut files, mut file_bytes, mut dropped) = (0u64, 0u64, 0u64);
    // The files come from whichever store the instance uses (the local
    // directory or the bucket) and land as plain files in the backup, as
    // stored (sealed ones stay sealed): a backup is whole on its own.
    let store = super::blobs::of(config);
    let backup = super::blobs::LocalStore::new(dest.to_path_buf());
    for (key, table, id) in crate::domain::db::assets::stored_keys(&copy)? {
        match store.get(&key) {
            Ok(bytes) => {
                backup
                    .put(&key, &bytes)
                    .map_err(|e| AppError::internal(format!("backing up {key}: {e}")))?;
                files += 1;
                file_bytes += bytes.len() as u64;
            }
            Err(BlobError::NotFound) => {
                dropped += crate::domain::db::assets::forget_stored(&copy, table, id)? as u64;
            }
            Err(e) => return Err(AppError::internal(format!("backing up {key}: {e}"))),
        }
    }
    copy_tree(&config.storage.data_dir.join("legal"), &dest.join("legal"))?;
    let checks_ok = super::doctor::essentials(&copy, &at(config, dest))?
        .iter()
        .all(|c| c.ok);
    let (users, tasks) = crate::domain::db::stats::users_and_tasks(&copy)?;
    let report = Report {
        path: dest.to_path_buf(),
        db_bytes: std::fs::metadata(&db_file).map(|m| m.len()).unwrap_or(0),
        files,
        file_bytes,
        dropped_rows: dropped,
        users,
        tasks,
        checks_ok,
    };
    drop(copy);
    let manifest = format!(
        "Novart Studio backup\nversion: {}\nmade: {}\ndatabase: novart.db ({} bytes)\nfiles: {} ({} bytes)\nusers: {}\ntasks: {}\nchecks: {}\n\nRestore with: novart restore {}\n",
        env!("CARGO_PKG_VERSION"),
        super::format_time(super::now()),
        report.db_bytes,
        report.files,
        report.file_bytes,
        report.users,
        report.tasks,
        if checks_ok { "integrity, foreign keys and ledger ok" } else { "PROBLEMS (run novart doctor after restoring)" },
        dest.display()
    );
    std::fs::write(dest.join("BACKUP.txt"), manifest)
        .map_err(|e| io("writing", &dest.join("BACKUP.txt"), e))?;
    tracing::info!(path = %dest.display(), files, dropped, "backup written");
    Ok(report)
}

/// `config` with its data directory at `dir` (a backup's, which holds its
/// files as a local directory whatever the instance's backend).
fn at(config: &Config, dir: &Path) -> Config {
    let mut c = config.clone();
    c.storage.data_dir = dir.to_path_buf();
    c.storage.backend = crate::config::Backend::Local;
    c
}

/// Restores the backup in `from` into the configured data directory. The
/// backup is checked first (`doctor::essentials`); nothing is
/// touched if it fails. An existing database is kept beside the new one
/// as `novart.db.before-restore-<time>`. The server must be stopped.
pub fn restore(config: &Config, from: &Path) -> AppResult<Vec<super::doctor::Check>> {
    if config.database.is_postgres() {
        return Err(AppError::invalid(
            "database.url",
            "novart restore restores a SQLite instance; on PostgreSQL restore the database with pg_restore (or move a restored SQLite backup in with novart db copy)",
        ));
    }
    let db_file = from.join("novart.db");
    if !db_file.is_file() {
        return Err(AppError::invalid(
            "path",
            format!("{} has no novart.db: not a Novart backup.", from.display()),
        ));
    }
    let conn = Connection::sqlite(LiteConnection::open_with_flags(
        &db_file,
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?);
    let checks = super::doctor::essentials(&conn, &at(config, from))?;
    drop(conn);
    if !checks.iter().all(|c| c.ok) {
        return Ok(checks);
    }
    let data = &config.storage.data_dir;
    std::fs::create_dir_all(data).map_err(|e| io("creating", data, e))?;
    let _lock = lock_data_dir(config)?;
    let live = config.db_path();
    if live.exists() {
        let conn = LiteConnection::open(&live)?;
        conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
        drop(conn);
        let aside = data.join(format!("novart.db.before-restore-{}", super::now()));
        std::fs::rename(&live, &aside).map_err(|e| io("moving", &live, e))?;
        for ext in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(data.join(format!("novart.db{ext}")));
        }
    }
    let tmp = data.join("novart.db.restoring");
    std::fs::copy(&db_file, &tmp).map_err(|e| io("copying", &db_file, e))?;
    // The restored files land on this instance's backend, whatever the
    // backed-up instance used.
    super::storage_move::record(
        &Connection::sqlite(LiteConnection::open(&tmp)?),
        config.storage.backend,
    )?;
    // The files go into the instance's store (its directory or its
    // bucket) as they are in the backup.
    let store = super::blobs::of(config);
    let backup = super::blobs::LocalStore::new(from.to_path_buf());
    for prefix in ["assets/", "exports/"] {
        let listed = backup
            .list(prefix)
            .map_err(|e| AppError::internal(format!("reading the backup: {e}")))?;
        for l in listed {
            let bytes = backup
                .get(&l.key)
                .map_err(|e| AppError::internal(format!("reading {}: {e}", l.key)))?;
            store
                .put(&l.key, &bytes)
                .map_err(|e| AppError::internal(format!("restoring {}: {e}", l.key)))?;
        }
    }
    copy_tree(&from.join("legal"), &data.join("legal"))?;
    std::fs::rename(&tmp, &live).map_err(|e| io("moving", &tmp, e))?;
    tracing::info!(from = %from.display(), "backup restored");
    Ok(checks)
}

/// The data directory's lock, held by a running server for its lifetime
/// (the operating system releases it when the process ends, even when
/// killed). A second server, or a restore, on the same directory is refused.
pub fn lock_data_dir(config: &Config) -> AppResult<std::fs::File> {
    let path = config.storage.data_dir.join("novart.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io("opening", &path, e))?;
    file.try_lock().map_err(|_| {
        AppError::Conflict(format!(
            "{} is in use by a running Novart Studio: stop it first.",
            config.storage.data_dir.display()
        ))
    })?;
    Ok(file)
}

/// The scheduled backup: when `[backup] dir` is set and the newest backup
/// there is older than `every_hours`, writes `novart-<time>` and keeps only
/// the newest `keep`. Returns the new backup's path, if one was made.
pub fn scheduled(config: &Config) -> AppResult<Option<PathBuf>> {
    let b = &config.backup;
    if b.dir.as_os_str().is_empty() {
        return Ok(None);
    }
    std::fs::create_dir_all(&b.dir).map_err(|e| io("creating", &b.dir, e))?;
    let mut existing = list(&b.dir)?;
    let now = super::now();
    if let Some(newest) = existing.last() {
        if now - newest.0 < i64::from(b.every_hours) * 3600 {
            return Ok(None);
        }
    }
    let name = time::OffsetDateTime::from_unix_timestamp(now)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "novart-[year][month][day]-[hour][minute][second]"
            ))
            .ok()
        })
        .unwrap_or_else(|| format!("novart-{now}"));
    let dest = b.dir.join(name);
    let partial = b.dir.join(".partial");
    let _ = std::fs::remove_dir_all(&partial);
    create(config, &partial)?;
    std::fs::rename(&partial, &dest).map_err(|e| io("moving", &partial, e))?;
    existing.push((now, dest.clone()));
    while existing.len() > b.keep.max(1) as usize {
        let (_, old) = existing.remove(0);
        std::fs::remove_dir_all(&old).map_err(|e| io("removing", &old, e))?;
        tracing::info!(path = %old.display(), "old backup removed");
    }
    Ok(Some(dest))
}

/// Finished backups in `dir` (`novart-*` with a BACKUP.txt), oldest first,
/// with the time each was made.
fn list(dir: &Path) -> AppResult<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io("reading", dir, e))? {
        let path = entry.map_err(|e| io("reading", dir, e))?.path();
        let named = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("novart-"));
        let manifest = path.join("BACKUP.txt");
        if named && manifest.is_file() {
            let made = std::fs::metadata(&manifest)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            out.push((made, path));
        }
    }
    out.sort();
    Ok(out)
}
