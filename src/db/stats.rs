//! The counts behind `novart stats` and `/metrics`.

use super::sql::{Connection, Dialect};

use crate::error::AppResult;

fn pairs(
    conn: &Connection,
    sql: &str,
    params: impl super::sql::Params,
) -> AppResult<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn one(conn: &Connection, sql: &str, params: impl super::sql::Params) -> AppResult<i64> {
    Ok(conn.query_row(sql, params, |r| r.get(0))?)
}

/// (model, queued, running) for every model with work.
pub fn queue_depth(conn: &Connection) -> AppResult<Vec<(String, i64, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT model, sum(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), sum(CASE WHEN status = 'running' THEN 1 ELSE 0 END) FROM tasks
         WHERE status IN ('queued', 'running') GROUP BY model ORDER BY model",
    )?;
    let rows = stmt.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// (status, count) over the tasks kept.
pub fn tasks_by_status(conn: &Connection) -> AppResult<Vec<(String, i64)>> {
    pairs(
        conn,
        "SELECT status, count(*) FROM tasks GROUP BY status ORDER BY status",
        (),
    )
}

/// Tasks finished after `since`, and how many of them failed.
pub fn finished_since(conn: &Connection, since: i64) -> AppResult<(i64, i64)> {
    Ok(conn.query_row(
        "SELECT count(*), coalesce(sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) FROM tasks WHERE finished_at > ?1",
        [since],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// Accounts not deleted.
pub fn users(conn: &Connection) -> AppResult<i64> {
    one(
        conn,
        "SELECT count(*) FROM users WHERE deleted_at IS NULL",
        (),
    )
}

/// Sessions that have not expired at `now`.
pub fn active_sessions(conn: &Connection, now: i64) -> AppResult<i64> {
    one(
        conn,
        "SELECT count(*) FROM sessions WHERE expires_at > ?1",
        [now],
    )
}

/// Credits held over all wallets: (paid, bonus).
pub fn credits_held(conn: &Connection) -> AppResult<(i64, i64)> {
    Ok(conn.query_row(
        "SELECT coalesce(sum(balance), 0), coalesce(sum(bonus), 0) FROM wallets",
        (),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// (ledger kind, sum of its changes).
pub fn ledger_by_kind(conn: &Connection) -> AppResult<Vec<(String, i64)>> {
    pairs(
        conn,
        "SELECT kind, sum(delta_balance + delta_bonus) FROM ledger GROUP BY kind ORDER BY kind",
        (),
    )
}

pub fn webhooks_pending(conn: &Connection) -> AppResult<i64> {
    one(
        conn,
        "SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'",
        (),
    )
}

/// (scope, count) of restrictions in force at `now`.
pub fn restrictions_in_force(conn: &Connection, now: i64) -> AppResult<Vec<(String, i64)>> {
    pairs(
        conn,
        "SELECT scope, count(*) FROM bans WHERE lifted_at IS NULL AND (ends_at IS NULL OR ends_at > ?1)
         GROUP BY scope ORDER BY scope",
        [now],
    )
}

/// The database's size in bytes: the SQLite file's pages times their size,
/// or PostgreSQL's own count for the database.
pub fn file_bytes(conn: &Connection) -> AppResult<i64> {
    let sql = match conn.dialect() {
        Dialect::Sqlite => {
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
        }
        Dialect::Postgres => "SELECT pg_database_size(current_database())",
    };
    one(conn, sql, ())
}

/// Accounts and tasks in a database (a backup's manifest).
pub fn users_and_tasks(conn: &Connection) -> AppResult<(i64, i64)> {
    Ok(conn.query_row(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM tasks)",
        (),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}
