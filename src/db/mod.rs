//! Storage: an r2d2 pool of SQLite connections, the migrations, and plain SQL
//! functions per table. Nothing here knows about HTTP.

pub mod api_keys;
pub mod api_requests;
pub mod assets;
pub mod codes;
pub mod ledger;
pub mod limits;
pub mod meta;
pub mod migrate;
pub mod sessions;
pub mod tasks;
pub mod tokens;
pub mod users;
pub mod webhooks;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::config::{Config, Synchronous};
use crate::error::{AppError, AppResult};

pub type Pool = r2d2::Pool<SqliteConnectionManager>;

/// How long a connection waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A cheap, cloneable handle to the database.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
}

impl Db {
    /// Opens (creating if needed) the database in the configured data
    /// directory and brings its schema up to date.
    pub fn open(config: &Config) -> AppResult<Db> {
        std::fs::create_dir_all(&config.storage.data_dir).map_err(|e| {
            AppError::internal(format!(
                "cannot create data directory {}: {e}",
                config.storage.data_dir.display()
            ))
        })?;
        let db = Db::open_path(&config.db_path(), config.storage.synchronous)?;
        let mut conn = db.get()?;
        migrate::migrate(&mut conn)?;
        Ok(db)
    }

    /// Opens the file without migrating (used by `open` and by tools).
    pub fn open_path(path: &Path, sync: Synchronous) -> AppResult<Db> {
        let sync = match sync {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        let manager = SqliteConnectionManager::file(path).with_init(move |c| {
            c.busy_timeout(BUSY_TIMEOUT)?;
            c.execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;"
            ))
        });
        let pool = r2d2::Pool::builder()
            .max_size(16)
            .connection_timeout(Duration::from_secs(30))
            .build(manager)?;
        Ok(Db { pool })
    }

    /// A connection for synchronous callers (CLI, jobs already on a blocking
    /// thread).
    pub fn get(&self) -> AppResult<r2d2::PooledConnection<SqliteConnectionManager>> {
        Ok(self.pool.get()?)
    }

    /// Runs blocking database work off the async executor.
    pub async fn run<T, F>(&self, f: F) -> AppResult<T>
    where
        F: FnOnce(&mut Connection) -> AppResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        rocket::tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| AppError::internal(format!("database task: {e}")))?
    }
}

/// One lock per database file for this process's write transactions. SQLite
/// allows one writer at a time anyway; waiting on this mutex instead of in
/// SQLite's busy handler (which sleeps in growing steps) hands the lock over
/// as soon as it is free. Other processes (the CLI) still meet busy_timeout.
fn write_lock(conn: &Connection) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    let key = conn.path().unwrap_or("").to_string();
    let mut map = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.entry(key).or_default().clone()
}

/// Runs `f` in a write transaction opened with BEGIN IMMEDIATE (so it never
/// fails half-way with SQLITE_BUSY when upgrading a read lock), committing on
/// Ok and rolling back on Err. Never nest: `f` must use the transaction it is
/// given, not another connection's write.
pub fn write<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction) -> AppResult<T>,
) -> AppResult<T> {
    let lock = write_lock(conn);
    let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}
