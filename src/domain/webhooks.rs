//! Webhooks: the per-account signing secret, the outbox row written with a
//! task's final state, Standard Webhooks signing, and what to do after each
//! delivery attempt (retry schedule with jitter, Retry-After, 3xx = failure,
//! 410 = stop).

use crate::domain::Connection;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

use crate::config::Config;
use crate::domain::db;
pub use crate::domain::db::webhooks::{Attempt, Delivery};
use crate::error::{AppError, AppResult};
use crate::model::{Task, TaskStatus, UserId};

use super::secrets;

/// A new signing secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> String {
    format!("whsec_{}", STANDARD.encode(secrets::random_bytes::<32>()))
}

/// The account's signing secret, made on first use.
pub fn secret(conn: &mut Connection, user: UserId) -> AppResult<String> {
    if let Some(s) = db::webhooks::secret(conn, user)? {
        return Ok(s);
    }
    let fresh = new_secret();
    db::write(conn, |tx| match db::webhooks::secret(tx, user)? {
        Some(s) => Ok(s),
        None => {
            db::webhooks::set_secret(tx, user, &fresh, super::now())?;
            Ok(fresh.clone())
        }
    })
}

/// Replaces the signing secret; deliveries from now on use the new one.
pub fn rotate_secret(conn: &mut Connection, user: UserId) -> AppResult<String> {
    let fresh = new_secret();
    db::write(conn, |tx| {
        db::webhooks::set_secret(tx, user, &fresh, super::now())
    })?;
    Ok(fresh)
}

/// `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">` keyed with the
/// base64-decoded part of the secret after `whsec_`.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &str) -> AppResult<String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|e| AppError::internal(format!("webhook secret is not base64: {e}")))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The event name for a task's final status.
pub fn event_for(status: TaskStatus) -> Option<&'static str> {
    match status {
        TaskStatus::Succeeded => Some("task.succeeded"),
        TaskStatus::Failed => Some("task.failed"),
        TaskStatus::Canceled => Some("task.canceled"),
        _ => None,
    }
}

/// Writes the outbox row for `task` reaching `status`, inside the caller's
/// transaction (the state change and the delivery commit together).
pub fn enqueue(tx: &Connection, task: &Task, status: TaskStatus, now: i64) -> AppResult<()> {
    let (Some(url), Some(event)) = (task.webhook_url.as_deref(), event_for(status)) else {
        return Ok(());
    };
    let id = format!("msg_{}", secrets::random_token(18));
    db::webhooks::enqueue(tx, &id, task.user_id, task.id, event, url, now)
}

/// The body sent for a delivery: `{type, timestamp, data: <task>}`.
pub fn payload(
    conn: &Connection,
    config: &Config,
    media_secret: &[u8],
    d: &db::webhooks::Delivery,
) -> AppResult<String> {
    let data = match d.task_id {
        Some(id) => match db::tasks::by_id(conn, id)? {
            Some(t) => super::tasks::present(config, media_secret, &super::tasks::view(conn, t)?),
            None => serde_json::Value::Null,
        },
        None => serde_json::Value::Null,
    };
    let timestamp = time::OffsetDateTime::from_unix_timestamp(d.created_at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    Ok(serde_json::json!({ "type": d.event, "timestamp": timestamp, "data": data }).to_string())
}

/// What came back from one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer with its status and `Retry-After` seconds, if any.
    Answered {
        status: u16,
        retry_after: Option<u64>,
    },
    /// No answer: refused by the guard, connection failure, timeout.
    NoAnswer,
}

/// The delivery's state after attempt number `attempt` (1-based): `(state,
/// next attempt time)`.
pub fn after_attempt(
    config: &Config,
    outcome: &Outcome,
    attempt: u32,
    now: i64,
) -> (&'static str, i64) {
    let w = &config.webhooks;
    match outcome {
        Outcome::Answered { status, .. } if (200..300).contains(status) => ("delivered", now),
        Outcome::Answered { status: 410, .. } => ("gone", now),
        _ if attempt >= w.attempts => ("failed", now),
        other => {
            let i = (attempt as usize - 1).min(w.retry_schedule_secs.len() - 1);
            let base = w.retry_schedule_secs[i] as i64;
            let jitter = if base >= 10 {
                rand::thread_rng().gen_range(0..=base / 10)
            } else {
                0
            };
            let mut wait = base + jitter;
            if let Outcome::Answered {
                retry_after: Some(ra),
                ..
            } = other
            {
                wait = wait.max((*ra).min(86_400) as i64);
            }
            ("pending", now + wait)
        }
    }
}

