//! "Download my data": one account's data as a ZIP of a machine-readable
//! `data.json` and the images still stored. Small accounts get the file at
//! once; larger ones are built by the scheduler and announced by a message
//! with a link that expires. `novart export-user` writes the same file.

use std::io::{Seek, Write};
use std::path::PathBuf;

use crate::domain::Connection;
use serde_json::{json, Value};

use crate::config::Config;
use crate::domain::db;
use crate::error::{AppError, AppResult};
use crate::model::UserId;

/// How long a download link works.
pub const LINK_HOURS: i64 = 24;
/// Accounts with more stored files than this are exported in the background.
pub const DIRECT_MAX_FILES: usize = 40;
/// Format version of data.json.
pub const FORMAT: u32 = 1;

/// What goes into data.json: each part is the account's own rows, with
/// secrets (password hash, token and key digests, webhook secret) and other
/// people's identities left out.
const PARTS: &[(&str, &str)] = &[
    ("account", "SELECT id, email, display_name, role, email_verified_at, created_at, last_sign_in_at, password_changed_at, referral_code, registration_ip, language, referred_by IS NOT NULL AS was_referred FROM users WHERE id = ?1"),
    ("sessions", "SELECT created_at, last_seen_at, expires_at, ip, user_agent FROM sessions WHERE user_id = ?1 ORDER BY id"),
    ("tasks", "SELECT public_id AS id, status, model, prompt, negative_prompt, width, height, n, seed, webhook_url, cost, attempts, provider, error, created_at, started_at, finished_at, (SELECT prefix FROM api_keys k WHERE k.id = tasks.api_key_id) AS api_key_prefix FROM tasks WHERE user_id = ?1 ORDER BY id"),
    ("assets", "SELECT a.public_id AS id, a.kind, t.public_id AS task, a.mime, a.width, a.height, a.bytes, a.created_at, a.expires_at, a.downloads, a.published_at, a.share_id IS NOT NULL AS shared_by_link FROM assets a LEFT JOIN tasks t ON t.id = a.task_id WHERE a.user_id = ?1 ORDER BY a.id"),
    ("ledger", "SELECT l.created_at, l.kind, l.delta_balance, l.delta_bonus, l.balance_after, l.bonus_after, t.public_id AS task, c.hint AS code_hint, l.reason FROM ledger l LEFT JOIN tasks t ON t.id = l.task_id LEFT JOIN codes c ON c.id = l.code_id WHERE l.user_id = ?1 ORDER BY l.id"),
    ("redemptions", "SELECT r.created_at, c.hint AS code_hint, c.amount, c.bucket FROM redemptions r JOIN codes c ON c.id = r.code_id WHERE r.user_id = ?1 ORDER BY r.id"),
    ("referrals", "SELECT created_at AS joined_at, email_verified_at IS NOT NULL AS verified FROM users WHERE referred_by = ?1 ORDER BY id"),
    ("messages", "SELECT id, kind, title, body, created_at, read_at FROM messages WHERE user_id = ?1 ORDER BY id"),
    ("api_keys", "SELECT prefix, name, permissions, models, rpm, concurrency, daily_cap, expires_at, created_at, rotated_at, last_used_at, revoked_at FROM api_keys WHERE user_id = ?1 ORDER BY id"),
    ("limit_requests", "SELECT l.created_at, k.prefix AS api_key_prefix, l.rpm, l.concurrency, l.daily_cap, l.reason, l.status, l.decision, l.decided_at FROM limit_requests l JOIN api_keys k ON k.id = l.key_id WHERE l.user_id = ?1 ORDER BY l.id"),
    ("request_logs", "SELECT created_at, key_prefix, method, path, status, latency_ms, ip, summary, task_id, error_code FROM api_requests WHERE user_id = ?1 ORDER BY id"),
    ("webhook_deliveries", "SELECT public_id AS id, event, url, state, attempts, last_status, last_error, created_at, finished_at FROM webhook_deliveries WHERE user_id = ?1 ORDER BY id"),
    ("blocked_attempts", "SELECT created_at, ip, rule, field, prompt_sha256, excerpt FROM blocked_attempts WHERE user_id = ?1 ORDER BY id"),
    ("restrictions", "SELECT id, scope, reason, source, starts_at, ends_at, lifted_at, lift_reason FROM bans WHERE user_id = ?1 ORDER BY id"),
    ("appeals", "SELECT id, ban_id AS restriction_id, body, status, created_at, decided_at, decision_reason FROM appeals WHERE user_id = ?1 ORDER BY id"),
    ("privacy_requests", "SELECT id, kind, details, status, decision, decided_at, created_at FROM privacy_requests WHERE user_id = ?1 ORDER BY id"),
    ("email_changes", "SELECT new_email, created_at, expires_at, used_at FROM email_changes WHERE user_id = ?1 ORDER BY id"),
    ("sign_in_devices", "SELECT first_seen, last_seen FROM known_devices WHERE user_id = ?1 ORDER BY first_seen"),
];

