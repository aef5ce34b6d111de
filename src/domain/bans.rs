//! Bans and the risk decisions around them: who may not act, why and until
//! when; blocked prompts and their escalation to timed bans; lifting bans
//! when they end. Admin commands, the content check and the scheduler all
//! come through here, and every decision lands in the audit log in the
//! transaction that made it.

use rusqlite::Connection;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::ModerationConfig;
use crate::db::{self, risk::Ban};
use crate::error::{AppError, AppResult};
use crate::model::{TaskStatus, UserId};

use super::audit::{self, Entry};
use super::moderation::Hit;

/// The scope of a full ban.
pub const ALL: &str = "all";
pub const MAX_REASON_CHARS: usize = 500;
/// Characters of a blocked prompt kept as an excerpt.
pub const EXCERPT_CHARS: usize = 80;

/// "30m", "12h", "7d" or "permanent" → the ban's length (None: permanent).
pub fn parse_length(s: &str) -> AppResult<Option<i64>> {
    crate::config::ban_length(s).ok_or_else(|| {
        AppError::invalid(
            "for",
            format!("{s:?} is not a ban length: use a number and m, h or d (like 30m, 12h, 7d), or permanent."),
        )
    })
}

/// "until 2026-11-23 14:00 UTC" or "permanently".
pub fn until_text(ends_at: Option<i64>) -> String {
    match ends_at {
        Some(t) => format!("until {}", super::format_time(t)),
        None => "permanently".into(),
    }
}

/// What a banned user is told when they try to act.
pub fn refusal(b: &Ban) -> AppError {
    AppError::Banned(format!(
        "Your account is suspended {}. Reason: {}",
        until_text(b.ends_at),
        b.reason
    ))
}

/// The user's full ban in force now, if any.
pub fn active(conn: &Connection, user: UserId) -> AppResult<Option<Ban>> {
    db::risk::active(conn, user, ALL, super::now())
}

/// Err(Banned) when the user may not submit, redeem or create keys.
pub fn ensure_allowed(conn: &Connection, user: UserId) -> AppResult<()> {
    match active(conn, user)? {
        Some(b) => Err(refusal(&b)),
        None => Ok(()),
    }
}

/// Bans of every account (only those in force with `active`), newest first.
pub fn list(conn: &Connection, active: bool, limit: u32) -> AppResult<Vec<(Ban, String)>> {
    db::risk::list(conn, active.then(super::now), limit)
}

pub fn history(conn: &Connection, user: UserId) -> AppResult<Vec<Ban>> {
    db::risk::for_user(conn, user)
}

/// Who imposes a ban, and from where.
pub struct Actor<'a> {
    pub name: &'a str,
    pub ip: Option<&'a str>,
}

/// The effects of a ban, in the caller's transaction: an earlier full ban
/// is replaced, sessions end (the user may sign in again to read), queued
/// tasks are canceled and refunded, the user gets a notice and the audit
/// log a row. Returns the ban and how many tasks were canceled.
fn impose(
    tx: &Connection,
    user: UserId,
    length: Option<i64>,
    reason: &str,
    source: &str,
    actor: &Actor<'_>,
    now: i64,
) -> AppResult<(Ban, usize)> {
    let before = db::risk::active(tx, user, ALL, now)?;
    let ends_at = length.map(|l| now.saturating_add(l));
    let id = db::risk::insert_ban(
        tx,
        &db::risk::NewBan {
            user,
            scope: ALL,
            reason,
            source,
            actor: actor.name,
            now,
            ends_at,
        },
    )?;
    if let Some(old) = &before {
        db::risk::lift(
            tx,
            old.id,
            actor.name,
            &format!("replaced by ban #{id}"),
            now,
        )?;
    }
    db::sessions::delete_all_for_user(tx, user, None)?;
    let canceled = cancel_all(
        tx,
        user,
        &[TaskStatus::Queued],
        "Canceled: account suspended",
        now,
    )?;
    let body = format!(
        "Your account is suspended {}.\n\nReason: {reason}\n\nYou can still sign in to read your messages and download your images, but you cannot start tasks, redeem codes or use API keys.{}",
        until_text(ends_at),
        if canceled > 0 {
            format!(" {canceled} queued task(s) were canceled and their credits refunded.")
        } else {
            String::new()
        }
    );
    db::messages::add(
        tx,
        user,
        "suspension",
        "Your account is suspended",
        &body,
        now,
    )?;
    let ban = db::risk::active(tx, user, ALL, now)?
        .filter(|b| b.id == id)
        .ok_or_else(|| AppError::internal("the new ban is not active"))?;
    let email = email_of(tx, user)?;
    audit::record(
        tx,
        &Entry {
            actor: actor.name,
            action: if source == "admin" {
                "ban"
            } else {
                "ban.escalation"
            },
            target: &email,
            reason,
            before: before
                .as_ref()
                .map(|b| json!({ "ban": b.id, "ends_at": b.ends_at })),
            after: Some(json!({ "ban": id, "ends_at": ends_at, "canceled_tasks": canceled })),
            ip: actor.ip,
        },
    )?;
    Ok((ban, canceled))
}

