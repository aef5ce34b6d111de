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
//!   transaction never fails half-way on a serialization conflict;
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

/// One value as both engines hand it over and take it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// A value owned (rows copied from one database to another).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<ValueRef<'_>> for Value {
    fn from(v: ValueRef<'_>) -> Value {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => Value::Text(t.to_string()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(t) => ValueRef::Text(t),
            Value::Blob(b) => ValueRef::Blob(b),
        }
    }
}

/// A Rust value that can be a query parameter.
pub trait ToSql {
    fn to_sql(&self) -> ValueRef<'_>;
}

/// A Rust value that can be read from a column.
pub trait FromSql: Sized {
    fn column_result(v: ValueRef<'_>) -> Result<Self>;
}

fn wrong(want: &str, got: ValueRef<'_>) -> Error {
    let got = match got {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real number",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    };
    Error::Conversion(format!("expected {want}, found {got}"))
}

macro_rules! int_types {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> ValueRef<'_> {
                ValueRef::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
        impl FromSql for $t {
            fn column_result(v: ValueRef<'_>) -> Result<Self> {
                match v {
                    ValueRef::Integer(i) => <$t>::try_from(i).map_err(|_| {
                        Error::Conversion(format!("{i} is out of range for {}", stringify!($t)))
                    }),
                    other => Err(wrong("an integer", other)),
                }
            }
        }
    )*};
}

int_types!(i64, i32, i16, i8, u64, u32, u16, u8, usize);

impl ToSql for bool {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Integer(*self as i64)
    }
}

impl FromSql for bool {
    fn column_result(v: ValueRef<'_>) -> Result<Self> {
        match v {
            ValueRef::Integer(i) => Ok(i != 0),
            other => Err(wrong("a boolean", other)),
        }
    }
}

impl ToSql for f64 {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Real(*self)
    }
}

impl FromSql for f64 {
    fn column_result(v: ValueRef<'_>) -> Result<Self> {
        match v {
            ValueRef::Real(f) => Ok(f),
            ValueRef::Integer(i) => Ok(i as f64),
            other => Err(wrong("a number", other)),
        }
    }
}

impl ToSql for str {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}

impl ToSql for String {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}

impl FromSql for String {
    fn column_result(v: ValueRef<'_>) -> Result<Self> {
        match v {
            ValueRef::Text(t) => Ok(t.to_string()),
            other => Err(wrong("text", other)),
        }
    }
}

impl ToSql for [u8] {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}

impl ToSql for Vec<u8> {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}

impl FromSql for Vec<u8> {
    fn column_result(v: ValueRef<'_>) -> Result<Self> {
        match v {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            ValueRef::Text(t) => Ok(t.as_bytes().to_vec()),
            other => Err(wrong("a blob", other)),
        }
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_sql(&self) -> ValueRef<'_> {
        match self {
            Some(v) => v.to_sql(),
            None => ValueRef::Null,
        }
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn column_result(v: ValueRef<'_>) -> Result<Self> {
        match v {
            ValueRef::Null => Ok(None),
            v => T::column_result(v).map(Some),
        }
    }
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_sql(&self) -> ValueRef<'_> {
        (**self).to_sql()
    }
}

impl<T: ToSql + ?Sized> ToSql for Box<T> {
    fn to_sql(&self) -> ValueRef<'_> {
        (**self).to_sql()
    }
}

/// A query's parameters: `()`, an array, `params![...]` or
/// `params_from_iter(...)`.
pub trait Params {
    fn values(&self) -> Vec<ValueRef<'_>>;
}

impl Params for () {
    fn values(&self) -> Vec<ValueRef<'_>> {
        Vec::new()
    }
}

impl<T: ToSql, const N: usize> Params for [T; N] {
    fn values(&self) -> Vec<ValueRef<'_>> {
        self.iter().map(ToSql::to_sql).collect()
    }
}

impl Params for &[&dyn ToSql] {
    fn values(&self) -> Vec<ValueRef<'_>> {
        self.iter().map(|v| v.to_sql()).collect()
    }
}

impl<const N: usize> Params for &[&dyn ToSql; N] {
    fn values(&self) -> Vec<ValueRef<'_>> {
        self.iter().map(|v| v.to_sql()).collect()
    }
}

/// Parameters from an iterator of values.
pub struct ParamsFromIter<T>(Vec<T>);

pub fn params_from_iter<I>(iter: I) -> ParamsFromIter<I::Item>
where
    I: IntoIterator,
    I::Item: ToSql,
{
    ParamsFromIter(iter.into_iter().collect())
}

impl<T: ToSql> Params for ParamsFromIter<T> {
    fn values(&self) -> Vec<ValueRef<'_>> {
        self.0.iter().map(ToSql::to_sql).collect()
    }
}

