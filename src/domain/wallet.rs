//! Credits. Two buckets per user — `balance` (paid) and `bonus` (granted) —
//! spent bonus first. Every change is one ledger row written in the same
//! BEGIN IMMEDIATE transaction as the wallet update and whatever caused it,
//! keyed by an idempotency key (UNIQUE), so a change happens at most once and
//! a wallet always equals the sum of its ledger. Balances never go negative.

use crate::domain::Connection;

use crate::domain::db;
use crate::domain::db::ledger::NewEntry;
pub use crate::domain::db::ledger::{Entry, Wallet};
use crate::error::{AppError, AppResult};
use crate::model::{TaskId, UserId};

pub use crate::model::{MAX_AMOUNT, MAX_BUCKET};

/// `amount` if it is a positive amount of at most `MAX_AMOUNT` credits.
pub fn check_amount(field: &'static str, amount: i64) -> AppResult<i64> {
    if amount <= 0 || amount > MAX_AMOUNT {
        return Err(AppError::invalid(
            field,
            format!("The amount must be a whole number of credits from 1 to {MAX_AMOUNT}."),
        ));
    }
    Ok(amount)
}

/// What `n` images at `price` credits each cost (at most `MAX_AMOUNT`).
pub fn task_cost(price: u64, n: u32) -> AppResult<i64> {
    i64::try_from(price)
        .ok()
        .and_then(|p| p.checked_mul(n as i64))
        .filter(|c| *c <= MAX_AMOUNT)
        .ok_or_else(|| {
            AppError::invalid(
                "n",
                format!("A task may cost at most {MAX_AMOUNT} credits."),
            )
        })
}

/// Refuses (402) when the wallet cannot pay `cost`: the cheap check before
/// a task's images are decoded; `charge_task` checks again in the write.
pub fn ensure_affordable(conn: &Connection, user: UserId, cost: i64) -> AppResult<()> {
    if cost <= 0 {
        return Ok(());
    }
    let w = db::ledger::wallet(conn, user)?;
    if w.total() < cost {
        return Err(short_of(cost, &w));
    }
    Ok(())
}

fn short_of(cost: i64, w: &Wallet) -> AppError {
    AppError::InsufficientBalance(format!(
        "This task costs {cost} credit{}; your wallet has {}.",
        if cost == 1 { "" } else { "s" },
        w.total()
    ))
}

pub const KINDS: &[&str] = &[
    "signup_bonus",
    "redeem",
    "referral_reward",
    "task_charge",
    "task_refund",
    "admin_grant",
    "admin_deduct",
];

/// One change to a wallet.
pub struct Change<'a> {
    pub user: UserId,
    pub kind: &'a str,
    pub delta_balance: i64,
    pub delta_bonus: i64,
    pub task: Option<TaskId>,
    /// The code redeemed, for `redeem`.
    pub code: Option<i64>,
    /// The invited account, for `referral_reward`.
    pub related_user: Option<UserId>,
    pub idem_key: String,
    pub actor: &'a str,
    pub reason: &'a str,
}

/// Applies a change inside the caller's write transaction. Returns the new
/// wallet, or None when the idempotency key was used before (nothing done).
pub fn apply(tx: &Connection, c: &Change<'_>, now: i64) -> AppResult<Option<Wallet>> {
    if db::ledger::idem_used(tx, &c.idem_key)? {
        return Ok(None);
    }
    let w = db::ledger::wallet_locked(tx, c.user)?;
    let (Some(balance), Some(bonus)) = (
        w.balance.checked_add(c.delta_balance),
        w.bonus.checked_add(c.delta_bonus),
    ) else {
        return Err(too_full());
    };
    let after = Wallet { balance, bonus };
    if after.balance > MAX_BUCKET || after.bonus > MAX_BUCKET {
        return Err(too_full());
    }
    if after.balance < 0 || after.bonus < 0 {
        return Err(AppError::InsufficientBalance(format!(
            "Not enough credits: this needs {}, and you have {}.",
            -(c.delta_balance + c.delta_bonus),
            w.total()
        )));
    }
    db::ledger::set_wallet(tx, c.user, after)?;
    db::ledger::insert(
        tx,
        &NewEntry {
            user: c.user,
            kind: c.kind,
            delta_balance: c.delta_balance,
            delta_bonus: c.delta_bonus,
            after,
            task: c.task,
            code: c.code,
            related_user: c.related_user,
            idem_key: &c.idem_key,
            actor: c.actor,
            reason: c.reason,
            now,
        },
    )?;
    Ok(Some(after))
}

fn too_full() -> AppError {
    AppError::invalid(
        "amount",
        format!("A wallet holds at most {MAX_BUCKET} credits in each of its paid and bonus parts."),
    )
}

pub fn get(conn: &Connection, user: UserId) -> AppResult<Wallet> {
    db::ledger::wallet(conn, user)
}

fn charge_key(task: TaskId) -> String {
    format!("task_charge:{}", task.0)
}

/// Debits a task's cost, bonus first, inside the transaction that inserts
/// the task.
pub fn charge_task(
    tx: &Connection,
    user: UserId,
    task: TaskId,
    cost: i64,
    now: i64,
) -> AppResult<()> {
    if cost <= 0 {
        return Ok(());
    }
    let w = db::ledger::wallet_locked(tx, user)?;
    if w.total() < cost {
        return Err(short_of(cost, &w));
    }
    let from_bonus = w.bonus.min(cost);
    let change = Change {
        user,
        kind: "task_charge",
        delta_balance: -(cost - from_bonus),
        delta_bonus: -from_bonus,
        task: Some(task),
        code: None,
        related_user: None,
        idem_key: charge_key(task),
        actor: "system",
        reason: "",
    };
    apply(tx, &change, now)?;
    Ok(())
}

