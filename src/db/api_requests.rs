//! SQL for the API request log.

use super::sql::{params, Connection, Row};
use serde::Serialize;

use crate::error::AppResult;
use crate::model::UserId;

#[derive(Debug, Clone, Serialize)]
pub struct RequestRow {
    pub id: i64,
    #[serde(skip)]
    pub user_id: UserId,
    pub key_prefix: Option<String>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub latency_ms: i64,
    pub ip: Option<String>,
    pub summary: String,
    pub task_id: Option<String>,
    pub error_code: Option<String>,
    pub created_at: i64,
}

const COLUMNS: &str =
    "id, user_id, key_prefix, method, path, status, latency_ms, ip, summary, task_id, error_code, created_at";

fn from_row(r: &Row<'_>) -> super::sql::Result<RequestRow> {
    Ok(RequestRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        key_prefix: r.get(2)?,
        method: r.get(3)?,
        path: r.get(4)?,
        status: r.get(5)?,
        latency_ms: r.get(6)?,
        ip: r.get(7)?,
        summary: r.get(8)?,
        task_id: r.get(9)?,
        error_code: r.get(10)?,
        created_at: r.get(11)?,
    })
}

pub fn insert(conn: &Connection, e: &RequestRow) -> AppResult<()> {
    conn.prepare_cached(
        "INSERT INTO api_requests (user_id, key_prefix, method, path, status, latency_ms, ip, summary,
                                   task_id, error_code, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        e.user_id,
        e.key_prefix,
        e.method,
        e.path,
        e.status,
        e.latency_ms,
        e.ip,
        e.summary,
        e.task_id,
        e.error_code,
        e.created_at
    ])?;
    Ok(())
}

/// Whose calls the log shows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Source {
    /// Calls made with any of the user's API keys (the default view: the
    /// studio's own calls would drown them).
    #[default]
    Keys,
    /// Only the studio's own calls (made with a session, no key).
    Studio,
    /// Everything.
    All,
    /// One key's calls, by its prefix.
    Key(String),
}

/// Filters for the developer center's log view.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub source: Source,
    /// "ok" (status < 400) or "error".
    pub outcome: Option<String>,
    /// Rows with a smaller id (the next page).
    pub before: Option<i64>,
    pub limit: u32,
}

pub fn list(conn: &Connection, user: UserId, f: &Filter) -> AppResult<Vec<RequestRow>> {
    let mut sql = format!("SELECT {COLUMNS} FROM api_requests WHERE user_id = ?1");
    let key = match &f.source {
        Source::Keys => {
            sql.push_str(" AND key_prefix IS NOT NULL AND CAST(?2 AS TEXT) IS NULL");
            None
        }
        Source::Studio => {
            sql.push_str(" AND key_prefix IS NULL AND CAST(?2 AS TEXT) IS NULL");
            None
        }
        Source::All => {
            sql.push_str(" AND CAST(?2 AS TEXT) IS NULL");
            None
        }
        Source::Key(prefix) => {
            sql.push_str(" AND key_prefix = ?2");
            Some(prefix.as_str())
        }
    };
    match f.outcome.as_deref() {
        Some("ok") => sql.push_str(" AND status < 400"),
        Some("error") => sql.push_str(" AND status >= 400"),
        _ => {}
    }
    sql.push_str(" AND (CAST(?3 AS BIGINT) IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(
        params![user, key, f.before, f.limit.clamp(1, 10_000)],
        from_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether the user has any logged call made by the studio (no key).
pub fn has_studio_calls(conn: &Connection, user: UserId) -> AppResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM api_requests WHERE user_id = ?1 AND key_prefix IS NULL)",
        )?
        .query_row([user], |r| r.get(0))?)
}

pub fn sweep(conn: &Connection, before: i64) -> AppResult<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM api_requests WHERE created_at < ?1")?
        .execute([before])?)
}
