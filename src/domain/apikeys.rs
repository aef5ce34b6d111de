//! API keys: creation (the secret is shown once), authentication, rotation,
//! revocation, and the per-key request rate (a sliding one-minute window kept
//! in memory; the daily cap and concurrency are counted in the database by
//! `tasks::submit`).

use std::time::{Duration, Instant};

use crate::domain::Connection;
use rand::rngs::OsRng;
use rand::Rng;

use crate::config::Config;
use crate::domain::db;
pub use crate::domain::db::api_keys::ApiKey;
use crate::error::{AppError, AppResult};
use crate::model::UserId;

use super::catalog::Catalog;
use super::secrets;

pub const GENERATE: &str = "generate";
pub const READ_TASKS: &str = "read_tasks";
pub const READ_ACCOUNT: &str = "read_account";
pub const PERMISSIONS: [&str; 3] = [GENERATE, READ_TASKS, READ_ACCOUNT];

const PREFIX_LEN: usize = 10;
/// 32 characters from 62: about 190 bits.
const SECRET_LEN: usize = 32;
const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const LOWER: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
pub const MAX_NAME_CHARS: usize = 60;

fn random_from(alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| alphabet[OsRng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// A new key: `(prefix, full key)`.
fn generate() -> (String, String) {
    let prefix = random_from(LOWER, PREFIX_LEN);
    let key = format!("nva_{prefix}_{}", random_from(ALNUM, SECRET_LEN));
    (prefix, key)
}

/// Splits `nva_<prefix>_<secret>`; None if it does not look like a key.
pub fn parse(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("nva_")?;
    let (prefix, secret) = rest.split_once('_')?;
    let ok = prefix.len() == PREFIX_LEN
        && prefix.bytes().all(|b| LOWER.contains(&b))
        && secret.len() == SECRET_LEN
        && secret.bytes().all(|b| ALNUM.contains(&b));
    ok.then_some(prefix)
}

/// What a key may do and how much.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub name: String,
    pub permissions: Vec<String>,
    /// None: every model.
    pub models: Option<Vec<String>>,
    pub rpm: u32,
    pub concurrency: u32,
    pub daily_cap: u32,
    pub expires_at: Option<i64>,
}

impl KeySpec {
    /// A key with every permission and the configured default limits.
    pub fn defaults(config: &Config, name: &str) -> KeySpec {
        KeySpec {
            name: name.to_string(),
            permissions: PERMISSIONS.iter().map(|p| p.to_string()).collect(),
            models: None,
            rpm: config.limits.key_rpm,
            concurrency: config.limits.key_concurrency,
            daily_cap: config.limits.key_daily_cap,
            expires_at: None,
        }
    }
}

/// Who sets the limits: a creator may choose up to the configured defaults;
/// an admin anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    Creator,
    Admin,
}

fn check_limit(field: &'static str, value: u32, max: Option<u32>) -> AppResult<()> {
    if value == 0 || value > 1_000_000 {
        return Err(AppError::invalid(
            field,
            "Limits are whole numbers from 1 to 1000000.",
        ));
    }
    if let Some(max) = max {
        if value > max {
            return Err(AppError::invalid(
                field,
                format!(
                    "At most {max} without approval; ask for a higher limit once the key exists."
                ),
            ));
        }
    }
    Ok(())
}

