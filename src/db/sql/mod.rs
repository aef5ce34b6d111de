//! The dialect seam: one connection type for SQLite and PostgreSQL.
//!
//! The queries in `db/` are written once, in the SQL both engines accept
//! (`?N` placeholders, `ON CONFLICT … DO …`, `RETURNING`, `COALESCE`), and
//! run through the small API below, shaped like rusqlite's. What differs
//! lives here and nowhere else:
//!
//! - placeholders: `?N` and `?` become `$N` for PostgreSQL;
//! - values: both engines' values pass through `ValueRef`, so integers are
//!   `i64` whatever the column's width, booleans and NUMERIC sums read as
//!   integers, and a parameter takes the type the server expects;
//! - transactions: SQLite's write transactions are `BEGIN IMMEDIATE` (one
//!   writer per file); PostgreSQL's take one advisory lock first, so writers
//!   across every node run one after another exactly as on SQLite, and a
//!   transaction never fails half-way on a serialization conflict. The one
//!   hot write that must run beside them, the queue's claim, takes a
//!   `row_transaction` instead: no advisory lock, and its statements lock
//!   only the rows they change (`FOR UPDATE … SKIP LOCKED`);
//! - statement caches: rusqlite's own, and a prepared-statement map per
//!   PostgreSQL connection.

use std::cell::RefCell;
use std::fmt;

/// Which engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The advisory lock every PostgreSQL write transaction takes (see the
/// module's documentation). Any fixed number works; this one spells "NOVA".
pub const WRITE_LOCK: i64 = 0x4E4F_5641;

/// What can go wrong in a query.
#[derive(Debug)]
pub enum Error {
    Sqlite(rusqlite::Error),
    Postgres(postgres::Error),
    /// `query_row` found no row (`optional()` turns it into `None`).
    NoRows,
    /// A column did not hold what the code reads it as.
    Conversion(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sqlite(e) => e.fmt(f),
            Error::Postgres(e) => match e.as_db_error() {
                Some(db) => write!(f, "{}: {}", db.code().code(), db.message()),
                None => match std::error::Error::source(e) {
                    Some(cause) => write!(f, "{e}: {cause}"),
                    None => e.fmt(f),
                },
            },
            Error::NoRows => f.write_str("query returned no rows"),
            Error::Conversion(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => Error::NoRows,
            e => Error::Sqlite(e),
        }
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Error::Postgres(e)
    }
}

impl Error {
    /// True when PostgreSQL gave up on the transaction because of another
    /// one (a serialization failure or a deadlock): running it again is
    /// the cure. SQLite's writers never meet this way.
    pub fn is_conflict(&self) -> bool {
        use postgres::error::SqlState;
        match self {
            Error::Postgres(e) => matches!(
                e.code(),
                Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
            ),
            _ => false,
        }
    }

    /// True for a unique or primary-key violation, on either engine.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            Error::Postgres(e) => e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION),
            _ => false,
        }
    }
}

/// `query_row(...).optional()`: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

mod values;
pub use values::*;

// ---------------------------------------------------------------------------
// Rows

/// One result row.
pub enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r postgres::Row),
}

/// A column named by position or by name.
pub trait RowIndex {
    fn position(&self, row: &Row<'_>) -> Result<usize>;
}

impl RowIndex for usize {
    fn position(&self, _row: &Row<'_>) -> Result<usize> {
        Ok(*self)
    }
}

impl RowIndex for &str {
    fn position(&self, row: &Row<'_>) -> Result<usize> {
        let found = match row {
            Row::Sqlite(r) => r.as_ref().column_index(self).ok(),
            Row::Postgres(r) => r.columns().iter().position(|c| c.name() == *self),
        };
        found.ok_or_else(|| Error::Conversion(format!("no column named {self}")))
    }
}

impl Row<'_> {
    pub fn get<I: RowIndex, T: FromSql>(&self, idx: I) -> Result<T> {
        let i = idx.position(self)?;
        self.with_value(i, |v| {
            T::column_result(v).map_err(|e| Error::Conversion(format!("column {i}: {e}")))
        })
    }