/// `params![a, b, c]`, as in rusqlite.
#[macro_export]
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::domain::values::ToSql]
    };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::domain::values::ToSql),+] as &[&dyn $crate::domain::values::ToSql]
    };
}
pub use crate::params;

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

// ---------------------------------------------------------------------------
// PostgreSQL specifics

pub(super) mod pg {
    use super::{Error, ValueRef};
    use postgres::types::{FromSql, IsNull, Kind, ToSql, Type};
    use std::collections::HashMap;

    type BoxError = Box<dyn std::error::Error + Sync + Send>;

    /// A PostgreSQL client with its prepared statements.
    pub struct Client {
        /// `None` only while being dropped.
        client: Option<postgres::Client>,
        /// Inside BEGIN ... COMMIT (a failed prepare must not end it).
        pub in_transaction: bool,
        statements: HashMap<String, postgres::Statement>,
    }

    /// How many prepared statements a connection keeps.
    const STATEMENT_CACHE: usize = 512;

    impl Client {
        pub fn new(client: postgres::Client) -> Client {
            Client {
                client: Some(client),
                in_transaction: false,
                statements: HashMap::new(),
            }
        }

        pub fn client(&mut self) -> &mut postgres::Client {
            self.client
                .as_mut()
                .expect("a client is open until dropped")
        }

        pub fn is_closed(&self) -> bool {
            self.client.as_ref().is_none_or(|c| c.is_closed())
        }

        /// The prepared statement of `sql`. The server infers each
        /// parameter's type from where it is used; where it cannot (`?2 IS
        /// NULL` alone, `lower(?1)`), the statement is prepared again with the
        /// types of the values of this first call (text for a NULL).
        fn statement(
            &mut self,
            sql: &str,
            values: &[ValueRef<'_>],
        ) -> Result<postgres::Statement, Error> {
            if let Some(s) = self.statements.get(sql) {
                return Ok(s.clone());
            }
            let text = placeholders(sql);
            // In a transaction a failed prepare would abort it: a savepoint
            // keeps the transaction usable for the second try.
            let guard = self.in_transaction;
            let client = self.client();
            if guard {
                blocking(|| client.batch_execute("SAVEPOINT novart_prepare"))?;
            }
            let first = blocking(|| client.prepare(&text));
            if guard {
                let end = if first.is_ok() {
                    "RELEASE novart_prepare"
                } else {
                    "ROLLBACK TO novart_prepare; RELEASE novart_prepare"
                };
                blocking(|| client.batch_execute(end))?;
            }
            let stmt = match first {
                Ok(stmt) => stmt,
                Err(e)
                    if [
                        postgres::error::SqlState::INDETERMINATE_DATATYPE,
                        postgres::error::SqlState::AMBIGUOUS_PARAMETER,
                        postgres::error::SqlState::AMBIGUOUS_FUNCTION,
                    ]
                    .iter()
                    .any(|c| e.code() == Some(c)) =>
                {
                    let types: Vec<Type> = values
                        .iter()
                        .map(|v| match v {
                            ValueRef::Integer(_) => Type::INT8,
                            ValueRef::Real(_) => Type::FLOAT8,
                            ValueRef::Blob(_) => Type::BYTEA,
                            ValueRef::Text(_) | ValueRef::Null => Type::TEXT,
                        })
                        .collect();
                    blocking(|| client.prepare_typed(&text, &types)).map_err(|e| failed(sql, e))?
                }
                Err(e) => return Err(failed(sql, e)),
            };
            if self.statements.len() >= STATEMENT_CACHE {
                self.statements.clear();
            }
            self.statements.insert(sql.to_string(), stmt.clone());
            Ok(stmt)
        }

        pub fn execute(&mut self, sql: &str, values: &[ValueRef<'_>]) -> Result<u64, Error> {
            tracing::trace!(sql, "execute");
            let stmt = self.statement(sql, values)?;
            let args = args(values);
            let refs = refs(&args);
            let client = self.client();
            blocking(|| client.execute(&stmt, &refs)).map_err(|e| failed(sql, e))
        }

        pub fn query(
            &mut self,
            sql: &str,
            values: &[ValueRef<'_>],
        ) -> Result<Vec<postgres::Row>, Error> {
            tracing::trace!(sql, "query");
            let stmt = self.statement(sql, values)?;
            let args = args(values);
            let refs = refs(&args);
            let client = self.client();
            blocking(|| client.query(&stmt, &refs)).map_err(|e| failed(sql, e))
        }
    }

    /// A statement's error, logged with the statement (at debug level: the
    /// caller decides whether it matters).
    pub fn failed(sql: &str, e: postgres::Error) -> Error {
        let e = Error::from(e);
        tracing::debug!(sql, "statement failed: {e}");
        e
    }

    /// Runs a call of the sync driver, which blocks on a runtime of its
    /// own; tokio refuses that on a thread that drives async tasks (a
    /// request guard, a pool dropped when the server stops, a server built
    /// inside `rocket::execute`). There the call runs with the thread handed
    /// over to blocking (`block_in_place`), or on a thread of its own when
    /// the runtime has a single thread. Elsewhere (the blocking pool, the
    /// CLI) it just runs.
    pub fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        use rocket::tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Err(_) => f(),
            Ok(RuntimeFlavor::MultiThread) => rocket::tokio::task::block_in_place(f),
            Ok(_) => std::thread::scope(|s| {
                s.spawn(f)
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            }),
        }
    }

