//! Sign-in sessions: a random 256-bit token in the browser's cookie, only its
//! SHA-256 digest in the database; idle and absolute lifetimes.

use crate::domain::Connection;

use crate::config::Config;
use crate::domain::db;
use crate::error::AppResult;
use crate::model::{Session, SessionId, User, UserId};

use super::secrets::{random_token, sha256_hex};

/// last_seen_at is written at most this often, to keep page views read-only.
const TOUCH_EVERY_SECS: i64 = 60;

/// A session just started: `token` goes into the cookie and nowhere else.
pub struct NewSession {
    pub id: SessionId,
    pub token: String,
    pub max_age_secs: i64,
}

pub fn idle_secs(config: &Config) -> i64 {
    config.auth.session_idle_hours as i64 * 3600
}

pub fn absolute_secs(config: &Config) -> i64 {
    config.auth.session_absolute_hours as i64 * 3600
}

/// Identifies where a sign-in came from: the IP address and the browser
/// (its user agent without version numbers, so an update is not a new
/// device). Stored only as this digest.
pub fn device_hash(ip: Option<&str>, user_agent: Option<&str>) -> String {
    let ua: String = user_agent
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .collect();
    sha256_hex(&format!("{}\n{ua}", ip.unwrap_or("")))
}

/// The inbox alert for a sign-in from an address or browser not seen before.
/// A browser's User-Agent as people name it: ("Firefox", "Linux"). Either
/// part is None when it cannot be told.
pub fn device_name(user_agent: &str) -> (Option<&'static str>, Option<&'static str>) {
    let ua = user_agent;
    let has = |s: &str| ua.contains(s);
    let browser = if has("Edg/") || has("EdgA/") || has("EdgiOS/") {
        Some("Edge")
    } else if has("OPR/") || has("Opera") {
        Some("Opera")
    } else if has("SamsungBrowser/") {
        Some("Samsung Internet")
    } else if has("Firefox/") || has("FxiOS/") {
        Some("Firefox")
    } else if has("CriOS/") || has("Chrome/") {
        Some(if has("Chromium/") {
            "Chromium"
        } else {
            "Chrome"
        })
    } else if has("Safari/") && has("Version/") {
        Some("Safari")
    } else if ua.starts_with("curl/") {
        Some("curl")
    } else if ua.starts_with("python-requests/") || ua.starts_with("Python-urllib/") {
        Some("Python")
    } else {
        None
    };
    let os = if has("iPhone") || has("iPad") || has("iPod") {
        Some("iOS")
    } else if has("Android") {
        Some("Android")
    } else if has("CrOS") {
        Some("ChromeOS")
    } else if has("Windows") {
        Some("Windows")
    } else if has("Mac OS X") || has("Macintosh") {
        Some("macOS")
    } else if has("Linux") || has("X11") {
        Some("Linux")
    } else {
        None
    };
    (browser, os)
}

pub fn new_device_alert(
    ip: Option<&str>,
    user_agent: Option<&str>,
    now: i64,
) -> (&'static str, String) {
    let ua: String = match user_agent.map(|ua| (ua, device_name(ua))) {
        Some((_, (Some(b), Some(os)))) => format!("{b} on {os}"),
        Some((raw, _)) => raw.chars().take(160).collect(),
        None => "an unknown browser".into(),
    };
    (
        "New sign-in to your account",
        format!(
            "Your account was signed in to at {} from {} ({}), which it had not been signed in from before.\n\nIf this was you, there is nothing to do. If not, change your password now: that signs out every other session.",
            super::format_time(now),
            ip.unwrap_or("an unknown address"),
            ua
        ),
    )
}

/// Starts a session inside the caller's write transaction.
pub fn start(
    tx: &Connection,
    config: &Config,
    user: UserId,
    ip: Option<&str>,
    user_agent: Option<&str>,
    now: i64,
) -> AppResult<NewSession> {
    let token = random_token(32);
    let max_age_secs = absolute_secs(config);
    let ua = user_agent.map(|u| u.chars().take(300).collect::<String>());
    let id = db::sessions::insert(
        tx,
        user,
        &sha256_hex(&token),
        ip,
        ua.as_deref(),
        now,
        now + max_age_secs,
    )?;
    Ok(NewSession {
        id,
        token,
        max_age_secs,
    })
}

/// The signed-in user behind a cookie token, if the session is alive.
/// An expired session is deleted on sight.
pub fn authenticate(
    conn: &Connection,
    config: &Config,
    token: &str,
    ip: Option<&str>,
    now: i64,
) -> AppResult<Option<(User, Session)>> {
    if token.len() > 100 {
        return Ok(None);
    }
    let Some(session) = db::sessions::by_token_hash(conn, &sha256_hex(token))? else {
        return Ok(None);
    };
    if session.expires_at <= now || session.last_seen_at + idle_secs(config) <= now {
        db::sessions::delete(conn, session.id)?;
        return Ok(None);
    }
    let Some(user) = db::users::by_id(conn, session.user_id)? else {
        return Ok(None);
    };
    if now - session.last_seen_at >= TOUCH_EVERY_SECS {
        db::sessions::touch(conn, session.id, now, ip)?;
    }
    Ok(Some((user, session)))
}

/// Whether a session seen earlier (by a long-lived request such as the live
/// stream) still stands: not ended (sign-out, password change or reset, the
/// session list, a ban, the account's deletion) and not past its lifetime.
pub fn still_alive(conn: &Connection, session: &Session, now: i64) -> AppResult<bool> {
    Ok(db::sessions::by_token_hash(conn, &session.token_hash)?
        .is_some_and(|s| s.id == session.id && s.expires_at > now))
}

pub fn end(conn: &Connection, id: SessionId) -> AppResult<()> {
    db::sessions::delete(conn, id)
}

/// Ends one of the user's own sessions; false if it was not theirs.
pub fn end_one(conn: &Connection, user: UserId, id: SessionId) -> AppResult<bool> {
    db::sessions::delete_for_user(conn, user, id)
}

/// Ends every session of the user except `keep`.
pub fn end_all(conn: &Connection, user: UserId, keep: Option<SessionId>) -> AppResult<usize> {
    db::sessions::delete_all_for_user(conn, user, keep)
}

pub fn list(conn: &Connection, user: UserId) -> AppResult<Vec<Session>> {
    db::sessions::list_for_user(conn, user)
}

/// Deletes sessions past either lifetime and stale e-mail links.
pub fn sweep(conn: &Connection, config: &Config, now: i64) -> AppResult<usize> {
    let n = db::sessions::delete_expired(conn, now, idle_secs(config))?;
    db::tokens::delete_stale(conn, now - 7 * 24 * 3600)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::device_name;

    #[test]
    fn browsers_are_named_as_people_name_them() {
        for (ua, want) in [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", (Some("Firefox"), Some("Linux"))),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", (Some("Chrome"), Some("Windows"))),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", (Some("Edge"), Some("Windows"))),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15", (Some("Safari"), Some("macOS"))),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", (Some("Safari"), Some("iOS"))),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", (Some("Chrome"), Some("Android"))),
            ("Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", (Some("Samsung Internet"), Some("Android"))),
            ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", (Some("Chrome"), Some("ChromeOS"))),
            ("curl/8.5.0", (Some("curl"), None)),
            ("something else", (None, None)),
        ] {
            assert_eq!(device_name(ua), want, "{ua}");
        }
    }
}