    /// The raw value of a column, for code that handles any type.
    pub fn with_value<T>(&self, i: usize, f: impl FnOnce(ValueRef<'_>) -> Result<T>) -> Result<T> {
        match self {
            Row::Sqlite(r) => {
                let v = r.get_ref(i)?;
                f(match v {
                    rusqlite::types::ValueRef::Null => ValueRef::Null,
                    rusqlite::types::ValueRef::Integer(n) => ValueRef::Integer(n),
                    rusqlite::types::ValueRef::Real(x) => ValueRef::Real(x),
                    rusqlite::types::ValueRef::Text(t) => ValueRef::Text(
                        std::str::from_utf8(t)
                            .map_err(|_| Error::Conversion(format!("column {i}: not UTF-8")))?,
                    ),
                    rusqlite::types::ValueRef::Blob(b) => ValueRef::Blob(b),
                })
            }
            Row::Postgres(r) => {
                if i >= r.len() {
                    return Err(Error::Conversion(format!("no column {i}")));
                }
                let v: pg::Any<'_> = r.try_get(i)?;
                f(v.0)
            }
        }
    }

    pub fn column_name(&self, i: usize) -> Option<&str> {
        match self {
            Row::Sqlite(r) => r.as_ref().column_name(i).ok(),
            Row::Postgres(r) => r.columns().get(i).map(|c| c.name()),
        }
    }

    pub fn column_count(&self) -> usize {
        match self {
            Row::Sqlite(r) => r.as_ref().column_count(),
            Row::Postgres(r) => r.len(),
        }
    }
}

// ---------------------------------------------------------------------------
// Connections

/// A connection to either engine. Every method takes `&self`, as rusqlite's
/// do, so a transaction can be shared by the functions it calls.
pub struct Connection {
    inner: Inner,
}

enum Inner {
    Sqlite(rusqlite::Connection),
    Postgres(Box<RefCell<pg::Client>>),
}

impl Connection {
    pub fn sqlite(c: rusqlite::Connection) -> Connection {
        Connection {
            inner: Inner::Sqlite(c),
        }
    }

