//! Bans and the risk decisions around them: who may not act, why and until
//! when; blocked prompts and their escalation to timed bans; lifting bans
//! when they end. Admin commands, the content check and the scheduler all
//! come through here, and every decision lands in the audit log in the
//! transaction that made it.

use crate::domain::Connection;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::ModerationConfig;
use crate::domain::db;
pub use crate::domain::db::risk::Ban;
use crate::error::{AppError, AppResult};
use crate::model::{TaskStatus, UserId};

use super::audit::{self, email_of, Entry};
use super::moderation::Hit;

/// The scope of a full ban.
pub const ALL: &str = "all";
/// What a restriction can cover: everything (a ban), starting tasks (web
/// and API), API keys (the website still works), reference-image uploads.
pub const SCOPES: [&str; 4] = [ALL, "generate", "api", "upload"];
pub const MAX_REASON_CHARS: usize = 500;
/// Characters of a blocked prompt kept as an excerpt.
pub const EXCERPT_CHARS: usize = 80;

/// "all", "generate", "api" or "upload".
pub fn parse_scope(s: &str) -> AppResult<&'static str> {
    SCOPES
        .iter()
        .find(|x| x.eq_ignore_ascii_case(s.trim()))
        .copied()
        .ok_or_else(|| {
            AppError::invalid(
                "scope",
                format!("{s:?} is not a scope: use all, generate, api or upload."),
            )
        })
}

/// The guarded actions, each checked in the one place that performs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new task, from the studio or the API.
    Generate,
    /// Any request authenticated by an API key.
    Api,
    /// Creating an API key.
    CreateKey,
    /// A reference image (uploaded, or an earlier upload named by id).
    Upload,
    /// Redeeming a code.
    Redeem,
}

impl Action {
    /// The scopes whose restriction stops this action.
    fn stopped_by(self, scope: &str) -> bool {
        scope == ALL
            || matches!(
                (self, scope),
                (Action::Generate, "generate")
                    | (Action::Api | Action::CreateKey, "api")
                    | (Action::Upload, "upload")
            )
    }
}

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

/// What a restricted user is told when they try the action: which
/// restriction, until when, and why.
pub fn refusal(b: &Ban) -> AppError {
    let (until, reason) = (until_text(b.ends_at), &b.reason);
    AppError::Banned(match b.scope.as_str() {
        "generate" => format!("Your account may not start tasks {until}. Reason: {reason}"),
        "api" => format!("Your API access is suspended {until}. Reason: {reason}"),
        "upload" => {
            format!("Your account may not upload reference images {until}. Reason: {reason}")
        }
        _ => format!("Your account is suspended {until}. Reason: {reason}"),
    })
}

/// Every restriction of the user in force now, the longest-lasting first.
pub fn restrictions(conn: &Connection, user: UserId) -> AppResult<Vec<Ban>> {
    db::risk::active_all(conn, user, super::now())
}

/// Err(Banned) naming the restriction when one in force stops `action`
/// (the longest-lasting one when several do). Restrictions stop applying
/// at their end time whether or not the scheduler has closed them yet.
pub fn ensure(conn: &Connection, user: UserId, action: Action) -> AppResult<()> {
    match restrictions(conn, user)?
        .into_iter()
        .find(|b| action.stopped_by(&b.scope))
    {
        Some(b) => Err(refusal(&b)),
        None => Ok(()),
    }
}

/// Restrictions of every account (only those in force with `active`),
/// newest first.
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

