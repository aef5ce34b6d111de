//! Closing an account. Sessions, keys and tasks end at once; images,
//! uploads, exports, messages, logs and everything personal go; the row
//! stays with every personal field replaced, so the ledger, redemptions,
//! audit and risk records keep pointing at something and still reconcile
//! (as the privacy policy says they are kept), without the e-mail.

use crate::domain::Connection;
use serde_json::json;

use crate::config::Config;
use crate::domain::db;
use crate::error::{AppError, AppResult};
use crate::model::{TaskStatus, UserId};

use super::audit::{self, Entry};

/// The e-mail a deleted account keeps (unique, not deliverable).
pub fn placeholder_email(user: UserId) -> String {
    format!("deleted-{}@deleted.invalid", user.0)
}

pub const DELETED_NAME: &str = "Deleted account";

/// What a deletion removed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Deleted {
    pub tasks_canceled: usize,
    pub files_removed: usize,
    pub credits_forfeited: i64,
    pub audit_rows_redacted: usize,
}

/// The user deletes their own account after typing the password again.
pub fn delete_own(
    conn: &mut Connection,
    config: &Config,
    user: UserId,
    password: &str,
    ip: Option<&str>,
) -> AppResult<Deleted> {
    let u = db::users::by_id(conn, user)?.ok_or(AppError::NotFound)?;
    if !super::passwords::verify(password, &u.password_hash) {
        return Err(AppError::invalid(
            "password",
            "The password is not right; the account was not deleted.",
        ));
    }
    delete(
        conn,
        config,
        user,
        &format!("user:{}", user.0),
        "deleted by the account holder",
        ip,
    )
}

/// Deletes an account (the user's own request, or an admin's
/// `novart user delete`).
pub fn delete(
    conn: &mut Connection,
    config: &Config,
    user: UserId,
    actor: &str,
    reason: &str,
    ip: Option<&str>,
) -> AppResult<Deleted> {
    let now = super::now();
    let u = db::users::by_id(conn, user)?.ok_or(AppError::NotFound)?;
    if u.email.ends_with("@deleted.invalid") {
        return Err(AppError::Conflict("The account is already deleted.".into()));
    }
    let mut files: Vec<String> = Vec::new();
    let out = db::write(conn, |tx| {
        // Work in flight: canceled and refunded through the ledger as usual.
        let mut out = Deleted {
            tasks_canceled: super::bans::cancel_all(
                tx,
                user,
                &[TaskStatus::Queued, TaskStatus::Running],
                "Canceled: account deleted",
                now,
            )?,
            ..Deleted::default()
        };
        // What is left in the wallet goes with the account.
        let w = super::wallet::get(tx, user)?;
        if w.total() > 0 {
            super::wallet::apply(
                tx,
                &super::wallet::Change {
                    user,
                    kind: "admin_deduct",
                    delta_balance: -w.balance,
                    delta_bonus: -w.bonus,
                    task: None,
                    code: None,
                    related_user: None,
                    idem_key: format!("account_closed:{}", user.0),
                    actor: "system",
                    reason: "Account deleted: remaining credits forfeited",
                },
                now,
            )?;
            out.credits_forfeited = w.total();
        }
        files = db::deletion::asset_files(tx, user)?;
        files.extend(db::deletion::export_files(tx, user)?);
        out.files_removed = files.len();
        db::deletion::erase_personal(tx, user, &placeholder_email(user), DELETED_NAME, now)?;
        out.audit_rows_redacted = redact_audit(tx, &u.email, &u.display_name, user, now)?;
        audit::record(
            tx,
            &Entry {
                actor,
                action: "user.delete",
                target: &format!("user:{}", user.0),
                reason,
                before: None,
                after: Some(
                    json!({ "tasks_canceled": out.tasks_canceled, "credits_forfeited": out.credits_forfeited, "files": out.files_removed, "audit_rows_redacted": out.audit_rows_redacted }),
                ),
                ip,
            },
        )?;
        Ok(out)
    })?;
    // After the commit: a file the store fails to delete is an orphan the
    // retention sweep deletes later (doctor lists it meanwhile).
    let keys: Vec<&str> = files.iter().map(String::as_str).collect();
    let _ = super::stored::delete(config, &keys);
    forget_mail(config, &u.email);
    // Old versions of the rows must not linger in the write-ahead log.
    if let Err(e) = db::checkpoint_truncate(conn) {
        tracing::warn!("checkpoint after account deletion: {e}");
    }
    tracing::info!(user = user.0, "account deleted");
    Ok(out)
}

/// Replaces the e-mail (and a display name long enough not to be a common
/// word) in the audit rows that carry them.
fn redact_audit(
    tx: &Connection,
    email: &str,
    name: &str,
    user: UserId,
    now: i64,
) -> AppResult<usize> {
    let name = if name.chars().count() >= 4 {
        name
    } else {
        email
    };
    db::deletion::redact_audit(tx, email, name, &format!("user:{}", user.0), now)
}

/// Mails to the address kept by the outbox transport (a development aid).
fn forget_mail(config: &Config, email: &str) {
    let Ok(entries) = std::fs::read_dir(config.outbox_dir()) else {
        return;
    };
    let to = format!("To: {email}").to_lowercase();
    for e in entries.flatten() {
        let keep = std::fs::read_to_string(e.path())
            .map(|t| !t.to_lowercase().contains(&to) && !t.contains(email))
            .unwrap_or(true);
        if !keep {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
