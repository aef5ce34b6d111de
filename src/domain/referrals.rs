//! Referral rewards: whoever invited an account (`/register?ref=CODE`) gets
//! `billing.referral_reward` bonus credits when that account first redeems a
//! paid code (or confirms its e-mail, per `referral_trigger`). Once per
//! invitee (the ledger's idempotency key), never for an account registered
//! from the referrer's own IP, and at most `referral_daily_ip_cap` rewarded
//! invitees per registration IP per day.

use crate::domain::Connection;
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
    let (invitee_ip, referrer_ip) = db::referrals::registration_ips(tx, invitee, referrer_id)?;
    if let Some(ip) = &invitee_ip {
        if Some(ip) == referrer_ip.as_ref() {
            tracing::info!(invitee = %invitee, "referral not rewarded: registered from the referrer's IP");
            return Ok(0);
        }
        let today = db::referrals::rewards_for_ip_since(tx, ip, now - 86_400)?;
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
    Ok(db::referrals::invitees(conn, referrer)?
        .into_iter()
        .map(|(email, joined, rewarded)| Invitee {
            email: mask_email(&email),
            joined,
            rewarded,
        })
        .collect())
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
