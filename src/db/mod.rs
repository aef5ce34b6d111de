//! Storage: an r2d2 pool of SQLite connections, the migrations, and plain SQL
//! functions per table. Nothing here knows about HTTP.

pub mod api_keys;
pub mod api_requests;
pub mod appeals;
pub mod assets;
pub mod audit;
pub mod checks;
pub mod cluster;
pub mod codes;
pub mod copy;
pub mod deletion;
pub mod email_changes;
pub mod export;
pub mod fleet;
pub mod ledger;
pub mod limits;
pub mod messages;
pub mod meta;
pub mod migrate;
pub mod privacy;
pub mod referrals;
pub mod risk;
pub mod sessions;
pub mod stats;
pub mod tasks;
pub mod tokens;
pub mod users;
pub mod webhooks;

pub mod sql;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use sql::{Connection, Dialect, Transaction};

use crate::config::{Config, Synchronous};
use crate::error::{AppError, AppResult};

pub type Pool = r2d2::Pool<Manager>;

/// How long a connection waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A cheap, cloneable handle to the database.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
}

/// Opens the pool's connections: SQLite files, or a PostgreSQL server.
pub enum Manager {
    Sqlite {
        path: PathBuf,
        sync: &'static str,
    },
    Postgres {
        config: Box<postgres::Config>,
        tls: tokio_postgres_rustls::MakeRustlsConnect,
    },
}

impl Manager {
    fn sqlite(path: &Path, sync: Synchronous) -> Manager {
        Manager::Sqlite {
            path: path.to_path_buf(),
            sync: match sync {
                Synchronous::Full => "FULL",
                Synchronous::Normal => "NORMAL",
            },
        }
    }

    fn postgres(url: &str) -> AppResult<Manager> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e| AppError::internal(format!("database.url: {e}")))?;
        Ok(Manager::Postgres {
            config: Box::new(config),
            tls: pg_tls(),
        })
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = sql::Error;

    fn connect(&self) -> Result<Connection, sql::Error> {
        match self {
            Manager::Sqlite { path, sync } => {
                let c = rusqlite::Connection::open(path)?;
                configure(&c, sync)?;
                Ok(Connection::sqlite(c))
            }
            Manager::Postgres { config, tls } => {
                Ok(Connection::postgres(sql::pg::connect(config, tls)?))
            }
        }
    }

    fn is_valid(&self, conn: &mut Connection) -> Result<(), sql::Error> {
        conn.execute_batch("")
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.is_broken()
    }
}

/// TLS for PostgreSQL: used when the URL's `sslmode` asks for it (`require`;
/// the default `prefer` tries it first), checked against the webpki roots.
fn pg_tls() -> tokio_postgres_rustls::MakeRustlsConnect {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

impl Db {
    /// Opens the configured database (SQLite in the data directory, or
    /// PostgreSQL at `database.url`) and brings its schema up to date.
    pub fn open(config: &Config) -> AppResult<Db> {
        std::fs::create_dir_all(&config.storage.data_dir).map_err(|e| {
            AppError::internal(format!(
                "cannot create data directory {}: {e}",
                config.storage.data_dir.display()
            ))
        })?;
        let db = if config.database.url.is_empty() {
            Db::open_path(&config.db_path(), config.storage.synchronous)?
        } else {
            Db::open_postgres(&config.database.url, config.database.pool_size)?
        };
        let mut conn = db.get()?;
        migrate::migrate(&mut conn)?;
        Ok(db)
    }

    /// One connection outside any pool, to the configured database (tools
    /// and tests that read it while a server runs).
    pub fn connect(config: &Config) -> AppResult<Connection> {
        use r2d2::ManageConnection;
        let manager = if config.database.url.is_empty() {
            Manager::sqlite(&config.db_path(), config.storage.synchronous)
        } else {
            Manager::postgres(&config.database.url)?
        };
        Ok(manager.connect()?)
    }

    /// Connects to PostgreSQL without migrating.
    pub fn open_postgres(url: &str, pool_size: u32) -> AppResult<Db> {
        let manager = Manager::postgres(url)?;
        // One connection first, for its own error (the pool would retry
        // for half a minute and then only say that it timed out).
        {
            use r2d2::ManageConnection;
            manager.connect().map_err(|e| {
                AppError::internal(format!(
                    "database.url: cannot connect to {}: {e}",
                    crate::config::redacted_database_url(url)
                ))
            })?;
        }
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(1))
            .min_idle(Some(1))
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(30))
            .build(manager)
            .map_err(|e| AppError::internal(format!("database.url: cannot connect: {e}")))?;
        Ok(Db { pool })
    }

    /// Opens the file without migrating (used by `open` and by tools).
    pub fn open_path(path: &Path, sync: Synchronous) -> AppResult<Db> {
        // WAL is a property of the file: switch to it once, here. Otherwise
        // the pool's connections, opened in parallel, race to switch a new
        // file, the losers get "database is locked" without waiting, and
        // r2d2 retries them after a pause (a fresh start took 0.4 s).
        {
            let c = rusqlite::Connection::open(path)?;
            c.busy_timeout(BUSY_TIMEOUT)?;
            c.pragma_update(None, "journal_mode", "WAL")?;
        }
        let manager = Manager::sqlite(path, sync);
        let pool = r2d2::Pool::builder()
            .max_size(16)
            .connection_timeout(Duration::from_secs(30))
            .build(manager)?;
        Ok(Db { pool })
    }

    /// Which engine this database runs on.
    pub fn dialect(&self) -> AppResult<Dialect> {
        Ok(self.get()?.dialect())
    }

    /// A connection for synchronous callers (CLI, jobs already on a blocking
    /// thread).
    pub fn get(&self) -> AppResult<r2d2::PooledConnection<Manager>> {
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

/// Every connection's settings (the pool's and the writer's).
///
/// The query planner stability guarantee is on: by default SQLite looks at
/// some bound values while planning (a `LIMIT ?`, a `? IS NULL`) and then
/// compiles the statement again whenever those bindings change, which made a
/// cached statement cost a fresh prepare on every use (a tenth of a studio
/// page's CPU). Our plans never depend on the values: every condition on a
/// partial index is written as a literal.
fn configure(c: &rusqlite::Connection, sync: &str) -> sql::Result<()> {
    c.busy_timeout(BUSY_TIMEOUT)?;
    c.set_prepared_statement_cache_capacity(128);
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(c.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;"
    ))?)
}

