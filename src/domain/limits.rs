//! Requests for higher per-key limits: a creator asks with a reason, an
//! admin approves (possibly with other numbers) or denies, and the creator
//! gets a message with the decision.

use crate::domain::Connection;

use crate::domain::db::{self, limits::LimitRequest};
use crate::error::{AppError, AppResult};
use crate::model::UserId;

pub const MAX_REASON_CHARS: usize = 1000;

/// What a creator asks for; None leaves a limit as it is.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    pub rpm: Option<u32>,
    pub concurrency: Option<u32>,
    pub daily_cap: Option<u32>,
    pub reason: String,
}

fn check(field: &'static str, v: Option<u32>) -> AppResult<()> {
    match v {
        Some(n) if n == 0 || n > 1_000_000 => Err(AppError::invalid(
            field,
            "Limits are whole numbers from 1 to 1000000.",
        )),
        _ => Ok(()),
    }
}

/// Files a request for one of the user's keys.
pub fn request(conn: &mut Connection, user: UserId, key_prefix: &str, ask: &Ask) -> AppResult<i64> {
    let key = super::apikeys::own(conn, user, key_prefix)?;
    if key.revoked_at.is_some() {
        return Err(AppError::invalid("key", "This key was revoked."));
    }
    check("rpm", ask.rpm)?;
    check("concurrency", ask.concurrency)?;
    check("daily_cap", ask.daily_cap)?;
    let higher = ask.rpm.is_some_and(|v| v > key.rpm)
        || ask.concurrency.is_some_and(|v| v > key.concurrency)
        || ask.daily_cap.is_some_and(|v| v > key.daily_cap);
    if !higher {
        return Err(AppError::invalid(
            "rpm",
            "Ask for at least one limit higher than the key has now.",
        ));
    }
    let reason = ask.reason.trim();
    if reason.chars().count() < 10 || reason.chars().count() > MAX_REASON_CHARS {
        return Err(AppError::invalid(
            "reason",
            format!("Tell the operator why, in 10 to {MAX_REASON_CHARS} characters."),
        ));
    }
    let now = super::now();
    db::write(conn, |tx| {
        if db::limits::pending_for_key(tx, key.id)? {
            return Err(AppError::Conflict(
                "This key already has a request waiting for a decision.".into(),
            ));
        }
        db::limits::insert(
            tx,
            user,
            key.id,
            ask.rpm,
            ask.concurrency,
            ask.daily_cap,
            reason,
            now,
        )
    })
}

pub fn list(conn: &Connection, pending_only: bool) -> AppResult<Vec<LimitRequest>> {
    db::limits::list(conn, pending_only, None)
}

pub fn for_user(conn: &Connection, user: UserId) -> AppResult<Vec<LimitRequest>> {
    db::limits::list(conn, false, Some(user))
}

/// Approves a pending request; `overrides` replace what was asked for.
/// Returns the key's new limits.
pub fn approve(
    conn: &mut Connection,
    id: i64,
    overrides: &Ask,
    by: &str,
) -> AppResult<(u32, u32, u32)> {
    let r = db::limits::by_id(conn, id)?.ok_or(AppError::NotFound)?;
    check("rpm", overrides.rpm)?;
    check("concurrency", overrides.concurrency)?;
    check("daily_cap", overrides.daily_cap)?;
    let (cur_rpm, cur_conc, cur_cap) = r.current;
    let rpm = overrides.rpm.or(r.rpm).unwrap_or(cur_rpm);
    let conc = overrides.concurrency.or(r.concurrency).unwrap_or(cur_conc);
    let cap = overrides.daily_cap.or(r.daily_cap).unwrap_or(cur_cap);
    let note = overrides.reason.trim();
    let decision = format!(
        "approved: {rpm} requests/minute, {conc} at once, {cap} tasks/day{}",
        if note.is_empty() {
            String::new()
        } else {
            format!(" ({note})")
        }
    );
    let now = super::now();
    db::write(conn, |tx| {
        if !db::limits::decide(tx, id, "approved", &decision, by, now)? {
            return Err(AppError::Conflict(
                "The request was already decided.".into(),
            ));
        }
        db::api_keys::set_limits(tx, r.key_id, rpm, conc, cap)?;
        db::messages::add(
            tx,
            r.user_id,
            "limit_decision",
            "Your limit request was approved",
            &format!(
                "Key {} now allows {rpm} requests per minute, {conc} tasks at once and {cap} tasks per day.{}",
                r.key_prefix,
                if note.is_empty() { String::new() } else { format!(" Note from the operator: {note}") }
            ),
            now,
        )
    })?;
    Ok((rpm, conc, cap))
}

pub fn deny(conn: &mut Connection, id: i64, reason: &str, by: &str) -> AppResult<()> {
    let r = db::limits::by_id(conn, id)?.ok_or(AppError::NotFound)?;
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(AppError::invalid(
            "reason",
            "Give the reason for the denial.",
        ));
    }
    let now = super::now();
    db::write(conn, |tx| {
        if !db::limits::decide(tx, id, "denied", &format!("denied: {reason}"), by, now)? {
            return Err(AppError::Conflict(
                "The request was already decided.".into(),
            ));
        }
        db::messages::add(
            tx,
            r.user_id,
            "limit_decision",
            "Your limit request was denied",
            &format!("The request for key {} was denied: {reason}", r.key_prefix),
            now,
        )
    })
}
