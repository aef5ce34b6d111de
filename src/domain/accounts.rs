//! Accounts: registration, e-mail verification, sign-in, password reset and
//! change, profile, and the admin operations the CLI offers.
//!
//! Answers never tell an outsider whether an address is registered: sign-in
//! failures look the same (with a dummy bcrypt verify for unknown addresses),
//! and "resend verification" / "forgot password" always say the same thing.

use crate::domain::Connection;

use crate::config::Config;
use crate::domain::db;
use crate::error::{AppError, AppResult};
use crate::mail::{Email, Mailer};
use crate::model::{Client, Role, TokenPurpose, User, UserId};

use super::passwords;

pub use super::account_admin::{send_reset_by_admin, set_password_by_admin};
use super::secrets::{random_token, readable_code, sha256_hex};
use super::sessions::{self, NewSession};

pub const MAX_DISPLAY_NAME: usize = 40;
pub const MAX_EMAIL: usize = 254;

/// Trims and checks an e-mail address; the error names the `email` field.
pub fn normalize_email(email: &str) -> AppResult<String> {
    let email = email.trim();
    if email.is_empty() {
        return Err(AppError::invalid("email", "Enter your e-mail address."));
    }
    let valid = email.len() <= MAX_EMAIL
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.parse::<lettre::Address>().is_ok();
    if !valid {
        return Err(AppError::invalid(
            "email",
            "This does not look like an e-mail address (name@example.com).",
        ));
    }
    Ok(email.to_string())
}

/// Trims and checks a display name; empty falls back to `fallback`.
pub fn normalize_display_name(name: &str, fallback: &str) -> AppResult<String> {
    let name = name.trim();
    let name = if name.is_empty() {
        fallback.trim()
    } else {
        name
    };
    if name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "display_name",
            "The display name has characters that cannot be shown.",
        ));
    }
    if name.chars().count() > MAX_DISPLAY_NAME {
        return Err(AppError::invalid(
            "display_name",
            format!("Use at most {MAX_DISPLAY_NAME} characters for your display name."),
        ));
    }
    if name.is_empty() {
        return Err(AppError::invalid("display_name", "Enter a display name."));
    }
    Ok(name.to_string())
}

fn email_local_part(email: &str) -> &str {
    email.split('@').next().unwrap_or(email)
}

fn new_referral_code(conn: &Connection) -> AppResult<String> {
    loop {
        let code = readable_code(8);
        if !db::users::referral_code_taken(conn, &code)? {
            return Ok(code);
        }
    }
}

/// Sends a message; a failure is logged rather than returned, so that what a
/// visitor sees never depends on whether mail went out for an address (that
/// would tell which addresses have accounts). Returns whether it was sent.
pub(super) fn deliver(mailer: &Mailer, email: Email) -> bool {
    let (to, subject) = (email.to.clone(), email.subject.clone());
    match mailer.send(email) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(to = %to, subject = %subject, "e-mail not delivered: {e}");
            false
        }
    }
}

/// What registration needs from the form.
pub struct Registration<'a> {
    pub email: &'a str,
    pub password: &'a str,
    pub display_name: &'a str,
    pub referral_code: Option<&'a str>,
    /// The page's language, kept as the account's language.
    pub language: Option<crate::i18n::Lang>,
}

#[derive(Debug)]
pub enum Registered {
    /// A new account. If verification is required, a link was e-mailed.
    Created(User),
    /// The address already has an account; its owner was told by e-mail.
    /// Shown to the visitor exactly like `Created` when verification is on.
    AlreadyRegistered,
}

/// Public sign-up from /register.
pub fn register(
    conn: &mut Connection,
    config: &Config,
    mailer: &Mailer,
    input: Registration<'_>,
    client: &Client<'_>,
) -> AppResult<Registered> {
    check_registration(config, &input)?;
    let hash = passwords::hash(input.password, config.auth.bcrypt_cost)?;
    register_hashed(conn, config, mailer, input, &hash, client)
}

/// The checks of a registration that need neither the database nor bcrypt
/// (run them first).
pub fn check_registration(config: &Config, input: &Registration<'_>) -> AppResult<()> {
    if !config.registration.open {
        return Err(AppError::Forbidden(
            "Registration is closed on this studio. Ask its operator for an account.".into(),
        ));
    }
    let email = normalize_email(input.email)?;
    normalize_display_name(input.display_name, email_local_part(&email))?;
    passwords::check_new(input.password, &email)
}

