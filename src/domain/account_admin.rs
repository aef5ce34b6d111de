//! What an admin does to an account's password from the command line: set
//! a new one (every session ends, the owner is told) or mail a reset link.

use crate::domain::Connection;

use super::accounts::{find, notify_password_changed, send_reset_link};
use super::passwords;
use crate::config::Config;
use crate::domain::db;
use crate::error::AppResult;
use crate::mail::Mailer;
use crate::model::User;

/// Sets a new password chosen by an admin; every session of the user ends.
pub fn set_password_by_admin(
    conn: &mut Connection,
    config: &Config,
    mailer: &Mailer,
    email: &str,
    password: &str,
) -> AppResult<User> {
    let user = find(conn, email)?;
    passwords::check_new(password, &user.email)?;
    let hash = passwords::hash(password, config.auth.bcrypt_cost)?;
    let now = super::now();
    db::write(conn, |tx| {
        super::recovery::password_replaced(tx, user.id, &hash, None, now)
    })?;
    notify_password_changed(mailer, &user);
    Ok(user)
}

/// Mails the user a reset link (admin-initiated "forgot password").
pub fn send_reset_by_admin(
    conn: &mut Connection,
    config: &Config,
    mailer: &Mailer,
    email: &str,
) -> AppResult<User> {
    let user = find(conn, email)?;
    send_reset_link(conn, config, mailer, &user)?;
    Ok(user)
}