    /// Connects (see `blocking`).
    pub fn connect(
        config: &postgres::Config,
        tls: &tokio_postgres_rustls::MakeRustlsConnect,
    ) -> Result<Client, Error> {
        let client = blocking(|| config.connect(tls.clone()))?;
        Ok(Client::new(client))
    }

    /// Closing a connection blocks too (see `blocking`).
    impl Drop for Client {
        fn drop(&mut self) {
            if let Some(client) = self.client.take() {
                blocking(move || drop(client));
            }
        }
    }

    /// The shared SQL in PostgreSQL's spelling, outside quotes and
    /// comments: `?N` becomes `$N` and a bare `?` the next number, and
    /// SQLite's `instr(haystack, needle)` becomes `strpos` (the same
    /// arguments and answer).
    pub fn placeholders(sql: &str) -> String {
        let mut out = String::with_capacity(sql.len() + 8);
        let mut chars = sql.char_indices().peekable();
        let mut next = 0u32;
        let mut prev_ident = false;
        while let Some((at, c)) = chars.next() {
            match c {
                '\'' | '"' => {
                    out.push(c);
                    for (_, d) in chars.by_ref() {
                        out.push(d);
                        if d == c {
                            break;
                        }
                    }
                }
                '-' if chars.peek().map(|p| p.1) == Some('-') => {
                    out.push(c);
                    for (_, d) in chars.by_ref() {
                        out.push(d);
                        if d == '\n' {
                            break;
                        }
                    }
                }
                '?' => {
                    let mut digits = String::new();
                    while let Some((_, d)) = chars.peek().filter(|d| d.1.is_ascii_digit()) {
                        digits.push(*d);
                        chars.next();
                    }
                    if digits.is_empty() {
                        next += 1;
                        digits = next.to_string();
                    } else if let Ok(n) = digits.parse::<u32>() {
                        next = next.max(n);
                    }
                    out.push('$');
                    out.push_str(&digits);
                }
                'i' | 'I'
                    if !prev_ident
                        && sql
                            .get(at..at + 6)
                            .is_some_and(|w| w.eq_ignore_ascii_case("instr(")) =>
                {
                    out.push_str("strpos(");
                    for _ in 0..5 {
                        chars.next();
                    }
                }
                c => out.push(c),
            }
            prev_ident = c.is_ascii_alphanumeric() || c == '_';
        }
        out
    }

    /// A parameter that takes whatever type the server inferred for it.
    #[derive(Debug)]
    pub struct Arg<'a>(pub ValueRef<'a>);