/// The account's e-mail for the audit log ("" if it is gone).
fn email_of(conn: &Connection, user: UserId) -> AppResult<String> {
    Ok(db::users::by_id(conn, user)?
        .map(|u| u.email)
        .unwrap_or_default())
}

/// Cancels the user's tasks in the given states, each refunded through the
/// ledger and announced to its webhook, in the caller's transaction.
/// Returns how many were canceled.
pub fn cancel_all(
    tx: &Connection,
    user: UserId,
    states: &[TaskStatus],
    reason: &str,
    now: i64,
) -> AppResult<usize> {
    let mut canceled = 0;
    for status in states {
        for task in db::tasks::list_for_user(tx, user, Some(*status), None, 1_000_000)? {
            if db::tasks::mark_canceled(tx, task.id, now)?.is_some() {
                super::wallet::refund_task(tx, user, task.id, task.n, task.n, reason, now)?;
                super::webhooks::enqueue(tx, &task, TaskStatus::Canceled, now)?;
                canceled += 1;
            }
        }
    }
    Ok(canceled)
}

fn check_reason(reason: &str) -> AppResult<&str> {
    let r = reason.trim();
    if r.is_empty() || r.chars().count() > MAX_REASON_CHARS {
        return Err(AppError::invalid(
            "reason",
            format!("Give a reason of 1 to {MAX_REASON_CHARS} characters."),
        ));
    }
    Ok(r)
}

/// An admin bans an account (`novart ban`).
pub fn ban(
    conn: &mut Connection,
    user: UserId,
    length: Option<i64>,
    reason: &str,
    actor: &Actor<'_>,
) -> AppResult<(Ban, usize)> {
    let reason = check_reason(reason)?;
    let now = super::now();
    db::write(conn, |tx| {
        impose(tx, user, length, reason, "admin", actor, now)
    })
}

/// An admin lifts every full ban of an account; Conflict if there is none.
pub fn unban(
    conn: &mut Connection,
    user: UserId,
    reason: &str,
    actor: &Actor<'_>,
) -> AppResult<Ban> {
    let reason = check_reason(reason)?;
    let now = super::now();
    db::write(conn, |tx| {
        let Some(ban) = db::risk::active(tx, user, ALL, now)? else {
            return Err(AppError::Conflict("The account is not banned.".into()));
        };
        // Stacked bans (replaced ones are already lifted): lift all.
        while let Some(b) = db::risk::active(tx, user, ALL, now)? {
            db::risk::lift(tx, b.id, actor.name, reason, now)?;
        }
        db::messages::add(
            tx,
            user,
            "suspension",
            "Your suspension was lifted",
            &format!(
                "Your account can be used normally again.\n\nNote from the operator: {reason}"
            ),
            now,
        )?;
        let email = email_of(tx, user)?;
        audit::record(
            tx,
            &Entry {
                actor: actor.name,
                action: "unban",
                target: &email,
                reason,
                before: Some(json!({ "ban": ban.id, "ends_at": ban.ends_at })),
                after: None,
                ip: actor.ip,
            },
        )?;
        Ok(ban)
    })
}

