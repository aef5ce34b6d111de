//! Appeals against restrictions: a restricted account explains once per
//! restriction; an admin accepts (the restriction is lifted) or rejects,
//! with a reason the account reads in its inbox. Every step is in the audit
//! log, in the transaction that made it.

use crate::domain::Connection;
use serde_json::json;

use crate::domain::db;
pub use crate::domain::db::appeals::Appeal;
use crate::error::{AppError, AppResult};
use crate::model::UserId;

use super::audit::{self, email_of, Entry};
use super::bans::{self, Actor};

pub const MIN_BODY_CHARS: usize = 10;
pub const MAX_BODY_CHARS: usize = 2000;
/// Appeals one account may file per day (each restriction takes one).
pub const PER_DAY: i64 = 3;
const DAY: i64 = 86_400;

/// The account files an appeal against one of its restrictions in force.
pub fn file(
    conn: &mut Connection,
    user: UserId,
    ban_id: i64,
    body: &str,
    ip: Option<&str>,
) -> AppResult<Appeal> {
    let body = body.trim();
    let n = body.chars().count();
    if !(MIN_BODY_CHARS..=MAX_BODY_CHARS).contains(&n) {
        return Err(AppError::invalid(
            "body",
            format!("Explain your appeal in {MIN_BODY_CHARS} to {MAX_BODY_CHARS} characters."),
        ));
    }
    let now = super::now();
    db::write(conn, |tx| {
        let ban = db::risk::by_id(tx, ban_id)?
            .filter(|b| b.user_id == user.0)
            .ok_or(AppError::NotFound)?;
        if ban.lifted_at.is_some() || ban.ends_at.is_some_and(|e| e <= now) {
            return Err(AppError::Conflict(
                "This restriction is no longer in force.".into(),
            ));
        }
        let (recent, oldest) = db::appeals::since(tx, user, now - DAY)?;
        if recent >= PER_DAY {
            return Err(AppError::RateLimited {
                retry_after_secs: (oldest.unwrap_or(now) + DAY - now).max(1) as u64,
            });
        }
        let Some(id) = db::appeals::insert(tx, ban.id, user, body, now)? else {
            return Err(AppError::Conflict(
                "You have already appealed this restriction.".into(),
            ));
        };
        let email = email_of(tx, user)?;
        audit::record(
            tx,
            &Entry {
                actor: &format!("user:{}", user.0),
                action: "appeal.file",
                target: &email,
                reason: "",
                before: None,
                after: Some(json!({ "appeal": id, "ban": ban.id, "scope": ban.scope })),
                ip,
            },
        )?;
        db::appeals::by_id(tx, id)?.ok_or_else(|| AppError::internal("the new appeal is missing"))
    })
}

/// An admin's decision on a pending appeal. Accepting lifts the
/// restriction (if it is still in force); either way the account gets a
/// message with the reason. Conflict when the appeal was decided already.
pub fn decide(
    conn: &mut Connection,
    id: i64,
    accept: bool,
    reason: &str,
    actor: &Actor<'_>,
) -> AppResult<Appeal> {
    let reason = bans::check_reason(reason)?;
    let now = super::now();
    db::write(conn, |tx| {
        let appeal = db::appeals::by_id(tx, id)?.ok_or(AppError::NotFound)?;
        let status = if accept { "accepted" } else { "rejected" };
        if !db::appeals::decide(tx, id, status, actor.name, reason, now)? {
            return Err(AppError::Conflict(format!(
                "Appeal #{id} was already {}.",
                appeal.status
            )));
        }
        let ban = db::risk::by_id(tx, appeal.ban_id)?
            .ok_or_else(|| AppError::internal("the appealed restriction is missing"))?;
        let user = UserId(appeal.user_id);
        let since = super::format_time(ban.starts_at);
        let lifted = accept
            && db::risk::lift(
                tx,
                ban.id,
                actor.name,
                &format!("appeal #{id} accepted: {reason}"),
                now,
            )?;
        let (title, body) = if accept {
            (
                "Your appeal was accepted",
                format!(
                    "Your appeal against the restriction of {since} was accepted and the restriction is lifted. {}\n\nNote from the operator: {reason}",
                    bans::again(&ban.scope)
                ),
            )
        } else {
            (
                "Your appeal was rejected",
                format!(
                    "Your appeal against the restriction of {since} was rejected; the restriction stays {}.\n\nNote from the operator: {reason}",
                    bans::until_text(ban.ends_at)
                ),
            )
        };
        db::messages::add(tx, user, "suspension", title, &body, now)?;
        let email = email_of(tx, user)?;
        audit::record(
            tx,
            &Entry {
                actor: actor.name,
                action: if accept {
                    "appeal.accept"
                } else {
                    "appeal.reject"
                },
                target: &email,
                reason,
                before: Some(json!({ "appeal": id, "status": "pending" })),
                after: Some(
                    json!({ "appeal": id, "status": status, "ban": ban.id, "scope": ban.scope, "lifted": lifted }),
                ),
                ip: actor.ip,
            },
        )?;
        db::appeals::by_id(tx, id)?.ok_or(AppError::NotFound)
    })
}

pub fn for_user(conn: &Connection, user: UserId) -> AppResult<Vec<Appeal>> {
    db::appeals::for_user(conn, user)
}

/// Appeals of every account with its e-mail, newest first.
pub fn list(conn: &Connection, pending: bool, limit: u32) -> AppResult<Vec<(Appeal, String)>> {
    db::appeals::list(conn, pending, limit)
}
