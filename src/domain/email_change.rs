//! Changing the e-mail address: confirmed by a link sent to the new address
//! (proof that it belongs to the user), opened in the session that asked
//! for it or with the password again (proof that the owner wants it). The
//! change voids the links mailed to the old address and ends the other
//! sessions; the old address is told, and the inbox gets a security alert.
//! A new password voids a pending change (see `recovery`).

use crate::domain::Connection;

use crate::domain::db;
use crate::error::{AppError, AppResult};
use crate::mail::{Email, Mailer};
use crate::model::Session;

use super::accounts::{deliver, normalize_email};
use super::secrets::{random_token, sha256_hex};

/// How long the confirmation link works.
pub const LINK_HOURS: i64 = 24;

/// Asks for a change: checks the password and mails a link to the new
/// address (or, when that address already has an account, a notice to it
/// instead; the page says the same either way).
pub fn request(
    conn: &mut Connection,
    mailer: &Mailer,
    session: &Session,
    new_email: &str,
    password: &str,
) -> AppResult<String> {
    let user = session.user_id;
    let u = db::users::by_id(conn, user)?.ok_or(AppError::NotFound)?;
    if !super::passwords::verify(password, &u.password_hash) {
        return Err(AppError::invalid(
            "email_password",
            "The password is not right.",
        ));
    }
    let new_email = normalize_email(new_email)?;
    if new_email.eq_ignore_ascii_case(&u.email) {
        return Err(AppError::invalid(
            "new_email",
            "That is already your address.",
        ));
    }
    if let Some(owner) = db::users::by_email(conn, &new_email)? {
        deliver(
            mailer,
            Email {
                to: new_email.clone(),
                lang: owner.lang(),
                subject: "Someone tried to use this address on Novart Studio".into(),
                template: "email_taken",
                context: tera::Context::new(),
                link: None,
            },
        );
        return Ok(new_email);
    }
    let token = random_token(32);
    let now = super::now();
    db::write(conn, |tx| {
        db::email_changes::void_all(tx, user, now)?;
        db::email_changes::insert(
            tx,
            user,
            &new_email,
            &sha256_hex(&token),
            &session.token_hash,
            now,
            now + LINK_HOURS * 3600,
        )
    })?;
    let url = format!(
        "{}/settings/email/confirm?token={token}",
        mailer.public_url()
    );
    let mut ctx = tera::Context::new();
    ctx.insert("name", &u.display_name);
    ctx.insert("link", &url);
    ctx.insert("hours", &LINK_HOURS);
    ctx.insert("new_email", &new_email);
    deliver(
        mailer,
        Email {
            to: new_email.clone(),
            lang: u.lang(),
            subject: "Confirm your new e-mail address for Novart Studio".into(),
            template: "email_change",
            context: ctx,
            link: Some(url),
        },
    );
    Ok(new_email)
}

/// How the owner shows that they want the change, besides the link.
pub enum Proof<'a> {
    /// The browser is signed in with this session (it must be the one that
    /// asked for the change).
    Session(&'a Session),
    /// The account's password, typed again.
    Password(&'a str),
    /// Neither (a signed-out browser that typed no password).
    None,
}

/// What a link would confirm, if it is still good.
pub struct PendingChange {
    pub new_email: String,
    /// The change was asked for by this session: confirming it there needs
    /// no password.
    pub asked_here: bool,
}

/// The change behind a link, as seen from `session` (if signed in).
pub fn pending(
    conn: &Connection,
    token: &str,
    session: Option<&Session>,
) -> AppResult<Option<PendingChange>> {
    Ok(
        db::email_changes::pending(conn, &sha256_hex(token), super::now())?.map(|p| {
            PendingChange {
                asked_here: asked_by(&p, session),
                new_email: p.new_email,
            }
        }),
    )
}

fn asked_by(p: &db::email_changes::Pending, session: Option<&Session>) -> bool {
    session.is_some_and(|s| {
        s.user_id == p.user && p.session_hash.as_deref() == Some(s.token_hash.as_str())
    })
}

/// Confirms a change; the old address gets a notice. Returns the new address.
/// Without the asking session, `proof` must be the password: otherwise the
/// answer is `Invalid` on the field `confirm_password`.
pub fn confirm(
    conn: &mut Connection,
    mailer: &Mailer,
    token: &str,
    proof: Proof<'_>,
) -> AppResult<String> {
    let now = super::now();
    let invalid = || {
        AppError::invalid(
            "token",
            "This link has expired or was already used. Ask for a new one in Settings.",
        )
    };
    let token_hash = sha256_hex(token);
    let p = db::email_changes::pending(conn, &token_hash, now)?.ok_or_else(invalid)?;
    let keep = match proof {
        Proof::Session(s) if asked_by(&p, Some(s)) => Some(s.id),
        Proof::Password(pw) if !pw.is_empty() => {
            let u = db::users::by_id(conn, p.user)?.ok_or_else(invalid)?;
            if !super::passwords::verify(pw, &u.password_hash) {
                return Err(AppError::invalid(
                    "confirm_password",
                    "The password is not right.",
                ));
            }
            None
        }
        _ => {
            return Err(AppError::invalid(
                "confirm_password",
                "Open the link in the browser where you asked for the change, or enter your password to confirm it.",
            ))
        }
    };
    let (user, old, new, name, lang) = db::write(conn, |tx| {
        let p = db::email_changes::pending(tx, &token_hash, now)?.ok_or_else(invalid)?;
        let user = p.user;
        let u = db::users::by_id(tx, user)?.ok_or_else(invalid)?;
        if !db::email_changes::take(tx, p.id, now)? {
            return Err(invalid());
        }
        let new_email = p.new_email;
        if db::users::by_email(tx, &new_email)?.is_some() {
            return Err(AppError::Conflict(
                "That address has been taken by another account in the meantime.".into(),
            ));
        }
        db::users::set_email(tx, user, &new_email, now)?;
        // Links mailed to the old address stop working, and so does every
        // other device.
        super::recovery::void_links(tx, user, now)?;
        super::sessions::end_all(tx, user, keep)?;
        super::messages::alert(
            tx,
            user,
            "Your e-mail address was changed",
            &format!(
                "The address of your account is now {new_email} (it was {}). If this was not you, contact the operator at once.",
                u.email
            ),
            now,
        )?;
        let lang = u.lang();
        Ok((user, u.email, new_email, u.display_name, lang))
    })?;
    let mut ctx = tera::Context::new();
    ctx.insert("name", &name);
    ctx.insert("new_email", &new);
    deliver(
        mailer,
        Email {
            to: old,
            lang,
            subject: "The e-mail address of your Novart Studio account was changed".into(),
            template: "email_changed",
            context: ctx,
            link: None,
        },
    );
    tracing::info!(user = user.0, "e-mail address changed");
    Ok(new)
}