fn validate(
    config: &Config,
    catalog: &Catalog,
    spec: &mut KeySpec,
    who: Authority,
) -> AppResult<()> {
    spec.name = spec.name.trim().to_string();
    if spec.name.is_empty() || spec.name.chars().count() > MAX_NAME_CHARS {
        return Err(AppError::invalid(
            "name",
            format!("Give the key a name of 1 to {MAX_NAME_CHARS} characters."),
        ));
    }
    if spec.name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "name",
            "The name cannot contain control characters.",
        ));
    }
    spec.permissions.sort();
    spec.permissions.dedup();
    if spec.permissions.is_empty() {
        return Err(AppError::invalid(
            "permissions",
            "Choose at least one permission.",
        ));
    }
    if let Some(p) = spec
        .permissions
        .iter()
        .find(|p| !PERMISSIONS.contains(&p.as_str()))
    {
        return Err(AppError::invalid(
            "permissions",
            format!("Unknown permission {p:?}: use generate, read_tasks or read_account."),
        ));
    }
    if let Some(models) = &mut spec.models {
        models.sort();
        models.dedup();
        if models.is_empty() {
            spec.models = None;
        } else {
            for m in models.iter() {
                catalog.model(m).map_err(|e| match e {
                    AppError::Invalid { message, .. } => AppError::invalid("models", message),
                    other => other,
                })?;
            }
        }
    }
    let l = &config.limits;
    let max = |v: u32| (who == Authority::Creator).then_some(v);
    check_limit("rpm", spec.rpm, max(l.key_rpm))?;
    check_limit("concurrency", spec.concurrency, max(l.key_concurrency))?;
    check_limit("daily_cap", spec.daily_cap, max(l.key_daily_cap))?;
    if let Some(at) = spec.expires_at {
        if at <= super::now() {
            return Err(AppError::invalid(
                "expires_at",
                "The expiry must be in the future.",
            ));
        }
    }
    Ok(())
}

/// Most live keys one account may hold.
pub const MAX_KEYS: usize = 50;

/// Creates a key; returns it and the full secret (shown once, never stored).
pub fn create(
    conn: &mut Connection,
    config: &Config,
    catalog: &Catalog,
    user: UserId,
    mut spec: KeySpec,
    who: Authority,
) -> AppResult<(ApiKey, String)> {
    if who == Authority::Creator {
        super::bans::ensure(conn, user, super::bans::Action::CreateKey)?;
    }
    validate(config, catalog, &mut spec, who)?;
    let (prefix, key) = generate();
    let hash = secrets::sha256_hex(&key);
    let now = super::now();
    let id = db::write(conn, |tx| {
        let live = db::api_keys::for_user(tx, user)?
            .iter()
            .filter(|k| k.revoked_at.is_none())
            .count();
        if live >= MAX_KEYS {
            return Err(AppError::Conflict(format!(
                "An account can hold at most {MAX_KEYS} keys; revoke one first."
            )));
        }
        super::messages::alert(
            tx,
            user,
            "A new API key was created",
            &format!(
                "The API key \u{201c}{}\u{201d} (nva_{}_…) was created for your account. If this was not you, revoke it in the developer center and change your password.",
                spec.name, prefix
            ),
            now,
        )?;
        db::api_keys::insert(
            tx,
            &db::api_keys::NewKey {
                user_id: user,
                prefix: &prefix,
                key_hash: &hash,
                name: &spec.name,
                permissions: &spec.permissions,
                models: spec.models.as_deref(),
                rpm: spec.rpm,
                concurrency: spec.concurrency,
                daily_cap: spec.daily_cap,
                expires_at: spec.expires_at,
                now,
            },
        )
    })?;
    let k = db::api_keys::by_id(conn, id)?.ok_or(AppError::NotFound)?;
    tracing::info!(user = user.0, prefix = %k.prefix, "API key created");
    Ok((k, key))
}

/// Why a presented key is refused (401).
fn refused(message: &str) -> AppError {
    AppError::Unauthorized(message.to_string())
}

/// The live key behind `presented`, or 401 with a reason the caller can act on.
pub fn authenticate(conn: &Connection, presented: &str) -> AppResult<ApiKey> {
    let Some(prefix) = parse(presented) else {
        return Err(refused(
            "The API key is malformed. Keys look like nva_<prefix>_<secret>.",
        ));
    };
    let Some(key) = db::api_keys::by_prefix(conn, prefix)? else {
        return Err(refused("The API key is not valid."));
    };
    // The prefix is public; the full key decides, compared in constant time.
    if !secrets::constant_time_eq(&key.key_hash, &secrets::sha256_hex(presented)) {
        return Err(refused("The API key is not valid."));
    }
    if key.revoked_at.is_some() {
        return Err(refused("This API key was revoked."));
    }
    if key.expires_at.is_some_and(|at| at <= super::now()) {
        return Err(refused("This API key has expired."));
    }
    Ok(key)
}

