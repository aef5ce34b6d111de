//! Account-recovery links void each other. Whoever proves control of the
//! account last wins: a new password (reset link, settings, an admin) voids
//! every open e-mail link and every pending address change, so a change
//! asked for by someone who knew the old password cannot be confirmed
//! afterwards; a confirmed address change voids the links mailed to the old
//! address (see `email_change::confirm`).

use crate::domain::Connection;

use crate::domain::db;
use crate::error::AppResult;
use crate::model::{SessionId, UserId};

/// Voids every open e-mail link of the account (reset, confirmation) and
/// every pending change of its address. Returns how many were voided.
pub fn void_links(tx: &Connection, user: UserId, now: i64) -> AppResult<usize> {
    Ok(db::tokens::void_every(tx, user, now)? + db::email_changes::void_all(tx, user, now)?)
}

/// A new password is in force: it is stored, every open link and pending
/// address change is voided, every session but `keep` ends, and the inbox
/// gets a security alert. The one place a password changes.
pub fn password_replaced(
    tx: &Connection,
    user: UserId,
    hash: &str,
    keep: Option<SessionId>,
    now: i64,
) -> AppResult<()> {
    db::users::set_password(tx, user, hash, now)?;
    void_links(tx, user, now)?;
    super::sessions::end_all(tx, user, keep)?;
    let (title, body) = super::messages::PASSWORD_CHANGED;
    super::messages::alert(tx, user, title, body, now)?;
    Ok(())
}
