//! Signing in, in three steps so that bcrypt never runs while a database
//! connection is held: the account (a quick read), the password check (no
//! connection), then the session (a write).

use crate::domain::Connection;

use crate::config::Config;
use crate::domain::db;
use crate::error::{AppError, AppResult};
use crate::model::{Client, User, UserId};

use super::passwords;
use super::sessions::{self, NewSession};

#[derive(Debug)]
pub enum SignInError {
    /// Unknown address or wrong password: the same answer for both.
    BadCredentials,
    /// Right password, but the address is not confirmed yet.
    Unverified,
    Other(AppError),
}

impl From<AppError> for SignInError {
    fn from(e: AppError) -> Self {
        SignInError::Other(e)
    }
}

pub const BAD_CREDENTIALS: &str = "The e-mail address or password is not right.";

/// Sign-in, step 1 (a connection, a quick read): the account behind an
/// address, if any.
pub fn sign_in_account(conn: &Connection, email: &str) -> AppResult<Option<User>> {
    db::users::by_email(conn, email.trim())
}

/// Sign-in, step 2 (CPU-heavy, never while holding a connection): checks
/// the password with bcrypt (a dummy check of the same cost for an unknown
/// address, so both take as long) and whether the account may sign in.
/// Returns the new hash when the stored one has a lower work factor.
pub fn sign_in_check(
    config: &Config,
    user: Option<&User>,
    password: &str,
) -> Result<Option<String>, SignInError> {
    let cost = config.auth.bcrypt_cost;
    let Some(user) = user else {
        passwords::dummy_verify(password, cost);
        return Err(SignInError::BadCredentials);
    };
    if !passwords::verify(password, &user.password_hash) {
        return Err(SignInError::BadCredentials);
    }
    if config.registration.require_email_verification && !user.is_verified() {
        return Err(SignInError::Unverified);
    }
    // Hashes made with a lower work factor are upgraded on this sign-in.
    Ok(match passwords::cost_of(&user.password_hash) {
        Some(c) if c < cost => Some(passwords::hash(password, cost)?),
        _ => None,
    })
}

/// Sign-in, step 3: stores an upgraded hash and opens the session.
pub fn sign_in_finish(
    conn: &mut Connection,
    config: &Config,
    user: &User,
    rehash: Option<String>,
    client: &Client<'_>,
) -> AppResult<NewSession> {
    if let Some(h) = &rehash {
        db::write(conn, |tx| db::users::set_password_hash(tx, user.id, h))?;
    }
    open_session(conn, config, user.id, client)
}

/// Starts a session for a user whose identity was just proven (password, or
/// a registration that needs no verification) and records the sign-in time.
pub fn open_session(
    conn: &mut Connection,
    config: &Config,
    user: UserId,
    client: &Client<'_>,
) -> AppResult<NewSession> {
    let now = super::now();
    let session = db::write(conn, |tx| {
        db::users::touch_sign_in(tx, user, now)?;
        let device = sessions::device_hash(client.ip, client.user_agent);
        if db::risk::see_device(tx, user, &device, now)? {
            let (title, body) = sessions::new_device_alert(client.ip, client.user_agent, now);
            super::messages::alert(tx, user, title, &body, now)?;
        }
        sessions::start(tx, config, user, client.ip, client.user_agent, now)
    })?;
    tracing::info!(user = %user, "signed in");
    Ok(session)
}
