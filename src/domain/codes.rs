//! Redemption (recharge) codes: high-entropy, easy to type
//! (`NVA-XXXX-XXXX-XXXX-XXXX` from an alphabet without 0/O/1/I/L, about 79
//! bits), stored only as a SHA-256 of their normalized text.

use crate::domain::Connection;

use crate::domain::db;
pub use crate::domain::db::codes::Code;
use crate::domain::db::ledger::Wallet;
use crate::error::{AppError, AppResult};
use crate::model::UserId;

use super::secrets::{readable_code, sha256_hex, READABLE};
use super::wallet::{self, Change};

const GROUPS: usize = 4;
const GROUP: usize = 4;

/// Uppercases and drops spaces, dashes and the `NVA` prefix; None if what is
/// left cannot be a code (so typos get a clear answer, and no lookup).
pub fn normalize(text: &str) -> Option<String> {
    let mut s: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_uppercase();
    if s.len() == GROUPS * GROUP + 3 && s.starts_with("NVA") {
        s = s[3..].to_string();
    }
    (s.len() == GROUPS * GROUP && s.bytes().all(|b| READABLE.contains(&b))).then_some(s)
}

fn display(raw: &str) -> String {
    let groups: Vec<&str> = (0..GROUPS)
        .map(|i| &raw[i * GROUP..(i + 1) * GROUP])
        .collect();
    format!("NVA-{}", groups.join("-"))
}

pub struct NewCodes<'a> {
    pub amount: i64,
    pub count: u32,
    pub bonus: bool,
    pub max_uses: i64,
    pub expires_at: Option<i64>,
    pub batch: Option<&'a str>,
    pub actor: &'a str,
}

/// Creates codes and returns their text: the only time it exists in clear.
pub fn create(conn: &mut Connection, req: &NewCodes<'_>) -> AppResult<Vec<String>> {
    super::wallet::check_amount("amount", req.amount)?;
    if req.count == 0 || req.count > 100_000 {
        return Err(AppError::invalid(
            "count",
            "Create between 1 and 100000 codes at a time.",
        ));
    }
    if req.max_uses < 1 {
        return Err(AppError::invalid(
            "max_uses",
            "A code needs at least one use.",
        ));
    }
    let now = super::now();
    db::write(conn, |tx| {
        let mut out = Vec::with_capacity(req.count as usize);
        for _ in 0..req.count {
            let raw = readable_code(GROUPS * GROUP);
            db::codes::insert(
                tx,
                &db::codes::NewCode {
                    hash: &sha256_hex(&raw),
                    hint: &raw[raw.len() - 4..],
                    amount: req.amount,
                    bucket: if req.bonus { "bonus" } else { "balance" },
                    max_uses: req.max_uses,
                    batch: req.batch,
                    expires_at: req.expires_at,
                    created_by: req.actor,
                    now,
                },
            )?;
            out.push(display(&raw));
        }
        Ok(out)
    })
}

/// What a redemption did.
#[derive(Debug, Clone, Copy)]
pub struct Redeemed {
    pub credited: i64,
    pub bonus: bool,
    pub wallet: Wallet,
}

/// Redeems a code for the user: exactly once per single-use code, whatever
/// the concurrency. Unknown, used, expired and withdrawn codes each get
/// their own answer.
pub fn redeem(
    conn: &mut Connection,
    config: &crate::config::Config,
    user: UserId,
    ip: Option<&str>,
    text: &str,
) -> AppResult<Redeemed> {
    super::bans::ensure(conn, user, super::bans::Action::Redeem)?;
    let now = super::now();
    // Failures are counted per IPv4 address or IPv6 network.
    let ip = ip.map(|i| super::ratelimit::ip_key(config, i));
    let ip = ip.as_deref();
    let (by_user, by_ip) = db::codes::failures_since(conn, user, ip, now - 3600)?;
    let limits = &config.limits;
    let paused_until = [
        (by_user.count >= limits.redeem_failures_per_account_hour as i64)
            .then_some(by_user.oldest)
            .flatten(),
        (by_ip.count >= limits.redeem_failures_per_ip_hour as i64)
            .then_some(by_ip.oldest)
            .flatten(),
    ]
    .into_iter()
    .flatten()
    .map(|oldest| oldest + 3600)
    .max();
    if let Some(until) = paused_until {
        return Err(AppError::RateLimited {
            retry_after_secs: (until - now).max(1) as u64,
        });
    }
    let result = redeem_checked(conn, config, user, text, now);
    if let Err(AppError::Invalid { .. }) = &result {
        db::write(conn, |tx| db::codes::record_failure(tx, user, ip, now))?;
    }
    result
}