/// The message that tells the user a restriction was imposed: title, body.
fn imposed_message(scope: &str, until: &str, reason: &str, canceled: usize) -> (String, String) {
    let canceled = if canceled > 0 {
        format!(" {canceled} queued task(s) were canceled and their credits refunded.")
    } else {
        String::new()
    };
    let appeal = "If you think this is a mistake, you can appeal in Settings.";
    match scope {
        "generate" => (
            "Your account may not start tasks".into(),
            format!("Your account may not start tasks {until}.\n\nReason: {reason}\n\nYou can still sign in, read your messages and download your images.{canceled}\n\n{appeal}"),
        ),
        "api" => (
            "Your API access is suspended".into(),
            format!("Your API keys are refused {until}.\n\nReason: {reason}\n\nThe website works as before; your keys work again when the restriction ends.\n\n{appeal}"),
        ),
        "upload" => (
            "Your account may not upload reference images".into(),
            format!("You may not upload reference images {until}.\n\nReason: {reason}\n\nYou can still start tasks without them.\n\n{appeal}"),
        ),
        _ => (
            "Your account is suspended".into(),
            format!("Your account is suspended {until}.\n\nReason: {reason}\n\nYou can still sign in to read your messages and download your images, but you cannot start tasks, redeem codes or use API keys.{canceled}\n\n{appeal}"),
        ),
    }
}

/// What the user may do again once a restriction of `scope` ends.
pub fn again(scope: &str) -> &'static str {
    match scope {
        "generate" => "You can start tasks again.",
        "api" => "Your API keys work again.",
        "upload" => "You can upload reference images again.",
        _ => "Your account can be used normally again.",
    }
}

/// The effects of a restriction, in the caller's transaction: an earlier
/// one of the same scope is replaced; a full ban ends the sessions (the
/// user may sign in again to read); a full ban or a generate restriction
/// cancels and refunds queued tasks; the user gets a message and the audit
/// log a row. Returns the restriction and how many tasks were canceled.
#[allow(clippy::too_many_arguments)]
fn impose(
    tx: &Connection,
    user: UserId,
    scope: &'static str,
    length: Option<i64>,
    reason: &str,
    source: &str,
    actor: &Actor<'_>,
    now: i64,
) -> AppResult<(Ban, usize)> {
    let before = db::risk::active(tx, user, scope, now)?;
    let ends_at = length.map(|l| now.saturating_add(l));
    let id = db::risk::insert_ban(
        tx,
        &db::risk::NewBan {
            user,
            scope,
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
            &format!("replaced by restriction #{id}"),
            now,
        )?;
    }
    if scope == ALL {
        db::sessions::delete_all_for_user(tx, user, None)?;
    }
    let canceled = if scope == ALL || scope == "generate" {
        let why = if scope == ALL {
            "Canceled: account suspended"
        } else {
            "Canceled: the account may not start tasks"
        };
        cancel_all(tx, user, &[TaskStatus::Queued], why, now)?
    } else {
        0
    };
    let (title, body) = imposed_message(scope, &until_text(ends_at), reason, canceled);
    db::messages::add(tx, user, "suspension", &title, &body, now)?;
    let ban = db::risk::by_id(tx, id)?
        .ok_or_else(|| AppError::internal("the new restriction is missing"))?;
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
                .map(|b| json!({ "ban": b.id, "scope": b.scope, "ends_at": b.ends_at })),
            after: Some(
                json!({ "ban": id, "scope": scope, "ends_at": ends_at, "canceled_tasks": canceled }),
            ),
            ip: actor.ip,
        },
    )?;
    Ok((ban, canceled))
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
            if super::tasks::cancel_refunded(tx, &task, reason, now)? {
                canceled += 1;
            }
        }
    }
    Ok(canceled)
}

pub(super) fn check_reason(reason: &str) -> AppResult<&str> {
    let r = reason.trim();
    if r.is_empty() || r.chars().count() > MAX_REASON_CHARS {
        return Err(AppError::invalid(
            "reason",
            format!("Give a reason of 1 to {MAX_REASON_CHARS} characters."),
        ));
    }
    Ok(r)
}

/// An admin restricts an account (`novart ban EMAIL --scope S`).
pub fn ban(
    conn: &mut Connection,
    user: UserId,
    scope: &'static str,
    length: Option<i64>,
    reason: &str,
    actor: &Actor<'_>,
) -> AppResult<(Ban, usize)> {
    let reason = check_reason(reason)?;
    let now = super::now();
    db::write(conn, |tx| {
        impose(tx, user, scope, length, reason, "admin", actor, now)
    })
}

