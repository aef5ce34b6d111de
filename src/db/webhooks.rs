//! SQL for webhook secrets, the delivery outbox and its attempts.

use super::sql::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::error::AppResult;
use crate::model::{TaskId, UserId};

pub fn secret(conn: &Connection, user: UserId) -> AppResult<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT secret FROM webhook_secrets WHERE user_id = ?1")?
        .query_row([user], |r| r.get(0))
        .optional()?)
}

pub fn set_secret(conn: &Connection, user: UserId, secret: &str, now: i64) -> AppResult<()> {
    conn.prepare_cached("INSERT INTO webhook_secrets (user_id, secret, rotated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(user_id) DO UPDATE SET secret = excluded.secret, rotated_at = excluded.rotated_at")?
            .execute(params![user, secret, now],
    )?;
    Ok(())
}

/// Inserts the outbox row for a task's final state (once per task and event).
pub fn enqueue(
    conn: &Connection,
    public_id: &str,
    user: UserId,
    task: TaskId,
    event: &str,
    url: &str,
    now: i64,
) -> AppResult<()> {
    conn.prepare_cached(
        "INSERT INTO webhook_deliveries (public_id, user_id, task_id, event, url, state, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6)
         ON CONFLICT(task_id, event) DO NOTHING",
    )?
    .execute(params![public_id, user, task.0, event, url, now])?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub public_id: String,
    #[serde(skip)]
    pub user_id: UserId,
    #[serde(skip)]
    pub task_id: Option<TaskId>,
    pub event: String,
    pub url: String,
    #[serde(skip)]
    pub payload: Option<String>,
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

const COLUMNS: &str =
    "id, public_id, user_id, task_id, event, url, payload, state, attempts, next_attempt_at, \
     last_status, last_error, created_at, finished_at";

fn from_row(r: &Row<'_>) -> super::sql::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        public_id: r.get(1)?,
        user_id: r.get(2)?,
        task_id: r.get::<_, Option<i64>>(3)?.map(TaskId),
        event: r.get(4)?,
        url: r.get(5)?,
        payload: r.get(6)?,
        state: r.get(7)?,
        attempts: r.get(8)?,
        next_attempt_at: r.get(9)?,
        last_status: r.get(10)?,
        last_error: r.get(11)?,
        created_at: r.get(12)?,
        finished_at: r.get(13)?,
    })
}

pub fn by_id(conn: &Connection, id: i64) -> AppResult<Option<Delivery>> {
    let sql = format!("SELECT {COLUMNS} FROM webhook_deliveries WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

pub fn by_public_id(
    conn: &Connection,
    user: UserId,
    public_id: &str,
) -> AppResult<Option<Delivery>> {
    let sql =
        format!("SELECT {COLUMNS} FROM webhook_deliveries WHERE public_id = ?1 AND user_id = ?2");
    Ok(conn
        .query_row(&sql, params![public_id, user], from_row)
        .optional()?)
}

pub fn for_user(conn: &Connection, user: UserId, limit: u32) -> AppResult<Vec<Delivery>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM webhook_deliveries WHERE user_id = ?1 ORDER BY id DESC LIMIT ?2"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![user, limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Takes up to `limit` due deliveries, pushing their next attempt to
/// `lease_until` so another pass does not send them twice meanwhile.
pub fn claim_due(
    conn: &Connection,
    now: i64,
    lease_until: i64,
    limit: u32,
) -> AppResult<Vec<Delivery>> {
    let sql = format!(
        "UPDATE webhook_deliveries SET next_attempt_at = ?2
         WHERE id IN (SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= ?1
                      ORDER BY next_attempt_at LIMIT ?3)
         RETURNING {COLUMNS}"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![now, lease_until, limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn set_payload(conn: &Connection, id: i64, payload: &str) -> AppResult<()> {
    conn.prepare_cached(
        "UPDATE webhook_deliveries SET payload = ?2 WHERE id = ?1 AND payload IS NULL",
    )?
    .execute(params![id, payload])?;
    Ok(())
}

pub struct Attempt<'a> {
    pub status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<&'a str>,
    pub response: Option<&'a str>,
}

pub fn record_attempt(
    conn: &Connection,
    delivery: i64,
    a: &Attempt<'_>,
    now: i64,
) -> AppResult<()> {
    conn.prepare_cached("INSERT INTO webhook_attempts (delivery_id, attempted_at, status, latency_ms, error, response)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
            .execute(params![delivery, now, a.status, a.latency_ms, a.error, a.response],
    )?;
    Ok(())
}

/// After an attempt: the new state, when to try next, the last outcome.
#[allow(clippy::too_many_arguments)]
pub fn finish_attempt(
    conn: &Connection,
    id: i64,
    state: &str,
    next_attempt_at: i64,
    status: Option<u16>,
    error: Option<&str>,
    now: i64,
) -> AppResult<()> {
    conn.prepare_cached("UPDATE webhook_deliveries
         SET state = ?2, next_attempt_at = ?3, last_status = ?4, last_error = ?5, attempts = attempts + 1,
             finished_at = CASE WHEN ?2 = 'pending' THEN NULL ELSE ?6 END
         WHERE id = ?1")?
            .execute(params![id, state, next_attempt_at, status, error, now],
    )?;
    Ok(())
}

/// Sends a finished delivery again (same webhook-id and body).
pub fn redeliver(conn: &Connection, id: i64, now: i64) -> AppResult<bool> {
    Ok(conn.prepare_cached("UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = ?2, attempts = 0, finished_at = NULL
         WHERE id = ?1 AND state <> 'pending'")?
            .execute(params![id, now],
    )? == 1)
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptRow {
    pub attempted_at: i64,
    pub status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response: Option<String>,
}

pub fn attempts(conn: &Connection, delivery: i64) -> AppResult<Vec<AttemptRow>> {
    let mut stmt = conn.prepare(
        "SELECT attempted_at, status, latency_ms, error, response FROM webhook_attempts
         WHERE delivery_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([delivery], |r| {
        Ok(AttemptRow {
            attempted_at: r.get(0)?,
            status: r.get(1)?,
            latency_ms: r.get(2)?,
            error: r.get(3)?,
            response: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes finished deliveries (and their attempts) created before `before`.
pub fn sweep(conn: &Connection, before: i64) -> AppResult<usize> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND created_at < ?1",
        )?
        .execute([before])?)
}