fn redeem_checked(
    conn: &mut Connection,
    config: &crate::config::Config,
    user: UserId,
    text: &str,
    now: i64,
) -> AppResult<Redeemed> {
    let unknown = || {
        AppError::invalid("code", "This code does not exist. Check it for typos: codes look like NVA-XXXX-XXXX-XXXX-XXXX.")
    };
    let raw = normalize(text).ok_or_else(unknown)?;
    let hash = sha256_hex(&raw);
    db::write(conn, |tx| {
        let code: Code = db::codes::by_hash(tx, &hash)?.ok_or_else(unknown)?;
        if code.revoked_at.is_some() {
            return Err(AppError::invalid(
                "code",
                "This code has been withdrawn by the studio's operator.",
            ));
        }
        if let Some(exp) = code.expires_at {
            if exp <= now {
                return Err(AppError::invalid(
                    "code",
                    format!(
                        "This code expired on {}.",
                        crate::templates::format_time(exp)
                    ),
                ));
            }
        }
        if db::codes::redeemed_by(tx, code.id, user)? {
            return Err(AppError::invalid(
                "code",
                "You have already redeemed this code.",
            ));
        }
        if !db::codes::take_use(tx, code.id)? {
            return Err(AppError::invalid(
                "code",
                "This code has already been used.",
            ));
        }
        db::codes::insert_redemption(tx, code.id, user, now)?;
        let bonus = code.bucket == "bonus";
        let change = Change {
            user,
            kind: "redeem",
            delta_balance: if bonus { 0 } else { code.amount },
            delta_bonus: if bonus { code.amount } else { 0 },
            task: None,
            code: Some(code.id),
            related_user: None,
            idem_key: format!("redeem:{}:{}", code.id, user.0),
            actor: "user",
            reason: &format!("Code …{}", code.hint),
        };
        let w = wallet::apply(tx, &change, now)?
            .ok_or_else(|| AppError::invalid("code", "You have already redeemed this code."))?;
        if !bonus && db::codes::paid_redemptions_of(tx, user)? == 1 {
            super::referrals::on_event(
                tx,
                config,
                user,
                crate::config::ReferralTrigger::FirstRedeem,
                now,
            )?;
        }
        Ok(Redeemed {
            credited: code.amount,
            bonus,
            wallet: w,
        })
    })
}

pub fn list(conn: &Connection, batch: Option<&str>) -> AppResult<Vec<Code>> {
    db::codes::list(conn, batch)
}

/// Withdraws one code (by its text) or a whole batch; returns how many.
pub fn revoke_code(conn: &mut Connection, text: &str) -> AppResult<usize> {
    let raw = normalize(text).ok_or_else(|| {
        AppError::invalid("code", "That is not a code (NVA-XXXX-XXXX-XXXX-XXXX).")
    })?;
    let now = super::now();
    db::write(conn, |tx| {
        db::codes::revoke_hash(tx, &sha256_hex(&raw), now)
    })
}

pub fn revoke_batch(conn: &mut Connection, batch: &str) -> AppResult<usize> {
    let now = super::now();
    db::write(conn, |tx| db::codes::revoke_batch(tx, batch, now))
}

/// Where a code stands at `now`: revoked, expired, used up, or active.
pub fn status(c: &Code, now: i64) -> &'static str {
    if c.revoked_at.is_some() {
        "revoked"
    } else if c.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else if c.uses >= c.max_uses {
        "used"
    } else {
        "active"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizing_accepts_what_people_type() {
        let raw = "ABCD2345EFGH6789";
        assert_eq!(display(raw), "NVA-ABCD-2345-EFGH-6789");
        assert_eq!(normalize("NVA-ABCD-2345-EFGH-6789").as_deref(), Some(raw));
        assert_eq!(normalize(" nva abcd 2345 efgh 6789 ").as_deref(), Some(raw));
        assert_eq!(normalize("abcd2345efgh6789").as_deref(), Some(raw));
        assert_eq!(normalize("NVA-ABCD-2345-EFGH-678"), None, "too short");
        assert_eq!(
            normalize("NVA-ABC0-2345-EFGH-6789"),
            None,
            "0 is never in a code"
        );
    }
}