/// The user's recent deliveries.
pub fn list(conn: &Connection, user: UserId, limit: u32) -> AppResult<Vec<db::webhooks::Delivery>> {
    db::webhooks::for_user(conn, user, limit.clamp(1, 500))
}

/// Sends one of the user's deliveries again (same id and body).
pub fn redeliver(conn: &mut Connection, user: UserId, public_id: &str) -> AppResult<()> {
    let d = db::webhooks::by_public_id(conn, user, public_id)?.ok_or(AppError::NotFound)?;
    let now = super::now();
    let changed = db::write(conn, |tx| db::webhooks::redeliver(tx, d.id, now))?;
    if !changed {
        return Err(AppError::Conflict(
            "This delivery is still being sent.".into(),
        ));
    }
    Ok(())
}

// ---- the delivery job's bookkeeping ----

/// Takes up to `batch` due deliveries for this pass, leased until `lease`
/// so no other pass (or node) sends them meanwhile.
pub fn claim_due(
    conn: &mut Connection,
    now: i64,
    lease: i64,
    batch: u32,
) -> AppResult<Vec<Delivery>> {
    db::write(conn, |tx| db::webhooks::claim_due(tx, now, lease, batch))
}

/// The body a delivery sends: built and frozen at its first attempt, so
/// every retry sends the same bytes under the same signature.
pub fn body_for(
    conn: &mut Connection,
    config: &Config,
    media_secret: &[u8],
    d: &Delivery,
) -> AppResult<String> {
    if let Some(p) = &d.payload {
        return Ok(p.clone());
    }
    let p = payload(conn, config, media_secret, d)?;
    db::write(conn, |tx| db::webhooks::set_payload(tx, d.id, &p))?;
    // Another pass may have frozen it first: send what is stored.
    Ok(db::webhooks::by_id(conn, d.id)?
        .and_then(|x| x.payload)
        .unwrap_or(p))
}

/// Records attempt number `d.attempts + 1` and what follows from it (the
/// next try, or delivered, gone or failed). Returns the new state.
pub fn record_attempt(
    conn: &mut Connection,
    config: &Config,
    d: &Delivery,
    attempt: &Attempt<'_>,
    outcome: &Outcome,
    now: i64,
) -> AppResult<&'static str> {
    let (state, next) = after_attempt(config, outcome, d.attempts + 1, now);
    db::write(conn, |tx| {
        db::webhooks::record_attempt(tx, d.id, attempt, now)?;
        db::webhooks::finish_attempt(tx, d.id, state, next, attempt.status, attempt.error, now)
    })?;
    Ok(state)
}

/// A delivery's attempts, oldest first: status, latency, error and the
/// start of the receiver's answer.
pub fn attempts(conn: &Connection, delivery: i64) -> AppResult<Vec<db::webhooks::AttemptRow>> {
    db::webhooks::attempts(conn, delivery)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_test_vector() {
        let sig = sign(
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            r#"{"email":"test@example.com","username":"test_user"}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn retries_follow_the_schedule_and_stop() {
        let mut c = Config::default();
        c.webhooks.attempts = 3;
        c.webhooks.retry_schedule_secs = vec![5, 300];
        let fail = Outcome::Answered {
            status: 500,
            retry_after: None,
        };
        assert_eq!(after_attempt(&c, &fail, 1, 0), ("pending", 5));
        let (state, at) = after_attempt(&c, &fail, 2, 0);
        assert_eq!(state, "pending");
        assert!((300..=330).contains(&at), "{at}");
        assert_eq!(after_attempt(&c, &fail, 3, 0).0, "failed");
        let ok = Outcome::Answered {
            status: 204,
            retry_after: None,
        };
        assert_eq!(after_attempt(&c, &ok, 1, 0).0, "delivered");
        let redirect = Outcome::Answered {
            status: 302,
            retry_after: None,
        };
        assert_eq!(after_attempt(&c, &redirect, 1, 0).0, "pending");
        let gone = Outcome::Answered {
            status: 410,
            retry_after: None,
        };
        assert_eq!(after_attempt(&c, &gone, 1, 0).0, "gone");
        let busy = Outcome::Answered {
            status: 429,
            retry_after: Some(120),
        };
        assert_eq!(after_attempt(&c, &busy, 1, 0), ("pending", 120));
    }
}
