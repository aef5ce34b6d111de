//! SQL for users' messages (the inbox).

use super::sql::{params, Connection, Row};
use serde::Serialize;

use crate::error::AppResult;
use crate::model::UserId;

pub fn add(
    conn: &Connection,
    user: UserId,
    kind: &str,
    title: &str,
    body: &str,
    now: i64,
) -> AppResult<()> {
    conn.prepare_cached(
        "INSERT INTO messages (user_id, kind, title, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![user, kind, title, body, now])?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: i64,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

fn message(r: &Row<'_>) -> super::sql::Result<Message> {
    Ok(Message {
        id: r.get(0)?,
        kind: r.get(1)?,
        title: r.get(2)?,
        body: r.get(3)?,
        created_at: r.get(4)?,
        read_at: r.get(5)?,
    })
}

pub fn for_user(conn: &Connection, user: UserId, limit: u32) -> AppResult<Vec<Message>> {
    let mut stmt = conn.prepare(
        "SELECT id, kind, title, body, created_at, read_at FROM messages WHERE user_id = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![user, limit], message)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn unread(conn: &Connection, user: UserId) -> AppResult<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM messages WHERE user_id = ?1 AND read_at IS NULL")?
        .query_row([user], |r| r.get(0))?)
}

pub fn mark_read(conn: &Connection, user: UserId, id: i64, now: i64) -> AppResult<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE messages SET read_at = ?3 WHERE id = ?1 AND user_id = ?2 AND read_at IS NULL",
        )?
        .execute(params![id, user, now])?
        == 1)
}

pub fn mark_all_read(conn: &Connection, user: UserId, now: i64) -> AppResult<usize> {
    Ok(conn
        .prepare_cached("UPDATE messages SET read_at = ?2 WHERE user_id = ?1 AND read_at IS NULL")?
        .execute(params![user, now])?)
}

/// The same message to every account; returns how many got it.
pub fn add_to_all(
    conn: &Connection,
    kind: &str,
    title: &str,
    body: &str,
    now: i64,
) -> AppResult<usize> {
    Ok(conn.prepare_cached("INSERT INTO messages (user_id, kind, title, body, created_at) SELECT id, ?1, ?2, ?3, ?4 FROM users")?
            .execute(params![kind, title, body, now],
    )?)
}

/// Unread messages and the newest message id (0 when there is none), in
/// one pass over the user's messages.
pub fn summary(conn: &Connection, user: UserId) -> AppResult<(i64, i64)> {
    Ok(conn
        .prepare_cached(
            "SELECT coalesce(sum(CASE WHEN read_at IS NULL THEN 1 ELSE 0 END), 0), coalesce(max(id), 0) FROM messages WHERE user_id = ?1",
        )?
        .query_row([user], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// Messages newer than `after`, oldest first (the live stream's next batch).
pub fn after(conn: &Connection, user: UserId, after: i64, limit: u32) -> AppResult<Vec<Message>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, title, body, created_at, read_at FROM messages WHERE user_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![user, after, limit], message)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Unread messages created since `since`, newest first (toasts that have
/// not been dismissed yet).
pub fn fresh_unread(
    conn: &Connection,
    user: UserId,
    since: i64,
    limit: u32,
) -> AppResult<Vec<Message>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, title, body, created_at, read_at FROM messages WHERE user_id = ?1 AND read_at IS NULL AND created_at >= ?2 ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![user, since, limit], message)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether the user has an unread message of `kind` created since `since`.
pub fn unread_kind_since(
    conn: &Connection,
    user: UserId,
    kind: &str,
    since: i64,
) -> AppResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE user_id = ?1 AND kind = ?2 AND read_at IS NULL AND created_at >= ?3)",
        )?
        .query_row(params![user, kind, since], |r| r.get(0))?)
}