/// The parts of data.json, in order.
pub fn part_names() -> Vec<&'static str> {
    PARTS.iter().map(|(name, _)| *name).collect()
}

/// The machine-readable document.
pub fn data(conn: &Connection, user: UserId) -> AppResult<Value> {
    let mut doc = serde_json::Map::new();
    doc.insert("format".into(), json!(FORMAT));
    doc.insert("exported_at".into(), json!(super::now()));
    for (name, sql) in PARTS {
        let mut rows = db::export::rows(conn, sql, user)?;
        let v = if *name == "account" {
            rows.pop().ok_or(AppError::NotFound)?
        } else {
            Value::Array(rows)
        };
        doc.insert((*name).into(), v);
    }
    Ok(Value::Object(doc))
}

/// The user's stored files: (name in the ZIP, storage key).
fn files(conn: &Connection, user: UserId) -> AppResult<Vec<(String, String)>> {
    let sql = "SELECT public_id, kind, path, mime FROM assets WHERE user_id = ?1 ORDER BY id";
    let mut out = Vec::new();
    for row in db::export::rows(conn, sql, user)? {
        let ext = match row["mime"].as_str().unwrap_or("") {
            "image/jpeg" => "jpg",
            "image/webp" => "webp",
            _ => "png",
        };
        let dir = if row["kind"] == "reference" {
            "uploads"
        } else {
            "images"
        };
        if let Some(key) = row["path"].as_str() {
            out.push((
                format!("{dir}/{}.{ext}", row["public_id"].as_str().unwrap_or("x")),
                key.to_string(),
            ));
        }
    }
    Ok(out)
}

const README: &str = "Novart Studio data export\n\n\
data.json holds your account, sessions, tasks with their parameters, image\n\
metadata, credit ledger, redemptions, referrals, messages, API keys (prefixes\n\
only), limit requests, API request logs, webhook deliveries, blocked prompts,\n\
restrictions and appeals. Times are unix seconds (UTC). images/ and uploads/ hold the\n\
pictures still stored when the export was made.\n";

/// Writes the ZIP; returns the number of files in it.
pub fn write_zip<W: Write + Seek>(
    conn: &Connection,
    config: &Config,
    user: UserId,
    out: W,
) -> AppResult<usize> {
    let doc = data(conn, user)?;
    let files = files(conn, user)?;
    let mut zip = zip::ZipWriter::new(out);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o644);
    zip.start_file("README.txt", opts)
        .map_err(AppError::internal)?;
    zip.write_all(README.as_bytes())
        .map_err(AppError::internal)?;
    zip.start_file("data.json", opts)
        .map_err(AppError::internal)?;
    let text = serde_json::to_vec_pretty(&doc).map_err(AppError::internal)?;
    zip.write_all(&text).map_err(AppError::internal)?;
    let mut written = 0;
    for (name, key) in &files {
        // A file swept between the listing and now is simply left out.
        let Ok(bytes) = super::stored::read(config, key) else {
            continue;
        };
        written += 1;
        zip.start_file(name.as_str(), opts)
            .map_err(AppError::internal)?;
        zip.write_all(&bytes).map_err(AppError::internal)?;
    }
    zip.finish().map_err(AppError::internal)?;
    Ok(written + 2)
}

/// What asking for an export gives.
pub enum Requested {
    /// Small enough: the ZIP itself.
    Now(Vec<u8>),
    /// Queued; a message with the link follows.
    Later,
}

/// "Download my data". At most one export is prepared at a time.
pub fn request(conn: &mut Connection, config: &Config, user: UserId) -> AppResult<Requested> {
    if files(conn, user)?.len() <= DIRECT_MAX_FILES {
        let mut buf = std::io::Cursor::new(Vec::new());
        write_zip(conn, config, user, &mut buf)?;
        return Ok(Requested::Now(buf.into_inner()));
    }
    let now = super::now();
    db::write(conn, |tx| {
        if db::export::for_user(tx, user)?
            .iter()
            .any(|e| e.status == "pending")
        {
            return Err(AppError::Conflict(
                "Your export is already being prepared; a message with the link follows.".into(),
            ));
        }
        let id = super::assets::new_public_id("exp");
        db::export::insert(tx, user, &id, now, now + LINK_HOURS * 3600)?;
        Ok(())
    })?;
    Ok(Requested::Later)
}

