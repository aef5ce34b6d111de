//! SQL for data exports: the `exports` rows, and reading one account's rows
//! of any table as JSON objects (column name → value).

use super::sql::ValueRef;
use super::sql::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::AppResult;
use crate::model::UserId;

/// Runs `sql` with the user id as ?1 and returns each row as an object.
pub fn rows(conn: &Connection, sql: &str, user: UserId) -> AppResult<Vec<Value>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([user], |r| {
        let mut m = Map::new();
        for i in 0..r.column_count() {
            let v = r.with_value(i, |v| {
                Ok(match v {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::from(n),
                    ValueRef::Real(f) => Value::from(f),
                    ValueRef::Text(t) => Value::from(t),
                    ValueRef::Blob(b) => Value::from(hex::encode(b)),
                })
            })?;
            m.insert(r.column_name(i).unwrap_or_default().to_string(), v);
        }
        Ok(Value::Object(m))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Debug, Clone, Serialize)]
pub struct Export {
    pub id: i64,
    pub user_id: i64,
    pub status: String,
    pub public_id: String,
    pub file: Option<String>,
    pub bytes: Option<i64>,
    pub error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub expires_at: i64,
}

const COLUMNS: &str =
    "id, user_id, status, public_id, file, bytes, error, created_at, finished_at, expires_at";

fn export(r: &Row<'_>) -> super::sql::Result<Export> {
    Ok(Export {
        id: r.get(0)?,
        user_id: r.get(1)?,
        status: r.get(2)?,
        public_id: r.get(3)?,
        file: r.get(4)?,
        bytes: r.get(5)?,
        error: r.get(6)?,
        created_at: r.get(7)?,
        finished_at: r.get(8)?,
        expires_at: r.get(9)?,
    })
}

pub fn insert(
    conn: &Connection,
    user: UserId,
    public_id: &str,
    now: i64,
    expires_at: i64,
) -> AppResult<i64> {
    conn.prepare_cached(
        "INSERT INTO exports (user_id, public_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![user, public_id, now, expires_at])?;
    Ok(conn.last_insert_rowid()?)
}

pub fn by_public_id(conn: &Connection, public_id: &str) -> AppResult<Option<Export>> {
    let sql = format!("SELECT {COLUMNS} FROM exports WHERE public_id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([public_id], export)
        .optional()?)
}

pub fn for_user(conn: &Connection, user: UserId) -> AppResult<Vec<Export>> {
    let sql = format!("SELECT {COLUMNS} FROM exports WHERE user_id = ?1 ORDER BY id DESC LIMIT 10");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([user], export)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn pending(conn: &Connection, limit: u32) -> AppResult<Vec<Export>> {
    let sql =
        format!("SELECT {COLUMNS} FROM exports WHERE status = 'pending' ORDER BY id LIMIT ?1");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([limit], export)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn finish(
    conn: &Connection,
    id: i64,
    file: Option<&str>,
    bytes: Option<i64>,
    error: Option<&str>,
    now: i64,
) -> AppResult<bool> {
    let status = if error.is_some() { "failed" } else { "ready" };
    Ok(conn.prepare_cached("UPDATE exports SET status = ?2, file = ?3, bytes = ?4, error = ?5, finished_at = ?6 WHERE id = ?1 AND status = 'pending'")?
            .execute(params![id, status, file, bytes, error, now],
    )? == 1)
}

/// Exports whose link has expired (their files are to be deleted).
pub fn expired(conn: &Connection, now: i64) -> AppResult<Vec<Export>> {
    let sql = format!("SELECT {COLUMNS} FROM exports WHERE expires_at <= ?1");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([now], export)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn delete(conn: &Connection, id: i64) -> AppResult<()> {
    conn.prepare_cached("DELETE FROM exports WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}