/// Records use at most once a minute per key (a write per request would
/// halve the API's throughput for a timestamp).
pub fn touch(conn: &Connection, key: &ApiKey) -> AppResult<()> {
    let now = super::now();
    if key.last_used_at.is_none_or(|t| now - t >= 60) {
        db::api_keys::touch(conn, key.id, now)?;
    }
    Ok(())
}

/// One of the user's keys by prefix (another user's is not found).
pub fn own(conn: &Connection, user: UserId, prefix: &str) -> AppResult<ApiKey> {
    db::api_keys::by_prefix(conn, prefix.trim())?
        .filter(|k| k.user_id == user)
        .ok_or(AppError::NotFound)
}

pub fn revoke(conn: &mut Connection, key: &ApiKey, by: &str) -> AppResult<()> {
    let now = super::now();
    let changed = db::write(conn, |tx| db::api_keys::revoke(tx, key.id, by, now))?;
    if !changed {
        return Err(AppError::Conflict("The key was already revoked.".into()));
    }
    tracing::info!(prefix = %key.prefix, by, "API key revoked");
    Ok(())
}

/// An admin revokes someone's key: in one transaction the key stops
/// working, its owner gets a message with the reason and the audit log a
/// row. Conflict if it was revoked already.
pub fn revoke_by_admin(
    conn: &mut Connection,
    key: &ApiKey,
    actor: &str,
    reason: Option<&str>,
) -> AppResult<()> {
    let reason = match reason.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => super::bans::check_reason(r)?.to_string(),
        None => "No reason was given.".to_string(),
    };
    let now = super::now();
    db::write(conn, |tx| {
        if !db::api_keys::revoke(tx, key.id, actor, now)? {
            return Err(AppError::Conflict("The key was already revoked.".into()));
        }
        db::messages::add(
            tx,
            key.user_id,
            "security",
            "An API key was revoked",
            &format!(
                "Your API key \"{}\" ({}) was revoked by the operator and no longer works.\n\nReason: {reason}",
                key.name, key.prefix
            ),
            now,
        )?;
        let owner = super::audit::email_of(tx, key.user_id)?;
        super::audit::record(
            tx,
            &super::audit::Entry {
                actor,
                action: "keys.revoke",
                target: &owner,
                reason: &reason,
                before: None,
                after: Some(serde_json::json!({ "key": key.prefix, "name": key.name })),
                ip: None,
            },
        )
    })?;
    tracing::info!(prefix = %key.prefix, actor, "API key revoked by an admin");
    Ok(())
}

/// A new secret (and prefix) for a live key; the old one stops working now.
pub fn rotate(conn: &mut Connection, key: &ApiKey) -> AppResult<(ApiKey, String)> {
    let (prefix, secret) = generate();
    let hash = secrets::sha256_hex(&secret);
    let now = super::now();
    let changed = db::write(conn, |tx| {
        db::api_keys::rotate(tx, key.id, &prefix, &hash, now)
    })?;
    if !changed {
        return Err(AppError::Conflict(
            "A revoked key cannot be rotated.".into(),
        ));
    }
    let k = db::api_keys::by_id(conn, key.id)?.ok_or(AppError::NotFound)?;
    Ok((k, secret))
}

pub fn list(conn: &Connection, user: UserId) -> AppResult<Vec<ApiKey>> {
    db::api_keys::for_user(conn, user)
}

/// Start of the current UTC day, and seconds until the next one.
pub fn utc_day(now: i64) -> (i64, i64) {
    let start = now - now.rem_euclid(86_400);
    (start, start + 86_400 - now)
}

