//! SQL for `email_changes` (pending changes of an account's address).

use super::sql::{params, Connection, OptionalExtension};

use crate::error::AppResult;
use crate::model::UserId;

/// A change waiting for its link.
pub struct Pending {
    pub id: i64,
    pub user: UserId,
    pub new_email: String,
    /// The session that asked for it (SHA-256 of its token), if known.
    pub session_hash: Option<String>,
}

pub fn insert(
    conn: &Connection,
    user: UserId,
    new_email: &str,
    token_hash: &str,
    session_hash: &str,
    now: i64,
    expires_at: i64,
) -> AppResult<()> {
    conn.prepare_cached(
        "INSERT INTO email_changes (user_id, new_email, token_hash, session_hash, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![user, new_email, token_hash, session_hash, now, expires_at])?;
    Ok(())
}

/// The unused, unexpired change behind a link.
pub fn pending(conn: &Connection, token_hash: &str, now: i64) -> AppResult<Option<Pending>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, user_id, new_email, session_hash FROM email_changes
             WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
        )?
        .query_row(params![token_hash, now], |r| {
            Ok(Pending {
                id: r.get(0)?,
                user: r.get(1)?,
                new_email: r.get(2)?,
                session_hash: r.get(3)?,
            })
        })
        .optional()?)
}

/// Marks one change used if it still is unused (compare-and-swap).
pub fn take(conn: &Connection, id: i64, now: i64) -> AppResult<bool> {
    Ok(conn
        .prepare_cached("UPDATE email_changes SET used_at = ?2 WHERE id = ?1 AND used_at IS NULL")?
        .execute(params![id, now])?
        == 1)
}

/// Voids every pending change of the account.
pub fn void_all(conn: &Connection, user: UserId, now: i64) -> AppResult<usize> {
    Ok(conn
        .prepare_cached(
            "UPDATE email_changes SET used_at = ?2 WHERE user_id = ?1 AND used_at IS NULL",
        )?
        .execute(params![user, now])?)
}