/// `register` with the password hashed already (by the caller, with no
/// database connection held).
pub fn register_hashed(
    conn: &mut Connection,
    config: &Config,
    mailer: &Mailer,
    input: Registration<'_>,
    hash: &str,
    client: &Client<'_>,
) -> AppResult<Registered> {
    check_registration(config, &input)?;
    let email = normalize_email(input.email)?;
    let display_name = normalize_display_name(input.display_name, email_local_part(&email))?;
    let referred_by = match input.referral_code.map(str::trim).filter(|c| !c.is_empty()) {
        None => None,
        Some(code) => Some(db::users::by_referral_code(conn, code)?.ok_or_else(|| {
            AppError::invalid(
                "ref",
                "No account has this referral code. Check it, or leave the field empty.",
            )
        })?),
    };
    let now = super::now();
    let verify = config.registration.require_email_verification;
    let created = db::write(conn, |tx| {
        let code = new_referral_code(tx)?;
        let id = db::users::insert(
            tx,
            &db::users::NewUser {
                email: &email,
                display_name: &display_name,
                password_hash: hash,
                role: Role::User,
                verified_at: (!verify).then_some(now),
                referral_code: &code,
                referred_by,
                registration_ip: client.ip,
                now,
            },
        )?;
        match id {
            Some(id) => {
                if let Some(lang) = input.language {
                    db::users::set_language(tx, id, Some(lang.code()))?;
                }
                super::wallet::signup_bonus(tx, id, config.billing.signup_bonus, now)?;
                Ok(db::users::by_id(tx, id)?)
            }
            None => Ok(None),
        }
    })?;
    match created {
        Some(user) => {
            tracing::info!(user = %user.id, "account registered");
            if verify {
                send_verification(conn, config, mailer, &user)?;
            }
            Ok(Registered::Created(user))
        }
        None => {
            if let Some(existing) = db::users::by_email(conn, &email)? {
                let mut ctx = tera::Context::new();
                ctx.insert("name", &existing.display_name);
                ctx.insert("verified", &existing.is_verified());
                deliver(
                    mailer,
                    Email {
                        to: existing.email.clone(),
                        lang: existing.lang(),
                        subject: "Someone tried to register with your e-mail address".into(),
                        template: "already_registered",
                        context: ctx,
                        link: None,
                    },
                );
            }
            Ok(Registered::AlreadyRegistered)
        }
    }
}

/// A one-time link to e-mail: what it is for and how it is worded.
struct LinkMail {
    purpose: TokenPurpose,
    /// Path the link opens, e.g. "/verify".
    path: &'static str,
    ttl_secs: i64,
    subject: &'static str,
    template: &'static str,
}

/// Issues a fresh single-use link (voiding older ones of the same purpose),
/// stores only its digest, and mails it. Returns whether the mail went out.
fn send_link(
    conn: &mut Connection,
    mailer: &Mailer,
    user: &User,
    link: LinkMail,
    mut ctx: tera::Context,
) -> AppResult<bool> {
    let token = random_token(32);
    let now = super::now();
    db::write(conn, |tx| {
        db::tokens::void_all(tx, user.id, link.purpose, now)?;
        db::tokens::insert(
            tx,
            user.id,
            link.purpose,
            &sha256_hex(&token),
            now,
            now + link.ttl_secs,
        )
    })?;
    let url = format!("{}{}?token={token}", mailer.public_url(), link.path);
    ctx.insert("name", &user.display_name);
    ctx.insert("link", &url);
    Ok(deliver(
        mailer,
        Email {
            to: user.email.clone(),
            lang: user.lang(),
            subject: link.subject.into(),
            template: link.template,
            context: ctx,
            link: Some(url),
        },
    ))
}

/// Issues a fresh verification link (older ones stop working) and mails it.
fn send_verification(
    conn: &mut Connection,
    config: &Config,
    mailer: &Mailer,
    user: &User,
) -> AppResult<bool> {
    let hours = config.auth.verification_link_hours;
    let mut ctx = tera::Context::new();
    ctx.insert("hours", &hours);
    let link = LinkMail {
        purpose: TokenPurpose::VerifyEmail,
        path: "/verify",
        ttl_secs: hours as i64 * 3600,
        subject: "Confirm your e-mail address for Novart Studio",
        template: "verify",
    };
    send_link(conn, mailer, user, link, ctx)
}

/// "Resend the verification e-mail": does nothing visible for unknown or
/// already verified addresses.
pub fn resend_verification(
    conn: &mut Connection,
    config: &Config,
    mailer: &Mailer,
    email: &str,
) -> AppResult<()> {
    let email = normalize_email(email)?;
    if let Some(user) = db::users::by_email(conn, &email)? {
        if !user.is_verified() {
            send_verification(conn, config, mailer, &user)?;
        }
    }
    Ok(())
}

