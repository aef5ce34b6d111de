//! SQL for API keys. Only the prefix and the SHA-256 of the whole key are
//! stored.

use super::sql::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::error::AppResult;
use crate::model::UserId;

#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    pub id: i64,
    #[serde(skip)]
    pub user_id: UserId,
    pub prefix: String,
    #[serde(skip)]
    pub key_hash: String,
    pub name: String,
    pub permissions: Vec<String>,
    /// None: every model.
    pub models: Option<Vec<String>>,
    pub rpm: u32,
    pub concurrency: u32,
    pub daily_cap: u32,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub rotated_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
}

const COLUMNS: &str =
    "id, user_id, prefix, key_hash, name, permissions, models, rpm, concurrency, daily_cap, \
     expires_at, created_at, rotated_at, last_used_at, revoked_at, revoked_by";

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn from_row(r: &Row<'_>) -> super::sql::Result<ApiKey> {
    let perms: String = r.get(5)?;
    let models: Option<String> = r.get(6)?;
    Ok(ApiKey {
        id: r.get(0)?,
        user_id: r.get(1)?,
        prefix: r.get(2)?,
        key_hash: r.get(3)?,
        name: r.get(4)?,
        permissions: words(&perms),
        models: models.map(|m| words(&m)),
        rpm: r.get(7)?,
        concurrency: r.get(8)?,
        daily_cap: r.get(9)?,
        expires_at: r.get(10)?,
        created_at: r.get(11)?,
        rotated_at: r.get(12)?,
        last_used_at: r.get(13)?,
        revoked_at: r.get(14)?,
        revoked_by: r.get(15)?,
    })
}

pub struct NewKey<'a> {
    pub user_id: UserId,
    pub prefix: &'a str,
    pub key_hash: &'a str,
    pub name: &'a str,
    pub permissions: &'a [String],
    pub models: Option<&'a [String]>,
    pub rpm: u32,
    pub concurrency: u32,
    pub daily_cap: u32,
    pub expires_at: Option<i64>,
    pub now: i64,
}

pub fn insert(conn: &Connection, k: &NewKey<'_>) -> AppResult<i64> {
    conn.prepare_cached("INSERT INTO api_keys (user_id, prefix, key_hash, name, permissions, models, rpm, concurrency,
                               daily_cap, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)")?
            .execute(params![
            k.user_id,
            k.prefix,
            k.key_hash,
            k.name,
            k.permissions.join(" "),
            k.models.map(|m| m.join(" ")),
            k.rpm,
            k.concurrency,
            k.daily_cap,
            k.expires_at,
            k.now
        ],
    )?;
    Ok(conn.last_insert_rowid()?)
}

pub fn by_id(conn: &Connection, id: i64) -> AppResult<Option<ApiKey>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

pub fn by_prefix(conn: &Connection, prefix: &str) -> AppResult<Option<ApiKey>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE prefix = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([prefix], from_row)
        .optional()?)
}

pub fn for_user(conn: &Connection, user: UserId) -> AppResult<Vec<ApiKey>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE user_id = ?1 ORDER BY id DESC");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([user], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every key with its owner's e-mail, newest first.
pub fn all(conn: &Connection) -> AppResult<Vec<(ApiKey, String)>> {
    let cols: Vec<String> = COLUMNS.split(", ").map(|c| format!("k.{c}")).collect();
    let sql = format!(
        "SELECT {}, u.email FROM api_keys k JOIN users u ON u.id = k.user_id ORDER BY k.id DESC",
        cols.join(", ")
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map((), |r| Ok((from_row(r)?, r.get(16)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes a live key; false if it was already revoked.
pub fn revoke(conn: &Connection, id: i64, by: &str, now: i64) -> AppResult<bool> {
    Ok(conn.prepare_cached("UPDATE api_keys SET revoked_at = ?2, revoked_by = ?3 WHERE id = ?1 AND revoked_at IS NULL")?
            .execute(params![id, now, by],
    )? == 1)
}

/// Gives a live key a new prefix and secret; the old one stops working.
pub fn rotate(
    conn: &Connection,
    id: i64,
    prefix: &str,
    key_hash: &str,
    now: i64,
) -> AppResult<bool> {
    Ok(conn.prepare_cached("UPDATE api_keys SET prefix = ?2, key_hash = ?3, rotated_at = ?4 WHERE id = ?1 AND revoked_at IS NULL")?
            .execute(params![id, prefix, key_hash, now],
    )? == 1)
}

pub fn touch(conn: &Connection, id: i64, now: i64) -> AppResult<()> {
    conn.prepare_cached("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

pub fn set_limits(
    conn: &Connection,
    id: i64,
    rpm: u32,
    concurrency: u32,
    daily_cap: u32,
) -> AppResult<()> {
    conn.prepare_cached(
        "UPDATE api_keys SET rpm = ?2, concurrency = ?3, daily_cap = ?4 WHERE id = ?1",
    )?
    .execute(params![id, rpm, concurrency, daily_cap])?;
    Ok(())
}

/// Locks the key's usage row until the transaction ends (on PostgreSQL;
/// SQLite's writer holds the file), so the limits read next stay true
/// until the task is inserted.
pub fn lock_usage(conn: &Connection, key: i64) -> AppResult<()> {
    let lock = conn.for_update();
    if !lock.is_empty() {
        conn.prepare_cached(&format!("SELECT 1 FROM key_usage WHERE key_id = ?1{lock}"))?
            .query_row([key], |_| Ok(()))
            .optional()?;
    }
    Ok(())
}

/// Tasks the key created on the UTC day starting at `day` (unix seconds).
pub fn tasks_since(conn: &Connection, key: i64, day: i64) -> AppResult<u32> {
    Ok(conn
        .prepare_cached(
            "SELECT CASE WHEN day = ?2 THEN day_tasks ELSE 0 END FROM key_usage WHERE key_id = ?1",
        )?
        .query_row(params![key, day], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// The key's tasks that are queued or running.
pub fn active_tasks(conn: &Connection, key: i64) -> AppResult<u32> {
    Ok(conn
        .prepare_cached("SELECT active FROM key_usage WHERE key_id = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}