/// The limits `tasks::submit` checks for a task made with a key.
#[derive(Debug, Clone)]
pub struct KeyQuota {
    pub key_id: i64,
    pub concurrency: u32,
    pub daily_cap: u32,
    pub models: Option<Vec<String>>,
}

impl From<&ApiKey> for KeyQuota {
    fn from(k: &ApiKey) -> Self {
        KeyQuota {
            key_id: k.id,
            concurrency: k.concurrency,
            daily_cap: k.daily_cap,
            models: k.models.clone(),
        }
    }
}

/// Checks the key's concurrency and daily cap inside the submitting write
/// transaction, so concurrent submissions cannot overshoot.
pub fn check_quota(conn: &Connection, q: &KeyQuota, model: &str) -> AppResult<()> {
    if let Some(models) = &q.models {
        if !models.iter().any(|m| m == model) {
            return Err(AppError::Forbidden(format!(
                "This API key may not use the model {model:?}."
            )));
        }
    }
    let now = super::now();
    let (day, until_midnight) = utc_day(now);
    db::api_keys::lock_usage(conn, q.key_id)?;
    if db::api_keys::tasks_since(conn, q.key_id, day)? >= q.daily_cap {
        return Err(AppError::Quota {
            message: format!(
                "This API key's daily cap of {} tasks is used up; it resets at 00:00 UTC.",
                q.daily_cap
            ),
            code: "daily_cap_exceeded",
            limit: q.daily_cap as u64,
            reset_secs: until_midnight as u64,
        });
    }
    if db::api_keys::active_tasks(conn, q.key_id)? >= q.concurrency {
        return Err(AppError::Quota {
            message: format!(
                "This API key already has {} tasks queued or running; wait for one to finish.",
                q.concurrency
            ),
            code: "concurrency_limit_exceeded",
            limit: q.concurrency as u64,
            reset_secs: 2,
        });
    }
    Ok(())
}

pub use super::ratelimit::RateState;

/// Requests per minute per key: a sliding 60-second log, exact within this
/// process (one Novart process serves one database).
#[derive(Default)]
pub struct RateLimiter {
    windows: super::ratelimit::SlidingWindows<i64>,
}

impl RateLimiter {
    pub fn check(&self, key: i64, rpm: u32, now: Instant) -> RateState {
        self.windows
            .check(&key, rpm, Duration::from_secs(60), now, true)
    }
}

/// Every key with its owner's e-mail, newest first (the admin list).
pub fn all(conn: &Connection) -> AppResult<Vec<(ApiKey, String)>> {
    db::api_keys::all(conn)
}

/// The key whose public prefix is `prefix`, revoked or not.
pub fn by_prefix(conn: &Connection, prefix: &str) -> AppResult<Option<ApiKey>> {
    db::api_keys::by_prefix(conn, prefix)
}

/// A key's use today: tasks since the start of the UTC day, and tasks still
/// queued or running.
pub fn usage_today(conn: &Connection, key: i64) -> AppResult<(u32, u32)> {
    let (day, _) = utc_day(super::now());
    Ok((
        db::api_keys::tasks_since(conn, key, day)?,
        db::api_keys::active_tasks(conn, key)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_carry_enough_entropy() {
        let (prefix, key) = generate();
        assert_eq!(parse(&key), Some(prefix.as_str()));
        assert!(key.starts_with("nva_"));
        // 32 characters of 62 symbols: log2(62) * 32 > 190 bits.
        assert!((62f64).log2() * SECRET_LEN as f64 >= 128.0);
        assert_eq!(parse("nva_short_x"), None);
        assert_eq!(parse(&key.replace("nva_", "sk_")), None);
        assert_ne!(generate().1, generate().1);
    }

    #[test]
    fn utc_days() {
        assert_eq!(utc_day(86_400 * 3 + 5), (86_400 * 3, 86_395));
    }
}