const BAD_LINK: &str = "This link is not valid: it may have been used already, replaced by a newer one, or expired. Ask for a new one below.";

/// Whether a verification or reset link is still usable (without using it).
pub fn link_is_valid(conn: &Connection, purpose: TokenPurpose, token: &str) -> AppResult<bool> {
    Ok(token.len() <= 100
        && db::tokens::peek(conn, purpose, &sha256_hex(token), super::now())?.is_some())
}

/// Confirms an e-mail address with the token from the link (single use).
pub fn verify_email(conn: &mut Connection, config: &Config, token: &str) -> AppResult<User> {
    let now = super::now();
    let user = db::write(conn, |tx| {
        let id = db::tokens::consume(tx, TokenPurpose::VerifyEmail, &sha256_hex(token), now)?
            .ok_or_else(|| AppError::invalid("token", BAD_LINK))?;
        db::users::set_verified(tx, id, now)?;
        super::referrals::on_event(
            tx,
            config,
            id,
            crate::config::ReferralTrigger::Verification,
            now,
        )?;
        db::users::by_id(tx, id)?.ok_or(AppError::NotFound)
    })?;
    tracing::info!(user = %user.id, "e-mail verified");
    Ok(user)
}

pub use super::sign_in::{
    open_session, sign_in_account, sign_in_check, sign_in_finish, SignInError, BAD_CREDENTIALS,
};

/// "Forgot password": mails a reset link if the account exists; the caller
/// shows the same answer either way.
pub fn request_password_reset(
    conn: &mut Connection,
    config: &Config,
    mailer: &Mailer,
    email: &str,
) -> AppResult<()> {
    let email = normalize_email(email)?;
    let Some(user) = db::users::by_email(conn, &email)? else {
        return Ok(());
    };
    send_reset_link(conn, config, mailer, &user)?;
    Ok(())
}

pub(crate) fn send_reset_link(
    conn: &mut Connection,
    config: &Config,
    mailer: &Mailer,
    user: &User,
) -> AppResult<bool> {
    let minutes = config.auth.reset_link_minutes;
    let mut ctx = tera::Context::new();
    ctx.insert("minutes", &minutes);
    let link = LinkMail {
        purpose: TokenPurpose::ResetPassword,
        path: "/reset",
        ttl_secs: minutes as i64 * 60,
        subject: "Reset your Novart Studio password",
        template: "reset",
    };
    send_link(conn, mailer, user, link, ctx)
}

pub(crate) fn notify_password_changed(mailer: &Mailer, user: &User) {
    let mut ctx = tera::Context::new();
    ctx.insert("name", &user.display_name);
    deliver(
        mailer,
        Email {
            to: user.email.clone(),
            lang: user.lang(),
            subject: "Your Novart Studio password was changed".into(),
            template: "password_changed",
            context: ctx,
            link: None,
        },
    );
}

/// Sets a new password from a reset link: the link is used up, every session
/// ends, and the address counts as verified (the link proved it).
pub fn reset_password(
    conn: &mut Connection,
    config: &Config,
    mailer: &Mailer,
    token: &str,
    new_password: &str,
) -> AppResult<User> {
    let user = reset_target(conn, token, new_password)?;
    let hash = passwords::hash(new_password, config.auth.bcrypt_cost)?;
    reset_password_hashed(conn, mailer, token, &user, &hash)
}

/// The account a reset link is for, if the link is good and the new
/// password acceptable (cheap: no bcrypt).
pub fn reset_target(conn: &Connection, token: &str, new_password: &str) -> AppResult<User> {
    let user_id = db::tokens::peek(
        conn,
        TokenPurpose::ResetPassword,
        &sha256_hex(token),
        super::now(),
    )?
    .ok_or_else(|| AppError::invalid("token", BAD_LINK))?;
    let user = db::users::by_id(conn, user_id)?.ok_or(AppError::NotFound)?;
    passwords::check_new(new_password, &user.email)?;
    Ok(user)
}

/// `reset_password` with the new password hashed already (by the caller,
/// with no database connection held): the link is used up in the same
/// write.
pub fn reset_password_hashed(
    conn: &mut Connection,
    mailer: &Mailer,
    token: &str,
    user: &User,
    hash: &str,
) -> AppResult<User> {
    let now = super::now();
    let user_id = user.id;
    db::write(conn, |tx| {
        db::tokens::consume(tx, TokenPurpose::ResetPassword, &sha256_hex(token), now)?
            .filter(|id| *id == user_id)
            .ok_or_else(|| AppError::invalid("token", BAD_LINK))?;
        db::users::set_verified(tx, user_id, now)?;
        super::recovery::password_replaced(tx, user_id, hash, None, now)
    })?;
    tracing::info!(user = %user.id, "password reset by e-mail link");
    notify_password_changed(mailer, user);
    Ok(user.clone())
}