/// Closes bans whose time is up, each with a message to the user and an
/// audit row. Returns how many were lifted. Run by the scheduler; an ended
/// ban stops applying at its end time whether or not this has run.
pub fn lift_expired(conn: &mut Connection, now: i64) -> AppResult<usize> {
    let due = db::risk::expired(conn, now, 500)?;
    let mut lifted = 0;
    for ban in due {
        lifted += db::write(conn, |tx| {
            let at = ban.ends_at.unwrap_or(now);
            if !db::risk::lift(tx, ban.id, "system", "expired", at)? {
                return Ok(0);
            }
            // A newer ban may still stand; tell the user only when none does.
            if db::risk::active(tx, UserId(ban.user_id), ALL, now)?.is_none() {
                db::messages::add(
                    tx,
                    UserId(ban.user_id),
                    "suspension",
                    "Your suspension has ended",
                    &format!(
                        "The suspension of your account ended at {}. You can start tasks, redeem codes and use your API keys again.",
                        super::format_time(at)
                    ),
                    now,
                )?;
            }
            let email = email_of(tx, UserId(ban.user_id))?;
            audit::record(
                tx,
                &Entry {
                    actor: "system",
                    action: "ban.expire",
                    target: &email,
                    reason: "the ban's time ended",
                    before: Some(json!({ "ban": ban.id, "ends_at": ban.ends_at })),
                    after: None,
                    ip: None,
                },
            )?;
            Ok(1)
        })?;
    }
    Ok(lifted)
}

/// Who sent a blocked prompt.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub user: Option<UserId>,
    pub api_key: Option<i64>,
    pub ip: Option<String>,
}

/// The first `EXCERPT_CHARS` characters of a prompt.
pub fn excerpt(text: &str) -> String {
    let t: String = text.chars().take(EXCERPT_CHARS).collect();
    if text.chars().count() > EXCERPT_CHARS {
        format!("{t}…")
    } else {
        t
    }
}

/// Records a blocked prompt and, when the user has reached the configured
/// number of blocks in the window, bans them (longer for each earlier ban).
/// Returns the error the user gets: 422 content_blocked, naming the ban if
/// one was imposed.
pub fn blocked(
    conn: &mut Connection,
    config: &ModerationConfig,
    origin: &Origin,
    hit: &Hit,
    text: &str,
) -> AppResult<AppError> {
    let now = super::now();
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    let ban = db::write(conn, |tx| {
        db::risk::insert_block(
            tx,
            &db::risk::NewBlock {
                user: origin.user,
                api_key: origin.api_key,
                ip: origin.ip.as_deref(),
                rule: &hit.rule,
                field: hit.field,
                prompt_sha256: &digest,
                excerpt: &excerpt(text),
                now,
            },
        )?;
        let email = match origin.user {
            Some(u) => email_of(tx, u)?,
            None => String::new(),
        };
        audit::record(
            tx,
            &Entry {
                actor: "system",
                action: "moderation.block",
                target: &email,
                reason: &hit.rule,
                before: None,
                after: Some(
                    json!({ "field": hit.field, "prompt_sha256": digest, "api_key": origin.api_key }),
                ),
                ip: origin.ip.as_deref(),
            },
        )?;
        let Some(user) = origin.user else {
            return Ok(None);
        };
        if config.escalate_after == 0 || db::risk::active(tx, user, ALL, now)?.is_some() {
            return Ok(None);
        }
        let window = config.escalation_window_minutes as i64 * 60;
        let recent = db::risk::blocks_since(tx, user, now - window)?;
        if recent < config.escalate_after as i64 {
            return Ok(None);
        }
        let earlier = db::risk::count_for_user(tx, user)? as usize;
        let reason = format!(
            "{recent} prompts blocked by the content rules within {} minutes (last: {}).",
            config.escalation_window_minutes, hit.label
        );
        let actor = Actor {
            name: "system",
            ip: origin.ip.as_deref(),
        };
        let (ban, _) = impose(
            tx,
            user,
            config.ban_length(earlier),
            &reason,
            "escalation",
            &actor,
            now,
        )?;
        Ok(Some(ban))
    })?;
    let mut message = format!(
        "This request was blocked by the content rules ({}). Nothing was charged.",
        hit.label
    );
    if let Some(b) = ban {
        message.push_str(&format!(
            " After repeated blocked requests your account is suspended {}.",
            until_text(b.ends_at)
        ));
    }
    Ok(AppError::ContentBlocked(message))
}
