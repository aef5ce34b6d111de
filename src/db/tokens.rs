//! SQL for single-use e-mail links (`auth_tokens`).

use super::sql::{params, Connection, OptionalExtension};

use crate::error::AppResult;
use crate::model::{TokenPurpose, UserId};

pub fn insert(
    conn: &Connection,
    user: UserId,
    purpose: TokenPurpose,
    token_hash: &str,
    now: i64,
    expires_at: i64,
) -> AppResult<()> {
    conn.prepare_cached(
        "INSERT INTO auth_tokens (user_id, purpose, token_hash, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![user, purpose.as_str(), token_hash, now, expires_at])?;
    Ok(())
}

/// Marks the token used if it is unused and unexpired (compare-and-swap, so
/// two concurrent uses cannot both succeed); returns its user.
pub fn consume(
    conn: &Connection,
    purpose: TokenPurpose,
    token_hash: &str,
    now: i64,
) -> AppResult<Option<UserId>> {
    Ok(conn
        .query_row(
            "UPDATE auth_tokens SET used_at = ?3
             WHERE token_hash = ?1 AND purpose = ?2 AND used_at IS NULL AND expires_at > ?3
             RETURNING user_id",
            params![token_hash, purpose.as_str(), now],
            |r| r.get(0),
        )
        .optional()?)
}

/// Whether the token exists, is unused and unexpired (without using it).
pub fn peek(
    conn: &Connection,
    purpose: TokenPurpose,
    token_hash: &str,
    now: i64,
) -> AppResult<Option<UserId>> {
    Ok(conn
        .query_row(
            "SELECT user_id FROM auth_tokens
             WHERE token_hash = ?1 AND purpose = ?2 AND used_at IS NULL AND expires_at > ?3",
            params![token_hash, purpose.as_str(), now],
            |r| r.get(0),
        )
        .optional()?)
}

/// Voids every outstanding token of this purpose for the user (a newer link
/// replaces older ones; a password change voids reset links).
pub fn void_all(conn: &Connection, user: UserId, purpose: TokenPurpose, now: i64) -> AppResult<()> {
    conn.prepare_cached("UPDATE auth_tokens SET used_at = ?3 WHERE user_id = ?1 AND purpose = ?2 AND used_at IS NULL")?
            .execute(params![user, purpose.as_str(), now],
    )?;
    Ok(())
}

/// Voids every outstanding link of the user, whatever its purpose.
pub fn void_every(conn: &Connection, user: UserId, now: i64) -> AppResult<usize> {
    Ok(conn
        .prepare_cached(
            "UPDATE auth_tokens SET used_at = ?2 WHERE user_id = ?1 AND used_at IS NULL",
        )?
        .execute(params![user, now])?)
}

pub fn delete_stale(conn: &Connection, before: i64) -> AppResult<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM auth_tokens WHERE expires_at < ?1 OR used_at < ?1")?
        .execute([before])?)
}
