//! Changing the e-mail address: confirmed by a link sent to the new address
//! (proof that it belongs to the user); the old address is told when the
//! change is made, and the inbox gets a security alert.

use rusqlite::{params, Connection, OptionalExtension};

use crate::db;
use crate::error::{AppError, AppResult};
use crate::mail::{Email, Mailer};
use crate::model::UserId;

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
    user: UserId,
    new_email: &str,
    password: &str,
) -> AppResult<String> {
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
        tx.execute(
            "UPDATE email_changes SET used_at = ?2 WHERE user_id = ?1 AND used_at IS NULL",
            params![user, now],
        )?;
        tx.execute(
            "INSERT INTO email_changes (user_id, new_email, token_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user, new_email, sha256_hex(&token), now, now + LINK_HOURS * 3600],
        )?;
        Ok(())
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

/// The address a link would confirm, if the link is still good.
pub fn pending(conn: &Connection, token: &str) -> AppResult<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT new_email FROM email_changes WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
            params![sha256_hex(token), super::now()],
            |r| r.get(0),
        )
        .optional()?)
}

/// Confirms a change; the old address gets a notice. Returns the new address.
pub fn confirm(conn: &mut Connection, mailer: &Mailer, token: &str) -> AppResult<String> {
    let now = super::now();
    let invalid = || {
        AppError::invalid(
            "token",
            "This link has expired or was already used. Ask for a new one in Settings.",
        )
    };
    let (user, old, new, name, lang) = db::write(conn, |tx| {
        let row: Option<(i64, i64, String)> = tx
            .query_row(
                "SELECT id, user_id, new_email FROM email_changes WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
                params![sha256_hex(token), now],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (id, user, new_email) = row.ok_or_else(invalid)?;
        let user = UserId(user);
        let u = db::users::by_id(tx, user)?.ok_or_else(invalid)?;
        tx.execute(
            "UPDATE email_changes SET used_at = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        if db::users::by_email(tx, &new_email)?.is_some() {
            return Err(AppError::Conflict(
                "That address has been taken by another account in the meantime.".into(),
            ));
        }
        tx.execute(
            "UPDATE users SET email = ?2, email_verified_at = ?3 WHERE id = ?1",
            params![user, new_email, now],
        )?;
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
