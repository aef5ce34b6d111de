//! SQL for the `sessions` table. Tokens are stored only as SHA-256 digests.

use super::sql::{params, Connection, OptionalExtension, Row};

use crate::error::AppResult;
use crate::model::{Session, SessionId, UserId};

const COLUMNS: &str =
    "id, user_id, token_hash, ip, user_agent, created_at, last_seen_at, expires_at";

fn from_row(r: &Row<'_>) -> super::sql::Result<Session> {
    Ok(Session {
        id: r.get(0)?,
        user_id: r.get(1)?,
        token_hash: r.get(2)?,
        ip: r.get(3)?,
        user_agent: r.get(4)?,
        created_at: r.get(5)?,
        last_seen_at: r.get(6)?,
        expires_at: r.get(7)?,
    })
}

pub fn insert(
    conn: &Connection,
    user: UserId,
    token_hash: &str,
    ip: Option<&str>,
    user_agent: Option<&str>,
    now: i64,
    expires_at: i64,
) -> AppResult<SessionId> {
    conn.prepare_cached("INSERT INTO sessions (user_id, token_hash, ip, user_agent, created_at, last_seen_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)")?
            .execute(params![user, token_hash, ip, user_agent, now, expires_at],
    )?;
    Ok(SessionId(conn.last_insert_rowid()?))
}

pub fn by_token_hash(conn: &Connection, hash: &str) -> AppResult<Option<Session>> {
    let sql = format!("SELECT {COLUMNS} FROM sessions WHERE token_hash = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([hash], from_row)
        .optional()?)
}

pub fn touch(conn: &Connection, id: SessionId, now: i64, ip: Option<&str>) -> AppResult<()> {
    conn.prepare_cached(
        "UPDATE sessions SET last_seen_at = ?2, ip = COALESCE(?3, ip) WHERE id = ?1",
    )?
    .execute(params![id, now, ip])?;
    Ok(())
}

pub fn list_for_user(conn: &Connection, user: UserId) -> AppResult<Vec<Session>> {
    let sql =
        format!("SELECT {COLUMNS} FROM sessions WHERE user_id = ?1 ORDER BY last_seen_at DESC");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([user], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn delete(conn: &Connection, id: SessionId) -> AppResult<()> {
    conn.prepare_cached("DELETE FROM sessions WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Deletes one of the user's sessions; false if it was not theirs or gone.
pub fn delete_for_user(conn: &Connection, user: UserId, id: SessionId) -> AppResult<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM sessions WHERE id = ?1 AND user_id = ?2")?
        .execute(params![id, user])?
        == 1)
}

/// Deletes all of the user's sessions except `keep`; returns how many ended.
pub fn delete_all_for_user(
    conn: &Connection,
    user: UserId,
    keep: Option<SessionId>,
) -> AppResult<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM sessions WHERE user_id = ?1 AND id IS DISTINCT FROM ?2")?
        .execute(params![user, keep])?)
}

pub fn delete_expired(conn: &Connection, now: i64, idle_secs: i64) -> AppResult<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1 OR last_seen_at <= ?1 - ?2")?
        .execute(params![now, idle_secs])?)
}