/// Lifts one restriction in the caller's transaction and tells the user
/// (`note`: the operator's words). False if it was no longer in force.
fn lift_one(tx: &Connection, ban: &Ban, by: &str, note: &str, now: i64) -> AppResult<bool> {
    if !db::risk::lift(tx, ban.id, by, note, now)? {
        return Ok(false);
    }
    let title = if ban.scope == ALL {
        "Your suspension was lifted"
    } else {
        "A restriction on your account was lifted"
    };
    db::messages::add(
        tx,
        UserId(ban.user_id),
        "suspension",
        title,
        &format!("{}\n\nNote from the operator: {note}", again(&ban.scope)),
        now,
    )?;
    Ok(true)
}

/// An admin lifts an account's restrictions in force (only those of
/// `scope` when given); Conflict if there is none. Returns those lifted.
pub fn unban(
    conn: &mut Connection,
    user: UserId,
    scope: Option<&str>,
    reason: &str,
    actor: &Actor<'_>,
) -> AppResult<Vec<Ban>> {
    let reason = check_reason(reason)?;
    let now = super::now();
    db::write(conn, |tx| {
        let lifted: Vec<Ban> = db::risk::active_all(tx, user, now)?
            .into_iter()
            .filter(|b| scope.is_none_or(|s| b.scope == s))
            .collect();
        if lifted.is_empty() {
            return Err(AppError::Conflict(match scope {
                Some(s) => format!("The account has no {s} restriction in force."),
                None => "The account is not banned or restricted.".into(),
            }));
        }
        for b in &lifted {
            lift_one(tx, b, actor.name, reason, now)?;
        }
        let email = email_of(tx, user)?;
        audit::record(
            tx,
            &Entry {
                actor: actor.name,
                action: "unban",
                target: &email,
                reason,
                before: Some(json!(lifted
                    .iter()
                    .map(|b| json!({ "ban": b.id, "scope": b.scope, "ends_at": b.ends_at }))
                    .collect::<Vec<_>>())),
                after: None,
                ip: actor.ip,
            },
        )?;
        Ok(lifted)
    })
}

/// Closes restrictions whose time is up, each with a message to the user
/// and an audit row. Returns how many were lifted. Run by the scheduler; an
/// ended restriction stops applying at its end time whether or not this
/// has run.
pub fn lift_expired(conn: &mut Connection, now: i64) -> AppResult<usize> {
    let due = db::risk::expired(conn, now, 500)?;
    let mut lifted = 0;
    for ban in due {
        lifted += db::write(conn, |tx| {
            let at = ban.ends_at.unwrap_or(now);
            if !db::risk::lift(tx, ban.id, "system", "expired", at)? {
                return Ok(0);
            }
            let user = UserId(ban.user_id);
            // A newer restriction of the same scope may still stand; tell
            // the user only when none does.
            if db::risk::active(tx, user, &ban.scope, now)?.is_none() {
                let when = super::format_time(at);
                let (title, body) = if ban.scope == ALL {
                    (
                        "Your suspension has ended".to_string(),
                        format!("The suspension of your account ended at {when}. You can start tasks, redeem codes and use your API keys again."),
                    )
                } else {
                    (
                        "A restriction on your account has ended".to_string(),
                        format!(
                            "The restriction on your account ended at {when}. {}",
                            again(&ban.scope)
                        ),
                    )
                };
                db::messages::add(tx, user, "suspension", &title, &body, now)?;
            }
            let email = email_of(tx, user)?;
            audit::record(
                tx,
                &Entry {
                    actor: "system",
                    action: "ban.expire",
                    target: &email,
                    reason: "the restriction's time ended",
                    before: Some(
                        json!({ "ban": ban.id, "scope": ban.scope, "ends_at": ban.ends_at }),
                    ),
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
            ALL,
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

/// One restriction by id, lifted or not.
pub fn by_id(conn: &Connection, id: i64) -> AppResult<Option<Ban>> {
    db::risk::by_id(conn, id)
}
