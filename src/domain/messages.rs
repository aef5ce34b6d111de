//! The inbox: messages to a user (announcements, limit decisions, ...), read
//! and unread.

use crate::domain::Connection;

use crate::domain::db;
pub use crate::domain::db::messages::Message;
use crate::error::{AppError, AppResult};
use crate::model::UserId;

pub const MAX_TITLE_CHARS: usize = 120;
pub const MAX_BODY_CHARS: usize = 5000;

/// What a message is, for its label and icon.
pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "announcement" => "Announcement",
        "security" => "Security",
        "suspension" => "Account",
        "limit_decision" => "API limits",
        "task" => "Task",
        "privacy" => "Privacy",
        _ => "Message",
    }
}

fn check(title: &str, body: &str) -> AppResult<()> {
    let (t, b) = (title.trim(), body.trim());
    if t.is_empty() || t.chars().count() > MAX_TITLE_CHARS {
        return Err(AppError::invalid(
            "title",
            format!("The title has 1 to {MAX_TITLE_CHARS} characters."),
        ));
    }
    if b.is_empty() || b.chars().count() > MAX_BODY_CHARS {
        return Err(AppError::invalid(
            "body",
            format!("The text has 1 to {MAX_BODY_CHARS} characters."),
        ));
    }
    Ok(())
}

/// An announcement to one account or to every account; returns how many
/// received it.
pub fn announce(
    conn: &mut Connection,
    title: &str,
    body: &str,
    to: Option<UserId>,
) -> AppResult<usize> {
    check(title, body)?;
    let now = super::now();
    db::write(conn, |tx| match to {
        Some(user) => {
            db::messages::add(tx, user, "announcement", title.trim(), body.trim(), now)?;
            Ok(1)
        }
        None => db::messages::add_to_all(tx, "announcement", title.trim(), body.trim(), now),
    })
}

/// A security alert in the user's inbox, written in the caller's
/// transaction (the change and its alert commit together).
pub fn alert(tx: &Connection, user: UserId, title: &str, body: &str, now: i64) -> AppResult<()> {
    db::messages::add(tx, user, "security", title, body, now)
}

pub const PASSWORD_CHANGED: (&str, &str) = (
    "Your password was changed",
    "The password of your account was changed and every other session was signed out. If this was not you, reset your password now and contact the operator.",
);

pub fn list(conn: &Connection, user: UserId) -> AppResult<Vec<Message>> {
    db::messages::for_user(conn, user, 200)
}

pub fn unread(conn: &Connection, user: UserId) -> AppResult<i64> {
    db::messages::unread(conn, user)
}

pub fn mark_read(conn: &mut Connection, user: UserId, id: i64) -> AppResult<()> {
    let now = super::now();
    db::write(conn, |tx| db::messages::mark_read(tx, user, id, now))?;
    Ok(())
}

pub fn mark_all_read(conn: &mut Connection, user: UserId) -> AppResult<usize> {
    let now = super::now();
    db::write(conn, |tx| db::messages::mark_all_read(tx, user, now))
}

/// Unread messages younger than this are shown as toasts on every page
/// until the user dismisses them.
pub const TOAST_WINDOW_SECS: i64 = 600;

/// What every signed-in page needs from the inbox.
#[derive(Debug, Clone, Default)]
pub struct InboxState {
    pub unread: i64,
    /// The newest message id: where the page's live stream starts.
    pub latest: i64,
    /// Recent unread messages, for toasts.
    pub fresh: Vec<Message>,
}

pub fn state(conn: &Connection, user: UserId) -> AppResult<InboxState> {
    let (unread, latest) = db::messages::summary(conn, user)?;
    Ok(InboxState {
        unread,
        latest,
        fresh: db::messages::fresh_unread(conn, user, super::now() - TOAST_WINDOW_SECS, 3)?,
    })
}

/// Messages newer than `after` (at most 20), oldest first.
pub fn after(conn: &Connection, user: UserId, after: i64) -> AppResult<Vec<Message>> {
    db::messages::after(conn, user, after, 20)
}

/// A task failed for good: worth a message (the studio may be closed, the
/// task may have come from the API). At most one unread such message per
/// ten minutes, so an upstream outage does not flood the inbox.
pub fn task_failed(
    tx: &Connection,
    task: &crate::model::Task,
    error: &str,
    refunded: i64,
    now: i64,
) -> AppResult<()> {
    if db::messages::unread_kind_since(tx, task.user_id, "task", now - 600)? {
        return Ok(());
    }
    let prompt: String = task.prompt.chars().take(80).collect();
    let refund = if refunded > 0 {
        format!(" Its {refunded} credit(s) were refunded.")
    } else {
        String::new()
    };
    db::messages::add(
        tx,
        task.user_id,
        "task",
        "A task failed",
        &format!(
            "Task {} (\u{201c}{prompt}\u{201d}) failed: {}.{refund} Further failures in the next minutes are not reported here; the studio and the API show each task's state.",
            task.public_id,
            error.trim().trim_end_matches('.')
        ),
        now,
    )
}