    pub(super) fn postgres(c: pg::Client) -> Connection {
        Connection {
            inner: Inner::Postgres(Box::new(RefCell::new(c))),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self.inner {
            Inner::Sqlite(_) => Dialect::Sqlite,
            Inner::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The SQLite connection underneath (backups, pragmas, the writer).
    pub fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.inner {
            Inner::Sqlite(c) => Some(c),
            Inner::Postgres(_) => None,
        }
    }

    pub fn as_sqlite_mut(&mut self) -> Option<&mut rusqlite::Connection> {
        match &mut self.inner {
            Inner::Sqlite(c) => Some(c),
            Inner::Postgres(_) => None,
        }
    }

    /// The SQLite file's path; `None` for memory and for PostgreSQL.
    pub fn path(&self) -> Option<&str> {
        self.as_sqlite()
            .and_then(|c| c.path())
            .filter(|p| !p.is_empty())
    }

    /// Names the database this connection reaches (its file, or
    /// PostgreSQL's hosts and database name), or `None` for an in-memory
    /// one: connections with the same name share one database.
    pub fn database_key(&self) -> Option<String> {
        match &self.inner {
            Inner::Sqlite(_) => self.path().map(str::to_string),
            Inner::Postgres(c) => Some(c.borrow().database.clone()),
        }
    }

    /// True when the connection can no longer be used (the server hung up).
    pub(super) fn is_broken(&self) -> bool {
        match &self.inner {
            Inner::Sqlite(_) => false,
            Inner::Postgres(c) => c.try_borrow().map(|c| c.is_closed()).unwrap_or(false),
        }
    }

    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Postgres(c) => {
                let mut c = c.borrow_mut();
                let client = c.client();
                pg::blocking(|| client.batch_execute(sql)).map_err(|e| pg::failed(sql, e))
            }
        }
    }

    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        self.prepare_cached(sql)
    }

    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(Statement {
            inner: match &self.inner {
                Inner::Sqlite(c) => StmtInner::Sqlite(c.prepare_cached(sql)?),
                Inner::Postgres(c) => StmtInner::Postgres(c, sql.to_string()),
            },
        })
    }

    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    pub fn query_row<T, P: Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// The id the last INSERT on this connection gave its row.
    pub fn last_insert_rowid(&self) -> Result<i64> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.last_insert_rowid()),
            Inner::Postgres(_) => self.query_row("SELECT lastval()", (), |r| r.get(0)),
        }
    }

    /// The notifications that arrived on a PostgreSQL connection that
    /// LISTENs, waiting up to `wait` for the first (none on SQLite).
    pub fn notifications(&self, wait: std::time::Duration) -> Result<Vec<String>> {
        let Inner::Postgres(c) = &self.inner else {
            std::thread::sleep(wait);
            return Ok(Vec::new());
        };
        let mut c = c.borrow_mut();
        let client = c.client();
        pg::blocking(|| {
            use fallible_iterator::FallibleIterator;
            let mut out = Vec::new();
            let mut n = client.notifications();
            let first = n.timeout_iter(wait).next()?;
            if let Some(first) = first {
                out.push(first.payload().to_string());
                let mut more = n.iter();
                while let Some(next) = more.next()? {
                    out.push(next.payload().to_string());
                }
            }
            Ok(out)
        })
    }

    fn set_in_transaction(&self, yes: bool) {
        if let Inner::Postgres(c) = &self.inner {
            c.borrow_mut().in_transaction = yes;
        }
    }

    /// A read transaction: every query in it sees one moment.
    pub fn transaction(&mut self) -> Result<Transaction<'_>> {
        let begin = match self.dialect() {
            Dialect::Sqlite => "BEGIN DEFERRED",
            Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ",
        };
        self.execute_batch(begin)?;
        self.set_in_transaction(true);
        Ok(Transaction {
            conn: self,
            open: true,
        })
    }

    /// A write transaction whose statements lock the rows they change
    /// themselves: on PostgreSQL it takes no advisory lock, so it runs beside
    /// the other writers (see the module's documentation); on SQLite it is
    /// `write_transaction`.
    pub fn row_transaction(&self) -> Result<Transaction<'_>> {
        if self.dialect() == Dialect::Sqlite {
            return self.write_transaction();
        }
        self.execute_batch("BEGIN")?;
        self.set_in_transaction(true);
        Ok(Transaction {
            conn: self,
            open: true,
        })
    }

    /// Runs `f` in a `row_transaction` and commits. When PostgreSQL gives
    /// up on it because of another transaction (a deadlock or a
    /// serialization failure), it is rolled back and run again, up to five
    /// times, before the conflict reaches the caller as a busy moment (503,
    /// never a 500).
    pub fn in_row_transaction<T>(
        &self,
        f: impl Fn(&Transaction) -> crate::error::AppResult<T>,
    ) -> crate::error::AppResult<T> {
        const ATTEMPTS: u32 = 5;
        let mut attempt = 1;
        loop {
            let out = (|| {
                let tx = self.row_transaction()?;
                let out = f(&tx)?;
                tx.commit()?;
                Ok(out)
            })();
            match out {
                Err(crate::error::AppError::Busy { ref message, .. })
                    if message == CONFLICT_MESSAGE && attempt < ATTEMPTS =>
                {
                    tracing::debug!(attempt, "a transaction met another one; running it again");
                    std::thread::sleep(std::time::Duration::from_millis(5 << attempt));
                    attempt += 1;
                }
                out => return out,
            }
        }
    }

    /// What a `SELECT` ends with to lock the rows it reads until the
    /// transaction ends. Empty on SQLite, whose write transaction already
    /// holds the whole file.
    pub fn for_update(&self) -> &'static str {
        match self.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// A write transaction (see the module's documentation).
    pub fn write_transaction(&self) -> Result<Transaction<'_>> {
        match self.dialect() {
            Dialect::Sqlite => self.execute_batch("BEGIN IMMEDIATE")?,
            Dialect::Postgres => {
                self.execute_batch("BEGIN")?;
                self.set_in_transaction(true);
                let tx = Transaction {
                    conn: self,
                    open: true,
                };
                tx.query_row("SELECT pg_advisory_xact_lock(?1)", [WRITE_LOCK], |_| Ok(()))?;
                return Ok(tx);
            }
        }
        Ok(Transaction {
            conn: self,
            open: true,
        })
    }
}

