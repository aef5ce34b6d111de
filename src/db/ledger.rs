//! SQL for `wallets` and the append-only `ledger`.

use super::sql::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::error::AppResult;
use crate::model::{TaskId, UserId};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Wallet {
    pub balance: i64,
    pub bonus: i64,
}

impl Wallet {
    /// Paid plus bonus (saturating: a bucket out of bounds is for `novart
    /// doctor` to report, never a wrapped or panicking sum).
    pub fn total(&self) -> i64 {
        self.balance.saturating_add(self.bonus)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: i64,
    pub kind: String,
    pub delta_balance: i64,
    pub delta_bonus: i64,
    pub balance_after: i64,
    pub bonus_after: i64,
    pub task: Option<String>,
    pub actor: String,
    pub reason: String,
    pub created_at: i64,
}

pub fn wallet(conn: &Connection, user: UserId) -> AppResult<Wallet> {
    read_wallet(conn, user, "")
}

/// The wallet as a write transaction reads it before changing it: its row
/// stays locked until the transaction ends, so no other transaction can
/// spend from it in between (on PostgreSQL; SQLite's writer holds the file).
pub fn wallet_locked(conn: &Connection, user: UserId) -> AppResult<Wallet> {
    read_wallet(conn, user, conn.for_update())
}

fn read_wallet(conn: &Connection, user: UserId, lock: &str) -> AppResult<Wallet> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT balance, bonus FROM wallets WHERE user_id = ?1{lock}"
        ))?
        .query_row([user], |r| {
            Ok(Wallet {
                balance: r.get(0)?,
                bonus: r.get(1)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}

pub fn set_wallet(conn: &Connection, user: UserId, w: Wallet) -> AppResult<()> {
    conn.prepare_cached(
        "INSERT INTO wallets (user_id, balance, bonus) VALUES (?1, ?2, ?3)
         ON CONFLICT(user_id) DO UPDATE SET balance = excluded.balance, bonus = excluded.bonus",
    )?
    .execute(params![user, w.balance, w.bonus])?;
    Ok(())
}

pub fn idem_used(conn: &Connection, key: &str) -> AppResult<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM ledger WHERE idem_key = ?1")?
        .query_row([key], |_| Ok(()))
        .optional()?
        .is_some())
}

pub struct NewEntry<'a> {
    pub user: UserId,
    pub kind: &'a str,
    pub delta_balance: i64,
    pub delta_bonus: i64,
    pub after: Wallet,
    pub task: Option<TaskId>,
    pub code: Option<i64>,
    pub related_user: Option<UserId>,
    pub idem_key: &'a str,
    pub actor: &'a str,
    pub reason: &'a str,
    pub now: i64,
}

pub fn insert(conn: &Connection, e: &NewEntry<'_>) -> AppResult<()> {
    conn.prepare_cached(
        "INSERT INTO ledger (user_id, kind, delta_balance, delta_bonus, balance_after, bonus_after, task_id,
                             code_id, related_user, idem_key, actor, reason, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
            e.user, e.kind, e.delta_balance, e.delta_bonus, e.after.balance, e.after.bonus, e.task, e.code,
            e.related_user, e.idem_key, e.actor, e.reason, e.now
        ])?;
    Ok(())
}

/// The (balance, bonus) deltas of the entry with this key, if any.
pub fn deltas(conn: &Connection, key: &str) -> AppResult<Option<(i64, i64)>> {
    Ok(conn
        .query_row(
            "SELECT delta_balance, delta_bonus FROM ledger WHERE idem_key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

fn entry(r: &Row<'_>) -> super::sql::Result<Entry> {
    Ok(Entry {
        id: r.get(0)?,
        kind: r.get(1)?,
        delta_balance: r.get(2)?,
        delta_bonus: r.get(3)?,
        balance_after: r.get(4)?,
        bonus_after: r.get(5)?,
        task: r.get(6)?,
        actor: r.get(7)?,
        reason: r.get(8)?,
        created_at: r.get(9)?,
    })
}

/// A user's entries, newest first, older than `before`.
pub fn entries(
    conn: &Connection,
    user: UserId,
    kind: Option<&str>,
    before: Option<i64>,
    limit: u32,
) -> AppResult<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.id, l.kind, l.delta_balance, l.delta_bonus, l.balance_after, l.bonus_after, t.public_id,
                l.actor, l.reason, l.created_at
         FROM ledger l LEFT JOIN tasks t ON t.id = l.task_id
         WHERE l.user_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR l.kind = ?2) AND (CAST(?3 AS BIGINT) IS NULL OR l.id < ?3)
         ORDER BY l.id DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![user, kind, before, limit], entry)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Amounts outside their bounds: wallet buckets outside 0..=`max_bucket`,
/// ledger rows moving more than `max_bucket`, codes worth more than
/// `max_amount` (or nothing). One line each.
pub fn out_of_bounds(
    conn: &Connection,
    max_amount: i64,
    max_bucket: i64,
) -> AppResult<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT 'user ' || user_id || ': wallet ' || balance || ' paid + ' || bonus || ' bonus'
           FROM wallets WHERE balance NOT BETWEEN 0 AND ?2 OR bonus NOT BETWEEN 0 AND ?2
         UNION ALL
         SELECT 'ledger row ' || id || ' (user ' || user_id || ', ' || kind || '): ' || delta_balance || ' paid, ' || delta_bonus || ' bonus'
           FROM ledger WHERE abs(delta_balance) > ?2 OR abs(delta_bonus) > ?2
         UNION ALL
         SELECT 'code ' || id || ': worth ' || amount
           FROM codes WHERE amount NOT BETWEEN 1 AND ?1",
    )?;
    let rows = stmt.query_map(params![max_amount, max_bucket], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Users whose wallet differs from the sum of their ledger: (user, wallet, sum).
pub fn mismatches(conn: &Connection) -> AppResult<Vec<(UserId, Wallet, Wallet)>> {
    let mut stmt = conn.prepare(
        "SELECT u.id, coalesce(w.balance, 0), coalesce(w.bonus, 0),
                coalesce((SELECT sum(delta_balance) FROM ledger l WHERE l.user_id = u.id), 0),
                coalesce((SELECT sum(delta_bonus) FROM ledger l WHERE l.user_id = u.id), 0)
         FROM users u LEFT JOIN wallets w ON w.user_id = u.id",
    )?;
    let rows = stmt.query_map((), |r| {
        Ok((
            r.get(0)?,
            Wallet {
                balance: r.get(1)?,
                bonus: r.get(2)?,
            },
            Wallet {
                balance: r.get(3)?,
                bonus: r.get(4)?,
            },
        ))
    })?;
    let all: Vec<(UserId, Wallet, Wallet)> = rows.collect::<Result<_, _>>()?;
    Ok(all.into_iter().filter(|(_, w, s)| w != s).collect())
}
