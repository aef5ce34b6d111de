//! SQL for the append-only audit log.

use super::sql::{params, Connection};
use serde::Serialize;

use crate::error::AppResult;

#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub created_at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub reason: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub ip: Option<String>,
}

#[allow(clippy::too_many_arguments)]
pub fn insert(
    conn: &Connection,
    now: i64,
    actor: &str,
    action: &str,
    target: &str,
    reason: &str,
    before: Option<&str>,
    after: Option<&str>,
    ip: Option<&str>,
) -> AppResult<()> {
    conn.prepare_cached(
        "INSERT INTO audit_log (created_at, actor, action, target, reason, before, after, ip)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        now, actor, action, target, reason, before, after, ip
    ])?;
    Ok(())
}

/// The newest `limit` rows, newest first.
pub fn recent(conn: &Connection, limit: u32) -> AppResult<Vec<AuditRow>> {
    let mut stmt = conn.prepare(
        "SELECT id, created_at, actor, action, target, reason, before, after, ip
         FROM audit_log ORDER BY id DESC LIMIT ?1",
    )?;
    let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    let rows = stmt.query_map([limit], |r| {
        Ok(AuditRow {
            id: r.get(0)?,
            created_at: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            reason: r.get(5)?,
            before: parse(r.get(6)?),
            after: parse(r.get(7)?),
            ip: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