/// Where exports are built before they are stored (on every backend: a
/// ZIP is written to local disk first, then moved into storage).
fn build_dir(config: &Config) -> PathBuf {
    config.storage.data_dir.join("exports")
}

/// Builds the waiting exports (the scheduler calls this); returns how many.
pub fn build_pending(conn: &mut Connection, config: &Config) -> AppResult<usize> {
    // One builder at a time: the scheduler and a direct call must not both
    // take the same pending export.
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let mut done = 0;
    for ex in db::export::pending(conn, 5)? {
        let user = UserId(ex.user_id);
        let name = format!("{}.zip", ex.public_id);
        let key = format!("exports/{name}");
        let path = build_dir(config).join(&name);
        // Written to a temporary file, then stored like the images (sealed
        // chunk by chunk when encryption is on: the ZIP holds the images and
        // personal data). Memory stays small whatever the account's size.
        let tmp = path.with_extension(format!("{}.building", super::secrets::random_token(6)));
        let built = std::fs::create_dir_all(build_dir(config))
            .map_err(AppError::internal)
            .and_then(|_| std::fs::File::create(&tmp).map_err(AppError::internal))
            .and_then(|f| {
                let mut w = std::io::BufWriter::new(f);
                write_zip(conn, config, user, &mut w)?;
                w.flush().map_err(AppError::internal)
            })
            .and_then(|_| super::vault::store_large(config, &tmp, &key));
        let now = super::now();
        // Asked before the write transaction: it may be a network call.
        let bytes = built
            .as_ref()
            .ok()
            .and_then(|_| super::blobs::of(config).size(&key).ok().flatten())
            .map(|n| n as i64);
        db::write(conn, |tx| {
            match &built {
                Ok(_) => {
                    if db::export::finish(tx, ex.id, Some(&key), bytes, None, now)? {
                        db::messages::add(
                            tx,
                            user,
                            "security",
                            "Your data export is ready",
                            &format!(
                                "Download it while signed in: /settings/export/{}\n\nThe link works until {} and only for you.",
                                ex.public_id,
                                super::format_time(ex.expires_at)
                            ),
                            now,
                        )?;
                    }
                }
                Err(e) => {
                    tracing::error!(export = ex.id, "data export failed: {e}");
                    db::export::finish(
                        tx,
                        ex.id,
                        None,
                        None,
                        Some("the export could not be written"),
                        now,
                    )?;
                    db::messages::add(tx, user, "security", "Your data export failed", "The export could not be prepared. Please ask for it again; if it fails again, contact the operator.", now)?;
                }
            }
            Ok(())
        })?;
        if built.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        done += 1;
    }
    Ok(done)
}

/// The ready export behind a link (a reader that decrypts as it goes), for
/// its owner only.
pub fn download(
    conn: &Connection,
    config: &Config,
    user: UserId,
    id: &str,
) -> AppResult<super::vault::LargeReader> {
    let ex = db::export::by_public_id(conn, id)?
        .filter(|e| e.user_id == user.0)
        .ok_or(AppError::NotFound)?;
    if ex.expires_at <= super::now() {
        return Err(AppError::invalid(
            "link",
            "This download link has expired. Ask for a new export in Settings.",
        ));
    }
    match (ex.status.as_str(), &ex.file) {
        ("ready", Some(key)) => super::vault::open_large(config, key),
        ("pending", _) => Err(AppError::Conflict(
            "The export is still being prepared.".into(),
        )),
        _ => Err(AppError::NotFound),
    }
}

/// Deletes expired export files and their rows; returns how many.
pub fn sweep(db: &db::Db, config: &Config, now: i64) -> AppResult<usize> {
    let mut n = 0;
    // No connection is held while the store deletes.
    let expired = db::export::expired(&*db.get()?, now)?;
    for ex in expired {
        // A file the store fails to delete keeps its row: the next sweep
        // tries again, and the file is never left without a record.
        if let Some(key) = &ex.file {
            if super::stored::delete(config, &[key]).is_err() {
                continue;
            }
        }
        db::export::delete(&*db.get()?, ex.id)?;
        n += 1;
    }
    Ok(n)
}

/// A creator's data exports, newest first (the settings page lists them).
pub fn for_user(conn: &Connection, user: UserId) -> AppResult<Vec<db::export::Export>> {
    db::export::for_user(conn, user)
}
