//! SQL for privacy requests.

use super::sql::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::error::AppResult;
use crate::model::UserId;

#[derive(Debug, Clone, Serialize)]
pub struct PrivacyRequest {
    pub id: i64,
    pub user_id: i64,
    pub email: String,
    pub kind: String,
    pub details: String,
    pub status: String,
    pub decision: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub created_at: i64,
}

const SELECT: &str = "SELECT r.id, r.user_id, u.email, r.kind, r.details, r.status, r.decision, r.decided_by, r.decided_at, r.created_at FROM privacy_requests r JOIN users u ON u.id = r.user_id";

fn request(r: &Row<'_>) -> super::sql::Result<PrivacyRequest> {
    Ok(PrivacyRequest {
        id: r.get(0)?,
        user_id: r.get(1)?,
        email: r.get(2)?,
        kind: r.get(3)?,
        details: r.get(4)?,
        status: r.get(5)?,
        decision: r.get(6)?,
        decided_by: r.get(7)?,
        decided_at: r.get(8)?,
        created_at: r.get(9)?,
    })
}

pub fn insert(
    conn: &Connection,
    user: UserId,
    kind: &str,
    details: &str,
    now: i64,
) -> AppResult<i64> {
    conn.prepare_cached(
        "INSERT INTO privacy_requests (user_id, kind, details, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![user, kind, details, now])?;
    Ok(conn.last_insert_rowid()?)
}

pub fn pending_count(conn: &Connection, user: UserId) -> AppResult<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM privacy_requests WHERE user_id = ?1 AND status = 'pending'",
        )?
        .query_row([user], |r| r.get(0))?)
}

pub fn for_user(conn: &Connection, user: UserId) -> AppResult<Vec<PrivacyRequest>> {
    let sql = format!("{SELECT} WHERE r.user_id = ?1 ORDER BY r.id DESC");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([user], request)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn list(conn: &Connection, pending_only: bool) -> AppResult<Vec<PrivacyRequest>> {
    let sql = format!("{SELECT} WHERE (?1 = 0 OR r.status = 'pending') ORDER BY r.id DESC");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([pending_only as i64], request)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn by_id(conn: &Connection, id: i64) -> AppResult<Option<PrivacyRequest>> {
    let sql = format!("{SELECT} WHERE r.id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], request)
        .optional()?)
}

/// Records the answer; false if the request was already answered.
pub fn decide(
    conn: &Connection,
    id: i64,
    status: &str,
    decision: &str,
    by: &str,
    now: i64,
) -> AppResult<bool> {
    Ok(conn.prepare_cached("UPDATE privacy_requests SET status = ?2, decision = ?3, decided_by = ?4, decided_at = ?5 WHERE id = ?1 AND status = 'pending'")?
            .execute(params![id, status, decision, by, now],
    )? == 1)
}
