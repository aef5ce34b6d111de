//! SQL for appeals against restrictions (one per restriction).

use super::sql::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::error::AppResult;
use crate::model::UserId;

#[derive(Debug, Clone, Serialize)]
pub struct Appeal {
    pub id: i64,
    pub ban_id: i64,
    pub user_id: i64,
    pub body: String,
    pub status: String,
    pub created_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
}

const COLUMNS: &str =
    "id, ban_id, user_id, body, status, created_at, decided_at, decided_by, decision_reason";

fn appeal(r: &Row<'_>) -> super::sql::Result<Appeal> {
    Ok(Appeal {
        id: r.get(0)?,
        ban_id: r.get(1)?,
        user_id: r.get(2)?,
        body: r.get(3)?,
        status: r.get(4)?,
        created_at: r.get(5)?,
        decided_at: r.get(6)?,
        decided_by: r.get(7)?,
        decision_reason: r.get(8)?,
    })
}

/// Inserts a pending appeal; None when the restriction already has one.
pub fn insert(
    conn: &Connection,
    ban: i64,
    user: UserId,
    body: &str,
    now: i64,
) -> AppResult<Option<i64>> {
    let n = conn
        .prepare_cached(
            "INSERT INTO appeals (ban_id, user_id, body, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (ban_id) DO NOTHING",
        )?
        .execute(params![ban, user, body, now])?;
    Ok(if n == 1 {
        Some(conn.last_insert_rowid()?)
    } else {
        None
    })
}

pub fn by_id(conn: &Connection, id: i64) -> AppResult<Option<Appeal>> {
    let sql = format!("SELECT {COLUMNS} FROM appeals WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], appeal)
        .optional()?)
}

pub fn for_user(conn: &Connection, user: UserId) -> AppResult<Vec<Appeal>> {
    let sql = format!("SELECT {COLUMNS} FROM appeals WHERE user_id = ?1 ORDER BY id DESC");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([user], appeal)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Appeals with the account's e-mail, newest first (only pending ones with
/// `pending`).
pub fn list(conn: &Connection, pending: bool, limit: u32) -> AppResult<Vec<(Appeal, String)>> {
    let cols = COLUMNS
        .split(", ")
        .map(|c| format!("a.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {cols}, u.email FROM appeals a JOIN users u ON u.id = a.user_id
         WHERE ?1 = 0 OR a.status = 'pending' ORDER BY a.id DESC LIMIT ?2"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![pending, limit], |r| Ok((appeal(r)?, r.get(9)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many appeals the user filed after `since`, and when the oldest of
/// them was.
pub fn since(conn: &Connection, user: UserId, since: i64) -> AppResult<(i64, Option<i64>)> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*), min(created_at) FROM appeals WHERE user_id = ?1 AND created_at > ?2",
        )?
        .query_row(params![user, since], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

pub fn pending_count(conn: &Connection) -> AppResult<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM appeals WHERE status = 'pending'")?
        .query_row((), |r| r.get(0))?)
}

/// Records the decision; false when the appeal was no longer pending.
pub fn decide(
    conn: &Connection,
    id: i64,
    status: &str,
    by: &str,
    reason: &str,
    now: i64,
) -> AppResult<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE appeals SET status = ?2, decided_at = ?3, decided_by = ?4, decision_reason = ?5
         WHERE id = ?1 AND status = 'pending'",
        )?
        .execute(params![id, status, now, by, reason])?
        == 1)
}