/// Charges the extra images of a task whose model keeps them, once per
/// task, bonus first, in the transaction that records them. The caller
/// checked the wallet covers it.
pub fn charge_extra(
    tx: &Connection,
    user: UserId,
    task: TaskId,
    amount: i64,
    now: i64,
) -> AppResult<()> {
    if amount <= 0 {
        return Ok(());
    }
    let w = db::ledger::wallet_locked(tx, user)?;
    if w.total() < amount {
        return Err(short_of(amount, &w));
    }
    let from_bonus = w.bonus.min(amount);
    let change = Change {
        user,
        kind: "task_extra",
        delta_balance: -(amount - from_bonus),
        delta_bonus: -from_bonus,
        task: Some(task),
        code: None,
        related_user: None,
        idem_key: format!("task_extra:{}", task.0),
        actor: "system",
        reason: "extra images kept",
    };
    apply(tx, &change, now)?;
    Ok(())
}

/// Refunds `missing` of a task's `n` images, at most once per task, to the
/// buckets the charge came from (paid credits first). Returns the credits
/// given back (0 when nothing was charged or it was refunded before).
pub fn refund_task(
    tx: &Connection,
    user: UserId,
    task: TaskId,
    missing: u32,
    n: u32,
    reason: &str,
    now: i64,
) -> AppResult<i64> {
    let Some((paid_balance, paid_bonus)) = db::ledger::deltas(tx, &charge_key(task))? else {
        return Ok(0);
    };
    let (paid_balance, paid_bonus) = (-paid_balance, -paid_bonus);
    let cost = paid_balance + paid_bonus;
    let amount = if missing >= n {
        cost
    } else {
        cost * missing as i64 / n.max(1) as i64
    };
    if amount <= 0 {
        return Ok(0);
    }
    let to_balance = amount.min(paid_balance);
    let change = Change {
        user,
        kind: "task_refund",
        delta_balance: to_balance,
        delta_bonus: amount - to_balance,
        task: Some(task),
        code: None,
        related_user: None,
        idem_key: format!("task_refund:{}", task.0),
        actor: "system",
        reason,
    };
    Ok(if apply(tx, &change, now)?.is_some() {
        amount
    } else {
        0
    })
}

/// The signup bonus, once per account.
pub fn signup_bonus(tx: &Connection, user: UserId, amount: u32, now: i64) -> AppResult<()> {
    if amount == 0 {
        return Ok(());
    }
    let change = Change {
        user,
        kind: "signup_bonus",
        delta_balance: 0,
        delta_bonus: amount as i64,
        task: None,
        code: None,
        related_user: None,
        idem_key: format!("signup_bonus:{}", user.0),
        actor: "system",
        reason: "Welcome credits",
    };
    apply(tx, &change, now)?;
    Ok(())
}

/// An admin's change of `amount` credits: `split` turns the current wallet
/// into the (paid, bonus) deltas, or refuses.
fn admin_change(
    conn: &mut Connection,
    user: UserId,
    kind: &str,
    amount: i64,
    split: impl FnOnce(Wallet) -> AppResult<(i64, i64)>,
    actor: &str,
    reason: &str,
) -> AppResult<Wallet> {
    check_amount("amount", amount)?;
    let now = super::now();
    db::write(conn, |tx| {
        let (delta_balance, delta_bonus) = split(db::ledger::wallet_locked(tx, user)?)?;
        let change = Change {
            user,
            kind,
            delta_balance,
            delta_bonus,
            task: None,
            code: None,
            related_user: None,
            idem_key: format!("{kind}:{}", super::secrets::random_token(12)),
            actor,
            reason,
        };
        apply(tx, &change, now).map(|w| w.unwrap_or_default())
    })
}

/// An admin adds credits (paid balance, or bonus with `bonus`).
pub fn grant(
    conn: &mut Connection,
    user: UserId,
    amount: i64,
    bonus: bool,
    actor: &str,
    reason: &str,
) -> AppResult<Wallet> {
    let split = |_| Ok(if bonus { (0, amount) } else { (amount, 0) });
    admin_change(conn, user, "admin_grant", amount, split, actor, reason)
}

/// An admin removes credits: paid balance first, then bonus; never below zero.
pub fn deduct(
    conn: &mut Connection,
    user: UserId,
    amount: i64,
    actor: &str,
    reason: &str,
) -> AppResult<Wallet> {
    let split = |w: Wallet| {
        if w.total() < amount {
            return Err(AppError::InsufficientBalance(format!(
                "The wallet holds {} credits; {amount} cannot be deducted.",
                w.total()
            )));
        }
        let from_balance = w.balance.min(amount);
        Ok((-from_balance, -(amount - from_balance)))
    };
    admin_change(conn, user, "admin_deduct", amount, split, actor, reason)
}

/// A creator's ledger, newest first: of one kind if given, before an entry
/// id if given, at most `limit` rows.
pub fn entries(
    conn: &Connection,
    user: UserId,
    kind: Option<&str>,
    before: Option<i64>,
    limit: u32,
) -> AppResult<Vec<Entry>> {
    db::ledger::entries(conn, user, kind, before, limit)
}

/// Wallets whose cached balance disagrees with the sum of their ledger:
/// (user, cached, summed). Empty on a healthy instance.
pub fn mismatches(conn: &Connection) -> AppResult<Vec<(UserId, Wallet, Wallet)>> {
    db::ledger::mismatches(conn)
}
