//! SQL for risk control: bans, blocked generation attempts and the devices
//! an account has signed in from.

use super::sql::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::error::AppResult;
use crate::model::UserId;

#[derive(Debug, Clone, Serialize)]
pub struct Ban {
    pub id: i64,
    pub user_id: i64,
    pub scope: String,
    pub reason: String,
    pub source: String,
    pub actor: String,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub lifted_at: Option<i64>,
    pub lifted_by: Option<String>,
    pub lift_reason: Option<String>,
}

const BAN_COLUMNS: &str =
    "id, user_id, scope, reason, source, actor, starts_at, ends_at, lifted_at, lifted_by, lift_reason";

fn ban(r: &Row<'_>) -> super::sql::Result<Ban> {
    Ok(Ban {
        id: r.get(0)?,
        user_id: r.get(1)?,
        scope: r.get(2)?,
        reason: r.get(3)?,
        source: r.get(4)?,
        actor: r.get(5)?,
        starts_at: r.get(6)?,
        ends_at: r.get(7)?,
        lifted_at: r.get(8)?,
        lifted_by: r.get(9)?,
        lift_reason: r.get(10)?,
    })
}

pub struct NewBan<'a> {
    pub user: UserId,
    pub scope: &'a str,
    pub reason: &'a str,
    pub source: &'a str,
    pub actor: &'a str,
    pub now: i64,
    pub ends_at: Option<i64>,
}

pub fn insert_ban(conn: &Connection, b: &NewBan<'_>) -> AppResult<i64> {
    conn.prepare_cached("INSERT INTO bans (user_id, scope, reason, source, actor, starts_at, ends_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?
            .execute(params![b.user, b.scope, b.reason, b.source, b.actor, b.now, b.ends_at],
    )?;
    Ok(conn.last_insert_rowid()?)
}

/// The user's ban in force at `now` with the given scope, the latest first.
pub fn active(conn: &Connection, user: UserId, scope: &str, now: i64) -> AppResult<Option<Ban>> {
    let sql = format!(
        "SELECT {BAN_COLUMNS} FROM bans WHERE user_id = ?1 AND scope = ?2 AND lifted_at IS NULL \
         AND (ends_at IS NULL OR ends_at > ?3) ORDER BY ends_at IS NOT NULL, ends_at DESC LIMIT 1"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![user, scope, now], ban)
        .optional()?)
}

/// Every restriction of the user in force at `now`, the longest-lasting
/// first (permanent ones before timed ones).
pub fn active_all(conn: &Connection, user: UserId, now: i64) -> AppResult<Vec<Ban>> {
    let sql = format!(
        "SELECT {BAN_COLUMNS} FROM bans WHERE user_id = ?1 AND lifted_at IS NULL \
         AND (ends_at IS NULL OR ends_at > ?2) ORDER BY ends_at IS NOT NULL, ends_at DESC, id DESC"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![user, now], ban)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn by_id(conn: &Connection, id: i64) -> AppResult<Option<Ban>> {
    let sql = format!("SELECT {BAN_COLUMNS} FROM bans WHERE id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([id], ban).optional()?)
}

pub fn for_user(conn: &Connection, user: UserId) -> AppResult<Vec<Ban>> {
    let sql = format!("SELECT {BAN_COLUMNS} FROM bans WHERE user_id = ?1 ORDER BY id DESC");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([user], ban)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Bans of every account, newest first, with the account's e-mail.
pub fn list(
    conn: &Connection,
    active_at: Option<i64>,
    limit: u32,
) -> AppResult<Vec<(Ban, String)>> {
    let cols = BAN_COLUMNS
        .split(", ")
        .map(|c| format!("b.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {cols}, u.email FROM bans b JOIN users u ON u.id = b.user_id
         WHERE CAST(?1 AS BIGINT) IS NULL OR (b.lifted_at IS NULL AND (b.ends_at IS NULL OR b.ends_at > ?1))
         ORDER BY b.id DESC LIMIT ?2"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![active_at, limit], |r| Ok((ban(r)?, r.get(11)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn count_for_user(conn: &Connection, user: UserId) -> AppResult<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM bans WHERE user_id = ?1")?
        .query_row([user], |r| r.get(0))?)
}

/// Marks a ban lifted; false if it already was.
pub fn lift(conn: &Connection, id: i64, by: &str, reason: &str, at: i64) -> AppResult<bool> {
    Ok(conn.prepare_cached("UPDATE bans SET lifted_at = ?2, lifted_by = ?3, lift_reason = ?4 WHERE id = ?1 AND lifted_at IS NULL")?
            .execute(params![id, at, by, reason],
    )? == 1)
}

/// Bans whose end has passed but that nobody has closed yet.
pub fn expired(conn: &Connection, now: i64, limit: u32) -> AppResult<Vec<Ban>> {
    let sql = format!(
        "SELECT {BAN_COLUMNS} FROM bans WHERE lifted_at IS NULL AND ends_at IS NOT NULL AND ends_at <= ?1 ORDER BY ends_at LIMIT ?2"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![now, limit], ban)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub struct NewBlock<'a> {
    pub user: Option<UserId>,
    pub api_key: Option<i64>,
    pub ip: Option<&'a str>,
    pub rule: &'a str,
    pub field: &'a str,
    pub prompt_sha256: &'a str,
    pub excerpt: &'a str,
    pub now: i64,
}

pub fn insert_block(conn: &Connection, b: &NewBlock<'_>) -> AppResult<i64> {
    conn.prepare_cached("INSERT INTO blocked_attempts (created_at, user_id, api_key_id, ip, rule, field, prompt_sha256, excerpt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?
            .execute(params![b.now, b.user, b.api_key, b.ip, b.rule, b.field, b.prompt_sha256, b.excerpt],
    )?;
    Ok(conn.last_insert_rowid()?)
}

/// Deletes blocked-attempt records older than `before`.
pub fn sweep_blocks(conn: &Connection, before: i64) -> AppResult<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM blocked_attempts WHERE created_at < ?1")?
        .execute([before])?)
}

pub fn blocks_since(conn: &Connection, user: UserId, since: i64) -> AppResult<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM blocked_attempts WHERE user_id = ?1 AND created_at > ?2",
        )?
        .query_row(params![user, since], |r| r.get(0))?)
}

/// Records a sign-in from a device; true when the account had signed in
/// before but never from this one.
pub fn see_device(conn: &Connection, user: UserId, hash: &str, now: i64) -> AppResult<bool> {
    let updated = conn
        .prepare_cached(
            "UPDATE known_devices SET last_seen = ?3 WHERE user_id = ?1 AND device_hash = ?2",
        )?
        .execute(params![user, hash, now])?;
    if updated == 1 {
        return Ok(false);
    }
    let others: i64 = conn
        .prepare_cached("SELECT count(*) FROM known_devices WHERE user_id = ?1")?
        .query_row([user], |r| r.get(0))?;
    conn.prepare_cached("INSERT INTO known_devices (user_id, device_hash, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3)")?
            .execute(params![user, hash, now],
    )?;
    Ok(others > 0)
}
