//! SQL for limit requests.

use super::sql::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::error::AppResult;
use crate::model::UserId;

#[derive(Debug, Clone, Serialize)]
pub struct LimitRequest {
    pub id: i64,
    #[serde(skip)]
    pub user_id: UserId,
    #[serde(skip)]
    pub key_id: i64,
    pub key_prefix: String,
    pub email: String,
    pub current: (u32, u32, u32),
    pub rpm: Option<u32>,
    pub concurrency: Option<u32>,
    pub daily_cap: Option<u32>,
    pub reason: String,
    pub status: String,
    pub decision: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub created_at: i64,
}

const SELECT: &str = "SELECT r.id, r.user_id, r.key_id, k.prefix, u.email, k.rpm, k.concurrency, k.daily_cap,
            r.rpm, r.concurrency, r.daily_cap, r.reason, r.status, r.decision, r.decided_by, r.decided_at, r.created_at
     FROM limit_requests r JOIN api_keys k ON k.id = r.key_id JOIN users u ON u.id = r.user_id";

fn from_row(r: &Row<'_>) -> super::sql::Result<LimitRequest> {
    Ok(LimitRequest {
        id: r.get(0)?,
        user_id: r.get(1)?,
        key_id: r.get(2)?,
        key_prefix: r.get(3)?,
        email: r.get(4)?,
        current: (r.get(5)?, r.get(6)?, r.get(7)?),
        rpm: r.get(8)?,
        concurrency: r.get(9)?,
        daily_cap: r.get(10)?,
        reason: r.get(11)?,
        status: r.get(12)?,
        decision: r.get(13)?,
        decided_by: r.get(14)?,
        decided_at: r.get(15)?,
        created_at: r.get(16)?,
    })
}

#[allow(clippy::too_many_arguments)]
pub fn insert(
    conn: &Connection,
    user: UserId,
    key: i64,
    rpm: Option<u32>,
    concurrency: Option<u32>,
    daily_cap: Option<u32>,
    reason: &str,
    now: i64,
) -> AppResult<i64> {
    conn.prepare_cached("INSERT INTO limit_requests (user_id, key_id, rpm, concurrency, daily_cap, reason, status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7)")?
            .execute(params![user, key, rpm, concurrency, daily_cap, reason, now],
    )?;
    Ok(conn.last_insert_rowid()?)
}

pub fn by_id(conn: &Connection, id: i64) -> AppResult<Option<LimitRequest>> {
    Ok(conn
        .query_row(&format!("{SELECT} WHERE r.id = ?1"), [id], from_row)
        .optional()?)
}

pub fn list(
    conn: &Connection,
    pending_only: bool,
    user: Option<UserId>,
) -> AppResult<Vec<LimitRequest>> {
    let sql = format!(
        "{SELECT} WHERE (?1 = 0 OR r.status = 'pending') AND (CAST(?2 AS BIGINT) IS NULL OR r.user_id = ?2) ORDER BY r.id DESC"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![pending_only, user], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn pending_for_key(conn: &Connection, key: i64) -> AppResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM limit_requests WHERE key_id = ?1 AND status = 'pending'",
        )?
        .query_row([key], |r| r.get::<_, i64>(0))?
        > 0)
}

pub fn decide(
    conn: &Connection,
    id: i64,
    status: &str,
    decision: &str,
    by: &str,
    now: i64,
) -> AppResult<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE limit_requests SET status = ?2, decision = ?3, decided_by = ?4, decided_at = ?5
         WHERE id = ?1 AND status = 'pending'",
        )?
        .execute(params![id, status, decision, by, now])?
        == 1)
}
