//! Referral queries: the two registration addresses compared, rewards per
//! registration address, and a referrer's invitees.

use super::sql::{params, Connection, OptionalExtension};

use crate::error::AppResult;
use crate::model::UserId;

/// The registration IPs of the invitee and the referrer.
pub fn registration_ips(
    conn: &Connection,
    invitee: UserId,
    referrer: UserId,
) -> AppResult<(Option<String>, Option<String>)> {
    Ok(conn
        .query_row(
            "SELECT i.registration_ip, r.registration_ip FROM users i, users r WHERE i.id = ?1 AND r.id = ?2",
            params![invitee, referrer],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or_default())
}

/// Referral rewards paid since `since` for invitees registered from `ip`.
pub fn rewards_for_ip_since(conn: &Connection, ip: &str, since: i64) -> AppResult<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM ledger l JOIN users i ON l.idem_key = 'referral_reward:' || i.id
         WHERE l.kind = 'referral_reward' AND i.registration_ip = ?1 AND l.created_at > ?2",
        params![ip, since],
        |r| r.get(0),
    )?)
}

/// A referrer's invitees, newest first (at most 200): e-mail, joined at,
/// rewarded.
pub fn invitees(conn: &Connection, referrer: UserId) -> AppResult<Vec<(String, i64, bool)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.email, u.created_at, EXISTS (SELECT 1 FROM ledger l WHERE l.idem_key = 'referral_reward:' || u.id)
         FROM users u WHERE u.referred_by = ?1 ORDER BY u.id DESC LIMIT 200",
    )?;
    let rows = stmt.query_map([referrer], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