/// The writer of one database file in this process: a lock, and a dedicated
/// connection that every write transaction uses. SQLite allows one writer at
/// a time anyway; waiting on this mutex instead of in SQLite's busy handler
/// (which sleeps in growing steps) hands the lock over as soon as it is free,
/// and a connection that made the last change keeps its page cache (a pooled
/// connection would re-read every page another one wrote). Other processes
/// (the CLI) still meet busy_timeout.
#[derive(Default)]
struct Writer {
    conn: Option<Connection>,
    /// The file the connection was opened on (device, inode): a file replaced
    /// on disk (a restore) gets a fresh connection.
    file: Option<(u64, u64)>,
}

fn file_id(path: &str) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

fn writer_for(path: &str) -> Arc<Mutex<Writer>> {
    static WRITERS: OnceLock<Mutex<HashMap<String, Arc<Mutex<Writer>>>>> = OnceLock::new();
    let mut map = WRITERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if map.len() > 16 && !map.contains_key(path) {
        // Close writers nobody is using (tests open many short-lived databases).
        map.retain(|_, w| Arc::strong_count(w) > 1);
    }
    map.entry(path.to_string()).or_default().clone()
}

/// Opens the dedicated write connection like the pool's, taking the
/// synchronous setting from the caller's connection.
fn open_writer(path: &str, like: &Connection) -> AppResult<Connection> {
    let sync: i64 = like.query_row("PRAGMA synchronous", (), |r| r.get(0))?;
    let c = rusqlite::Connection::open(path)?;
    configure(&c, &sync.to_string())?;
    Ok(Connection::sqlite(c))
}

/// The writer's connection, (re)opened if it is missing or the file on disk
/// was replaced.
fn writer_conn<'w>(
    w: &'w mut Writer,
    path: &str,
    like: &Connection,
) -> AppResult<&'w mut Connection> {
    let file = file_id(path);
    if w.conn.is_none() || w.file != file {
        w.conn = Some(open_writer(path, like)?);
        w.file = file;
    }
    Ok(w.conn.as_mut().expect("opened above"))
}

