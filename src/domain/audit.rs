//! The audit log: who did what to whom, why, and what changed. Every admin
//! action (CLI or web) and every automatic risk decision goes through
//! `record`; rows are never changed or deleted by the application.

use crate::domain::Connection;
use serde_json::Value;

use crate::domain::db;
use crate::error::AppResult;

/// One audit entry.
#[derive(Debug, Clone, Default)]
pub struct Entry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub reason: &'a str,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub ip: Option<&'a str>,
}

/// The actor name of an admin at the command line (as written in the
/// ledger and the audit log): the user behind sudo, else the login name.
pub fn cli_actor() -> String {
    let who = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("admin:cli:{who}")
}

/// Appends an entry. Call it inside the transaction that made the change
/// when there is one, so the change and its record commit together.
pub fn record(conn: &Connection, e: &Entry<'_>) -> AppResult<()> {
    db::audit::insert(
        conn,
        super::now(),
        e.actor,
        e.action,
        e.target,
        e.reason,
        e.before.as_ref().map(Value::to_string).as_deref(),
        e.after.as_ref().map(Value::to_string).as_deref(),
        e.ip,
    )
}

/// Appends an entry in its own write transaction.
pub fn record_now(conn: &mut Connection, e: &Entry<'_>) -> AppResult<()> {
    db::write(conn, |tx| record(tx, e))
}

pub fn recent(conn: &Connection, limit: u32) -> AppResult<Vec<db::audit::AuditRow>> {
    db::audit::recent(conn, limit.clamp(1, 100_000))
}

/// The account's e-mail, as audit rows and admin listings name it ("" if
/// the account is gone).
pub fn email_of(conn: &Connection, user: crate::model::UserId) -> AppResult<String> {
    Ok(db::users::by_id(conn, user)?
        .map(|u| u.email)
        .unwrap_or_default())
}
