//! Instance metadata (key/value), e.g. the secret that signs CSRF tokens.

use super::sql::{Connection, OptionalExtension};

use crate::error::AppResult;

pub fn get(conn: &Connection, key: &str) -> AppResult<Option<String>> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// Stores `value` unless the key already has one; returns the stored value.
pub fn get_or_insert(conn: &Connection, key: &str, value: &str) -> AppResult<String> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
    )?
    .execute([key, value])?;
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))?)
}

/// Sets `key` to `value`, replacing what was there.
pub fn set(conn: &Connection, key: &str, value: &str) -> AppResult<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute([key, value])?;
    Ok(())
}