/// Runs `f` in a write transaction opened with BEGIN IMMEDIATE (so it never
/// fails half-way with SQLITE_BUSY when upgrading a read lock), committing on
/// Ok and rolling back on Err. The transaction runs on the file's dedicated
/// writer connection (see `Writer`), not on `conn`. Never nest: `f` must use
/// the transaction it is given.
pub fn write<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction) -> AppResult<T>,
) -> AppResult<T> {
    let path = conn.path().unwrap_or("").to_string();
    if path.is_empty() {
        // PostgreSQL (the transaction takes the cluster's write lock), or an
        // in-memory database, which has no second connection to the data.
        let tx = conn.write_transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        return Ok(out);
    }
    let writer = writer_for(&path);
    let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
    let wconn = writer_conn(&mut w, &path, conn)?;
    let tx = wconn.write_transaction()?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// Runs `f` in a `row_transaction`, retried on conflicts (see
/// `Connection::in_row_transaction`); on SQLite it is `write`.
pub fn write_rows<T>(
    conn: &mut Connection,
    f: impl Fn(&Transaction) -> AppResult<T>,
) -> AppResult<T> {
    if conn.dialect() == sql::Dialect::Sqlite {
        return write(conn, f);
    }
    conn.in_row_transaction(f)
}

/// Group commit for a hot kind of write: callers hand in an item; whoever
/// gets the file's writer next runs every item waiting at that moment in one
/// transaction, each inside its own SAVEPOINT (an item that fails is rolled
/// back alone and gets its error), and commits once. Under load many items
/// share one commit; alone, an item is its own batch. Items see the effects
/// of the items before them (limits stay exact).
pub struct Batcher<I, O> {
    queues: Mutex<HashMap<String, Vec<Pending<I, O>>>>,
}

type Pending<I, O> = (I, std::sync::mpsc::Sender<AppResult<O>>);

impl<I, O> Default for Batcher<I, O> {
    fn default() -> Self {
        Batcher {
            queues: Mutex::new(HashMap::new()),
        }
    }
}

impl<I, O> Batcher<I, O> {
    pub fn run(
        &self,
        conn: &mut Connection,
        item: I,
        f: impl Fn(&Transaction, &I) -> AppResult<O>,
    ) -> AppResult<O> {
        // SQLite batches on the file's writer connection; PostgreSQL on the
        // leader's own connection, one batch per node at a time (the write
        // lock orders the nodes' batches), so one commit's flush serves many.
        let Some(path) = conn.database_key() else {
            return write(conn, |tx| f(tx, &item));
        };
        let postgres = conn.dialect() == sql::Dialect::Postgres;
        let (tx_result, rx_result) = std::sync::mpsc::channel();
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(path.clone())
            .or_default()
            .push((item, tx_result));
        let writer = writer_for(&path);
        let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
        // A leader before us may have run our item already.
        if let Ok(done) = rx_result.try_recv() {
            return done;
        }
        let batch = std::mem::take(
            self.queues
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(path.clone())
                .or_default(),
        );
        let outcome = (|| -> AppResult<Vec<AppResult<O>>> {
            let wconn: &Connection = if postgres {
                conn
            } else {
                writer_conn(&mut w, &path, conn)?
            };
            let tx = wconn.write_transaction()?;
            let mut results = Vec::with_capacity(batch.len());
            for (item, _) in &batch {
                tx.execute_batch("SAVEPOINT item")?;
                let r = f(&tx, item);
                if r.is_err() {
                    tx.execute_batch("ROLLBACK TO item")?;
                }
                tx.execute_batch("RELEASE item")?;
                results.push(r);
            }
            tx.commit()?;
            Ok(results)
        })();
        match outcome {
            Ok(results) => {
                for ((_, reply), r) in batch.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                let message = e.to_string();
                for (_, reply) in batch {
                    let _ = reply.send(Err(AppError::Internal(message.clone())));
                }
            }
        }
        drop(w);
        rx_result
            .recv()
            .unwrap_or_else(|_| Err(AppError::internal("write batch lost")))
    }
}

/// Copies the write-ahead log into the database file and empties it, on
/// the writer connection (after an erasure, so old row versions do not
/// linger in the log).
pub fn checkpoint_truncate(conn: &mut Connection) -> AppResult<()> {
    let path = conn.path().unwrap_or("").to_string();
    if path.is_empty() {
        return Ok(());
    }
    let writer = writer_for(&path);
    let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
    let wconn = writer_conn(&mut w, &path, conn)?;
    wconn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", (), |_| Ok(()))?;
    Ok(())
}

/// True when the database answers a trivial query (`/healthz`).
pub fn ping(conn: &Connection) -> AppResult<()> {
    conn.query_row("SELECT 1", (), |r| r.get::<_, i64>(0))?;
    Ok(())
}

/// Runs `f` inside a savepoint of the caller's transaction: what it wrote is
/// undone if it fails, and the rest of the transaction goes on.
pub fn savepoint<T>(conn: &Connection, f: impl FnOnce() -> AppResult<T>) -> AppResult<T> {
    conn.execute_batch("SAVEPOINT inner_step")?;
    let out = f();
    if out.is_err() {
        conn.execute_batch("ROLLBACK TO inner_step")?;
    }
    conn.execute_batch("RELEASE inner_step")?;
    out
}