    pub fn args<'a>(values: &'a [ValueRef<'a>]) -> Vec<Arg<'a>> {
        values.iter().map(|v| Arg(*v)).collect()
    }

    pub fn refs<'a>(args: &'a [Arg<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
        args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
    }

    fn mismatch(v: &ValueRef<'_>, ty: &Type) -> BoxError {
        format!("cannot pass {v:?} as {ty}").into()
    }

    impl ToSql for Arg<'_> {
        fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
            match self.0 {
                ValueRef::Null => Ok(IsNull::Yes),
                ValueRef::Integer(i) => match *ty {
                    Type::INT8 => i.to_sql(ty, out),
                    Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                    Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                    Type::BOOL => (i != 0).to_sql(ty, out),
                    Type::FLOAT8 => (i as f64).to_sql(ty, out),
                    Type::FLOAT4 => (i as f32).to_sql(ty, out),
                    Type::NUMERIC => numeric(i, out),
                    Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::UNKNOWN => {
                        i.to_string().as_str().to_sql(&Type::TEXT, out)
                    }
                    _ => Err(mismatch(&self.0, ty)),
                },
                ValueRef::Real(f) => match *ty {
                    Type::FLOAT8 => f.to_sql(ty, out),
                    Type::FLOAT4 => (f as f32).to_sql(ty, out),
                    _ => Err(mismatch(&self.0, ty)),
                },
                ValueRef::Text(t) => match *ty {
                    Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                        t.to_sql(&Type::TEXT, out)
                    }
                    Type::BYTEA => t.as_bytes().to_sql(ty, out),
                    // citext (the schema's case-insensitive text) is sent
                    // as text.
                    _ if ty.name() == "citext" => t.to_sql(&Type::TEXT, out),
                    _ => Err(mismatch(&self.0, ty)),
                },
                ValueRef::Blob(b) => match *ty {
                    Type::BYTEA => b.to_sql(ty, out),
                    _ => Err(mismatch(&self.0, ty)),
                },
            }
        }

        fn accepts(_: &Type) -> bool {
            true
        }

        postgres::types::to_sql_checked!();
    }

    /// An integer as NUMERIC's binary form (base-10000 digits).
    fn numeric(i: i64, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        use bytes::BufMut;
        let negative = i < 0;
        let mut n = i.unsigned_abs();
        let mut digits = Vec::new();
        while n > 0 {
            digits.push((n % 10_000) as i16);
            n /= 10_000;
        }
        digits.reverse();
        let weight = digits.len() as i16 - 1;
        out.put_i16(digits.len() as i16);
        out.put_i16(weight.max(0));
        out.put_u16(if negative { 0x4000 } else { 0 });
        out.put_i16(0);
        for d in digits {
            out.put_i16(d);
        }
        Ok(IsNull::No)
    }

    /// Any column, read as one of the shared value kinds.
    pub struct Any<'a>(pub ValueRef<'a>);

    impl<'a> FromSql<'a> for Any<'a> {
        fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
            Ok(Any(match *ty {
                Type::INT8 => ValueRef::Integer(i64::from_sql(ty, raw)?),
                Type::INT4 => ValueRef::Integer(i32::from_sql(ty, raw)?.into()),
                Type::INT2 => ValueRef::Integer(i16::from_sql(ty, raw)?.into()),
                Type::OID => ValueRef::Integer(u32::from_sql(ty, raw)?.into()),
                Type::BOOL => ValueRef::Integer(bool::from_sql(ty, raw)?.into()),
                Type::FLOAT8 => ValueRef::Real(f64::from_sql(ty, raw)?),
                Type::FLOAT4 => ValueRef::Real(f32::from_sql(ty, raw)?.into()),
                Type::NUMERIC => read_numeric(raw)?,
                Type::BYTEA => ValueRef::Blob(raw),
                _ => match ty.kind() {
                    Kind::Simple | Kind::Domain(_) | Kind::Enum(_) => {
                        ValueRef::Text(<&str>::from_sql(&Type::TEXT, raw)?)
                    }
                    _ => return Err(format!("unsupported column type {ty}").into()),
                },
            }))
        }

        fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
            Ok(Any(ValueRef::Null))
        }

        fn accepts(_: &Type) -> bool {
            true
        }
    }

    /// NUMERIC's binary form: an integer when it has no fraction (SUM over
    /// integers), else a real number.
    fn read_numeric(raw: &[u8]) -> Result<ValueRef<'static>, BoxError> {
        let word = |i: usize| -> Result<i16, BoxError> {
            raw.get(i * 2..i * 2 + 2)
                .map(|b| i16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(|| "short NUMERIC".into())
        };
        let (ndigits, weight, sign) = (word(0)?, word(1)?, word(2)? as u16);
        if sign == 0xC000 {
            return Ok(ValueRef::Real(f64::NAN));
        }
        let mut value: f64 = 0.0;
        let mut exact: Option<i64> = Some(0);
        for k in 0..ndigits as usize {
            let d = word(4 + k)? as i64;
            let power = weight as i32 - k as i32;
            value += d as f64 * 10_000f64.powi(power);
            exact = match (exact, power >= 0) {
                (Some(acc), true) => 10_000i64
                    .checked_pow(power as u32)
                    .and_then(|p| d.checked_mul(p))
                    .and_then(|x| acc.checked_add(x)),
                (acc, false) if d == 0 => acc,
                _ => None,
            };
        }
        let negative = sign == 0x4000;
        Ok(match exact {
            Some(i) => ValueRef::Integer(if negative { -i } else { i }),
            _ => ValueRef::Real(if negative { -value } else { value }),
        })
    }

    #[cfg(test)]
    mod tests {
        use super::placeholders;

        #[test]
        fn placeholders_are_numbered_outside_quotes() {
            assert_eq!(
                placeholders("SELECT '?', x FROM t WHERE a = ?1 AND b = ?2 -- ?\n AND c = ?"),
                "SELECT '?', x FROM t WHERE a = $1 AND b = $2 -- ?\n AND c = $3"
            );
            assert_eq!(placeholders("a = ? AND b = ?"), "a = $1 AND b = $2");
            assert_eq!(
                placeholders("WHERE instr(lower(p), ?1) > 0 AND xinstr(a)"),
                "WHERE strpos(lower(p), $1) > 0 AND xinstr(a)"
            );
        }
    }
}

impl From<Error> for crate::error::AppError {
    fn from(e: Error) -> Self {
        crate::error::AppError::Internal(format!("database: {e}"))
    }
}
