//! SQL for deleting an account: what goes, what is blanked, and the
//! narrowly allowed redaction of the audit log.

use super::sql::{params, Connection};

use crate::error::AppResult;
use crate::model::UserId;

/// Deletes the user's image rows; returns their files (relative paths).
pub fn asset_files(tx: &Connection, user: UserId) -> AppResult<Vec<String>> {
    let mut stmt = tx.prepare("SELECT path, preview_path FROM assets WHERE user_id = ?1")?;
    let mut files = Vec::new();
    let rows = stmt.query_map([user], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
    })?;
    for row in rows {
        let (path, preview) = row?;
        files.push(path);
        files.extend(preview);
    }
    tx.prepare_cached("DELETE FROM assets WHERE user_id = ?1")?
        .execute([user])?;
    Ok(files)
}

/// Deletes the user's export rows; returns their files.
pub fn export_files(tx: &Connection, user: UserId) -> AppResult<Vec<String>> {
    let mut stmt =
        tx.prepare("SELECT file FROM exports WHERE user_id = ?1 AND file IS NOT NULL")?;
    let files = stmt
        .query_map([user], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    tx.prepare_cached("DELETE FROM exports WHERE user_id = ?1")?
        .execute([user])?;
    Ok(files)
}

/// Removes or blanks every personal row and field of the account. Kept:
/// the user row (anonymised), tasks (without prompts or URLs), the ledger,
/// redemptions, bans, appeals (without their text) and blocked attempts,
/// revoked API keys (prefix only).
pub fn erase_personal(
    tx: &Connection,
    user: UserId,
    email: &str,
    name: &str,
    now: i64,
) -> AppResult<()> {
    for table in [
        "sessions",
        "auth_tokens",
        "known_devices",
        "messages",
        "api_requests",
        "webhook_deliveries",
        "webhook_secrets",
        "idempotency",
        "limit_requests",
        "redeem_failures",
        "email_changes",
    ] {
        tx.execute(&format!("DELETE FROM {table} WHERE user_id = ?1"), [user])?;
    }
    tx.prepare_cached(
        "UPDATE api_keys SET name = '', models = NULL, revoked_at = coalesce(revoked_at, ?2),
         revoked_by = coalesce(revoked_by, 'account deleted') WHERE user_id = ?1",
    )?
    .execute(params![user, now])?;
    // The requests stay as a record that they were answered; their text goes.
    tx.prepare_cached("UPDATE privacy_requests SET details = '' WHERE user_id = ?1")?
        .execute([user])?;
    tx.prepare_cached("UPDATE appeals SET body = '' WHERE user_id = ?1")?
        .execute([user])?;
    tx.prepare_cached("UPDATE tasks SET prompt = '', negative_prompt = '', webhook_url = NULL, error_raw = NULL WHERE user_id = ?1")?
            .execute([user],
    )?;
    let code = format!("deleted{}", user.0);
    tx.prepare_cached("UPDATE users SET email = ?2, display_name = ?3, password_hash = '!', email_verified_at = NULL,
         last_sign_in_at = NULL, registration_ip = NULL, language = NULL, referral_code = ?4, deleted_at = ?5 WHERE id = ?1")?
            .execute(params![user, email, name, code, now],
    )?;
    Ok(())
}

/// Replaces `a` and `b` (the e-mail and the display name) with `with` in
/// the audit rows that contain either (the one update the audit log's
/// trigger allows, once per row). Returns the rows changed.
pub fn redact_audit(tx: &Connection, a: &str, b: &str, with: &str, now: i64) -> AppResult<usize> {
    Ok(tx
        .prepare_cached(
            "UPDATE audit_log SET
            target = replace(replace(target, ?1, ?3), ?2, ?3),
            reason = replace(replace(reason, ?1, ?3), ?2, ?3),
            before = replace(replace(before, ?1, ?3), ?2, ?3),
            after = replace(replace(after, ?1, ?3), ?2, ?3),
            redacted_at = ?4
         WHERE redacted_at IS NULL AND (
            instr(target || reason || coalesce(before, '') || coalesce(after, ''), ?1) > 0
            OR instr(target || reason || coalesce(before, '') || coalesce(after, ''), ?2) > 0)",
        )?
        .execute(params![a, b, with, now])?)
}