/// An open transaction; rolled back when dropped without `commit`.
pub struct Transaction<'c> {
    conn: &'c Connection,
    open: bool,
}

impl Transaction<'_> {
    pub fn commit(mut self) -> Result<()> {
        self.open = false;
        let out = self.conn.execute_batch("COMMIT");
        self.conn.set_in_transaction(false);
        out
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.conn.set_in_transaction(false);
        }
    }
}

/// A prepared statement.
pub struct Statement<'c> {
    inner: StmtInner<'c>,
}

enum StmtInner<'c> {
    Sqlite(rusqlite::CachedStatement<'c>),
    Postgres(&'c RefCell<pg::Client>, String),
}

impl rusqlite::ToSql for ValueRef<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef as V};
        Ok(ToSqlOutput::Borrowed(match *self {
            ValueRef::Null => V::Null,
            ValueRef::Integer(i) => V::Integer(i),
            ValueRef::Real(f) => V::Real(f),
            ValueRef::Text(t) => V::Text(t.as_bytes()),
            ValueRef::Blob(b) => V::Blob(b),
        }))
    }
}

fn bind_sqlite<'a>(values: &'a [ValueRef<'a>]) -> impl rusqlite::Params + 'a {
    rusqlite::params_from_iter(values.iter())
}

impl Statement<'_> {
    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        let values = params.values();
        match &mut self.inner {
            StmtInner::Sqlite(s) => Ok(s.execute(bind_sqlite(&values))?),
            StmtInner::Postgres(c, sql) => Ok(c.borrow_mut().execute(sql, &values)? as usize),
        }
    }

    pub fn query_map<T, P: Params>(
        &mut self,
        params: P,
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let values = params.values();
        let mut out = Vec::new();
        match &mut self.inner {
            StmtInner::Sqlite(s) => {
                let mut rows = s.query(bind_sqlite(&values))?;
                while let Some(r) = rows.next()? {
                    out.push(f(&Row::Sqlite(r)));
                }
            }
            StmtInner::Postgres(c, sql) => {
                let rows = c.borrow_mut().query(sql, &values)?;
                for r in &rows {
                    out.push(f(&Row::Postgres(r)));
                }
            }
        }
        Ok(out.into_iter())
    }

    pub fn query_row<T, P: Params>(
        &mut self,
        params: P,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let values = params.values();
        match &mut self.inner {
            StmtInner::Sqlite(s) => {
                let mut rows = s.query(bind_sqlite(&values))?;
                match rows.next()? {
                    Some(r) => f(&Row::Sqlite(r)),
                    None => Err(Error::NoRows),
                }
            }
            StmtInner::Postgres(c, sql) => {
                let rows = c.borrow_mut().query(sql, &values)?;
                match rows.first() {
                    Some(r) => f(&Row::Postgres(r)),
                    None => Err(Error::NoRows),
                }
            }
        }
    }

    pub fn exists<P: Params>(&mut self, params: P) -> Result<bool> {
        self.query_row(params, |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
    }
}

// PostgreSQL specifics
pub(super) mod pg;

impl From<Error> for crate::error::AppError {
    fn from(e: Error) -> Self {
        if e.is_conflict() {
            // Retried where it can happen (`db::write_rows`); if it still
            // reaches a request, it is a busy moment, not a fault.
            tracing::warn!("database: {e}");
            return crate::error::AppError::Busy {
                message: CONFLICT_MESSAGE.into(),
                retry_after_secs: 1,
            };
        }
        crate::error::AppError::Internal(format!("database: {e}"))
    }
}

/// What a request sees when its transaction kept meeting others.
pub const CONFLICT_MESSAGE: &str = "The server is busy. Please try again in a moment.";
