//! SQL for redemption codes and redemptions.

use super::sql::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::error::AppResult;
use crate::model::UserId;

#[derive(Debug, Clone, Serialize)]
pub struct Code {
    pub id: i64,
    pub hint: String,
    pub amount: i64,
    pub bucket: String,
    pub max_uses: i64,
    pub uses: i64,
    pub batch: Option<String>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
    pub created_by: String,
}

const COLUMNS: &str = "id, hint, amount, bucket, max_uses, uses, batch, expires_at, revoked_at, created_at, created_by";

fn from_row(r: &Row<'_>) -> super::sql::Result<Code> {
    Ok(Code {
        id: r.get(0)?,
        hint: r.get(1)?,
        amount: r.get(2)?,
        bucket: r.get(3)?,
        max_uses: r.get(4)?,
        uses: r.get(5)?,
        batch: r.get(6)?,
        expires_at: r.get(7)?,
        revoked_at: r.get(8)?,
        created_at: r.get(9)?,
        created_by: r.get(10)?,
    })
}

pub struct NewCode<'a> {
    pub hash: &'a str,
    pub hint: &'a str,
    pub amount: i64,
    pub bucket: &'a str,
    pub max_uses: i64,
    pub batch: Option<&'a str>,
    pub expires_at: Option<i64>,
    pub created_by: &'a str,
    pub now: i64,
}

pub fn insert(conn: &Connection, c: &NewCode<'_>) -> AppResult<()> {
    conn.prepare_cached("INSERT INTO codes (code_hash, hint, amount, bucket, max_uses, batch, expires_at, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")?
            .execute(params![c.hash, c.hint, c.amount, c.bucket, c.max_uses, c.batch, c.expires_at, c.now, c.created_by],
    )?;
    Ok(())
}

pub fn by_hash(conn: &Connection, hash: &str) -> AppResult<Option<Code>> {
    let sql = format!("SELECT {COLUMNS} FROM codes WHERE code_hash = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([hash], from_row)
        .optional()?)
}

pub fn list(conn: &Connection, batch: Option<&str>) -> AppResult<Vec<Code>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM codes WHERE (CAST(?1 AS TEXT) IS NULL OR batch = ?1) ORDER BY id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([batch], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Takes one use if any is left and the code is not revoked (CAS).
pub fn take_use(conn: &Connection, id: i64) -> AppResult<bool> {
    Ok(conn.prepare_cached("UPDATE codes SET uses = uses + 1 WHERE id = ?1 AND uses < max_uses AND revoked_at IS NULL")?
            .execute([id],
    )? == 1)
}

pub fn redeemed_by(conn: &Connection, code: i64, user: UserId) -> AppResult<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM redemptions WHERE code_id = ?1 AND user_id = ?2",
            params![code, user],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

pub fn insert_redemption(conn: &Connection, code: i64, user: UserId, now: i64) -> AppResult<()> {
    conn.prepare_cached(
        "INSERT INTO redemptions (code_id, user_id, created_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![code, user, now])?;
    Ok(())
}

pub fn revoke_hash(conn: &Connection, hash: &str, now: i64) -> AppResult<usize> {
    Ok(conn
        .prepare_cached(
            "UPDATE codes SET revoked_at = ?2 WHERE code_hash = ?1 AND revoked_at IS NULL",
        )?
        .execute(params![hash, now])?)
}

pub fn revoke_batch(conn: &Connection, batch: &str, now: i64) -> AppResult<usize> {
    Ok(conn
        .prepare_cached("UPDATE codes SET revoked_at = ?2 WHERE batch = ?1 AND revoked_at IS NULL")?
        .execute(params![batch, now])?)
}

/// How many paid codes a user has redeemed (for the referral trigger).
pub fn paid_redemptions_of(conn: &Connection, user: UserId) -> AppResult<i64> {
    Ok(conn.prepare_cached("SELECT count(*) FROM redemptions r JOIN codes c ON c.id = r.code_id WHERE r.user_id = ?1 AND c.bucket = 'balance'")?
            .query_row([user],
        |r| r.get(0),
    )?)
}

pub fn record_failure(
    conn: &Connection,
    user: UserId,
    ip: Option<&str>,
    now: i64,
) -> AppResult<()> {
    conn.prepare_cached(
        "INSERT INTO redeem_failures (user_id, ip, created_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![user, ip, now])?;
    Ok(())
}

/// Failed attempts in a window: how many, and when the oldest was.
#[derive(Debug, Clone, Copy, Default)]
pub struct Failures {
    pub count: i64,
    pub oldest: Option<i64>,
}

/// Failures since `since`, by account and by IP.
pub fn failures_since(
    conn: &Connection,
    user: UserId,
    ip: Option<&str>,
    since: i64,
) -> AppResult<(Failures, Failures)> {
    let by_user = conn.prepare_cached("SELECT count(*), min(created_at) FROM redeem_failures WHERE user_id = ?1 AND created_at > ?2")?
            .query_row(params![user, since],
        |r| Ok(Failures { count: r.get(0)?, oldest: r.get(1)? }),
    )?;
    let by_ip = match ip {
        Some(ip) => conn.prepare_cached("SELECT count(*), min(created_at) FROM redeem_failures WHERE ip = ?1 AND created_at > ?2")?
            .query_row(params![ip, since],
            |r| Ok(Failures { count: r.get(0)?, oldest: r.get(1)? }),
        )?,
        None => Failures::default(),
    };
    Ok((by_user, by_ip))
}