/// Changes the password from settings: checks the current one, ends every
/// other session and replaces the current one (the returned session).
pub fn change_password(
    conn: &mut Connection,
    config: &Config,
    mailer: &Mailer,
    user: &User,
    current_password: &str,
    new_password: &str,
    client: &Client<'_>,
) -> AppResult<NewSession> {
    let hash = new_password_hash(config, user, current_password, new_password)?;
    change_password_hashed(conn, config, mailer, user, &hash, client)
}

/// The checks of a password change and the new hash: bcrypt twice, so
/// called with no database connection held.
pub fn new_password_hash(
    config: &Config,
    user: &User,
    current_password: &str,
    new_password: &str,
) -> AppResult<String> {
    passwords::check_new(new_password, &user.email)?;
    if new_password == current_password {
        return Err(AppError::invalid(
            "password",
            "The new password is the same as the current one.",
        ));
    }
    if !passwords::verify(current_password, &user.password_hash) {
        return Err(AppError::invalid(
            "current_password",
            "Your current password is not right.",
        ));
    }
    passwords::hash(new_password, config.auth.bcrypt_cost)
}

/// Puts a checked new password in force (`new_password_hash`).
pub fn change_password_hashed(
    conn: &mut Connection,
    config: &Config,
    mailer: &Mailer,
    user: &User,
    hash: &str,
    client: &Client<'_>,
) -> AppResult<NewSession> {
    let now = super::now();
    let session = db::write(conn, |tx| {
        super::recovery::password_replaced(tx, user.id, hash, None, now)?;
        sessions::start(tx, config, user.id, client.ip, client.user_agent, now)
    })?;
    tracing::info!(user = %user.id, "password changed");
    notify_password_changed(mailer, user);
    Ok(session)
}

pub fn update_display_name(
    conn: &mut Connection,
    user: &User,
    display_name: &str,
) -> AppResult<String> {
    let name = normalize_display_name(display_name, "")?;
    db::write(conn, |tx| db::users::set_display_name(tx, user.id, &name))?;
    Ok(name)
}

// ---- admin operations (CLI) ----

pub fn find(conn: &Connection, email: &str) -> AppResult<User> {
    db::users::by_email(conn, email.trim())?.ok_or(AppError::NotFound)
}

pub fn list(conn: &Connection) -> AppResult<Vec<User>> {
    db::users::list(conn)
}

/// Creates an account directly (no registration rules about openness, no
/// e-mail); `verified` marks the address confirmed.
pub fn create_by_admin(
    conn: &mut Connection,
    config: &Config,
    email: &str,
    password: &str,
    display_name: &str,
    role: Role,
    verified: bool,
) -> AppResult<User> {
    let email = normalize_email(email)?;
    let display_name = normalize_display_name(display_name, email_local_part(&email))?;
    passwords::check_new(password, &email)?;
    let hash = passwords::hash(password, config.auth.bcrypt_cost)?;
    let now = super::now();
    db::write(conn, |tx| {
        let code = new_referral_code(tx)?;
        let id = db::users::insert(
            tx,
            &db::users::NewUser {
                email: &email,
                display_name: &display_name,
                password_hash: &hash,
                role,
                verified_at: verified.then_some(now),
                referral_code: &code,
                referred_by: None,
                registration_ip: None,
                now,
            },
        )?
        .ok_or_else(|| {
            AppError::Conflict(format!("an account with e-mail {email} already exists"))
        })?;
        super::wallet::signup_bonus(tx, id, config.billing.signup_bonus, now)?;
        db::users::by_id(tx, id)?.ok_or(AppError::NotFound)
    })
}

pub fn mark_verified(conn: &mut Connection, email: &str) -> AppResult<User> {
    let user = find(conn, email)?;
    db::write(conn, |tx| {
        db::users::set_verified(tx, user.id, super::now())
    })?;
    find(conn, email)
}

pub fn set_role(conn: &mut Connection, email: &str, role: Role) -> AppResult<User> {
    let user = find(conn, email)?;
    db::write(conn, |tx| db::users::set_role(tx, user.id, role))?;
    find(conn, email)
}

pub fn by_id(conn: &Connection, id: UserId) -> AppResult<User> {
    db::users::by_id(conn, id)?.ok_or(AppError::NotFound)
}
