//! Referral rewards: whoever invited an account (`/register?ref=CODE`) gets
//! `billing.referral_reward` bonus credits when that account first redeems a
//! paid code (or confirms its e-mail, per `referral_trigger`). Once per
//! invitee (the ledger's idempotency key), never for an account registered
//! from the referrer's own IP, and at most `referral_daily_ip_cap` rewarded
//! invitees per registration IP per day.

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use crate::config::{Config, ReferralTrigger};
use crate::domain::db;
use crate::error::AppResult;
use crate::model::UserId;

use super::wallet::{self, Change};

/// "ada@example.com" → "a**@example.com".
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!(
                "{first}{}@{domain}",
                "*".repeat(local.chars().count().saturating_sub(1).clamp(2, 6))
            )
        }
        None => "***".into(),
    }
}

fn key(invitee: UserId) -> String {
    format!("referral_reward:{}", invitee.0)
}

/// Pays the referrer of `invitee` if `event` is the configured trigger and
/// the rules allow it; inside the caller's transaction. Returns the amount.
pub fn on_event(
    tx: &Connection,
    config: &Config,
    invitee: UserId,
    event: ReferralTrigger,
    now: i64,
) -> AppResult<i64> {
    let reward = config.billing.referral_reward as i64;
    if reward == 0 || config.billing.referral_trigger != event {
        return Ok(0);
    }
    let Some(invited) = db::users::by_id(tx, invitee)? else {
        return Ok(0);
    };
    let Some(referrer_id) = invited.referred_by.filter(|r| *r != invitee) else {
        return Ok(0);
    };
    let ips: Option<(Option<String>, Option<String>)> = tx
        .query_row(
            "SELECT i.registration_ip, r.registration_ip FROM users i, users r WHERE i.id = ?1 AND r.id = ?2",
            rusqlite::params![invitee, referrer_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (invitee_ip, referrer_ip) = ips.unwrap_or_default();
    if let Some(ip) = &invitee_ip {
        if Some(ip) == referrer_ip.as_ref() {
            tracing::info!(invitee = %invitee, "referral not rewarded: registered from the referrer's IP");
            return Ok(0);
        }
        let today: i64 = tx.query_row(
            "SELECT count(*) FROM ledger l JOIN users i ON l.idem_key = 'referral_reward:' || i.id
             WHERE l.kind = 'referral_reward' AND i.registration_ip = ?1 AND l.created_at > ?2",
            rusqlite::params![ip, now - 86_400],
            |r| r.get(0),
        )?;
        if today >= config.billing.referral_daily_ip_cap as i64 {
            tracing::info!(invitee = %invitee, "referral not rewarded: daily cap for the IP reached");
            return Ok(0);
        }
    }
    let reason = format!("Invited {}", mask_email(&invited.email));
    let change = Change {
        user: referrer_id,
        kind: "referral_reward",
        delta_balance: 0,
        delta_bonus: reward,
        task: None,
        code: None,
        related_user: Some(invitee),
        idem_key: key(invitee),
        actor: "system",
        reason: &reason,
    };
    Ok(if wallet::apply(tx, &change, now)?.is_some() {
        reward
    } else {
        0
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Invitee {
    pub email: String,
    pub joined: i64,
    pub rewarded: bool,
}

/// The accounts a user invited, masked, newest first.
pub fn invitees(conn: &Connection, referrer: UserId) -> AppResult<Vec<Invitee>> {
    let mut stmt = conn.prepare(
        "SELECT u.email, u.created_at, EXISTS (SELECT 1 FROM ledger l WHERE l.idem_key = 'referral_reward:' || u.id)
         FROM users u WHERE u.referred_by = ?1 ORDER BY u.id DESC LIMIT 200",
    )?;
    let rows = stmt.query_map([referrer], |r| {
        Ok(Invitee {
            email: mask_email(&r.get::<_, String>(0)?),
            joined: r.get(1)?,
            rewarded: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn masks() {
        assert_eq!(super::mask_email("ada@example.com"), "a**@example.com");
        assert_eq!(super::mask_email("bartholomew@x.org"), "b******@x.org");
        assert_eq!(super::mask_email("q@x.org"), "q**@x.org");
    }
}
