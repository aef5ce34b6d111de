//! The consistency checks behind `novart doctor` and a backup's
//! verification: each returns its findings as lines for people (empty when
//! all is well).

use super::sql::{Connection, Dialect};

use crate::error::AppResult;

fn lines(conn: &Connection, sql: &str, params: impl super::sql::Params) -> AppResult<Vec<String>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params, |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// SQLite's own integrity check, without its "ok". PostgreSQL checks its
/// pages itself (checksums, WAL) and has nothing to add here.
pub fn integrity(conn: &Connection) -> AppResult<Vec<String>> {
    if conn.dialect() == Dialect::Postgres {
        return Ok(Vec::new());
    }
    Ok(lines(conn, "PRAGMA integrity_check", ())?
        .into_iter()
        .filter(|s| s != "ok")
        .collect())
}

/// Rows pointing to a row that is not there.
pub fn foreign_keys(conn: &Connection) -> AppResult<Vec<String>> {
    // PostgreSQL enforces every foreign key at all times.
    if conn.dialect() == Dialect::Postgres {
        return Ok(Vec::new());
    }
    lines(
        conn,
        "SELECT \"table\" || ' row ' || rowid || ' points to a missing ' || parent FROM pragma_foreign_key_check", ())
}

/// Tasks charged or refunded more than once, or refunded past their charge.
pub fn double_charges(conn: &Connection) -> AppResult<Vec<String>> {
    lines(
        conn,
        "SELECT 'task ' || t.public_id || ': ' || c.charges || ' charge(s), ' || c.refunds || ' refund(s), net ' || c.net
         FROM (SELECT task_id, sum(CASE WHEN kind = 'task_charge' THEN 1 ELSE 0 END) AS charges,
                      sum(CASE WHEN kind = 'task_refund' THEN 1 ELSE 0 END) AS refunds,
                      sum(delta_balance + delta_bonus) AS net
               FROM ledger WHERE task_id IS NOT NULL GROUP BY task_id) c
         JOIN tasks t ON t.id = c.task_id
         WHERE c.charges > 1 OR c.refunds > 1 OR c.net > 0", ())
}

/// Per-user queue counters that disagree with the tasks.
pub fn queue_counts(conn: &Connection) -> AppResult<Vec<String>> {
    lines(
        conn,
        "SELECT 'user ' || q.user_id || ': counted ' || q.queued || ' queued / ' || q.running || ' running' FROM queue_users q
         WHERE q.queued <> (SELECT count(*) FROM tasks t WHERE t.user_id = q.user_id AND t.status = 'queued')
            OR q.running <> (SELECT count(*) FROM tasks t WHERE t.user_id = q.user_id AND t.status = 'running')", ())
}

/// Running tasks whose lease ended before `before`.
pub fn stuck_tasks(conn: &Connection, before: i64, now: i64) -> AppResult<Vec<String>> {
    lines(
        conn,
        "SELECT 'task ' || public_id || ' running, lease ended ' || (?2 - lease_until) || ' s ago'
         FROM tasks WHERE status = 'running' AND lease_until < ?1",
        [before, now],
    )
}

/// Result images that belong to no task.
pub fn unowned_results(conn: &Connection) -> AppResult<Vec<String>> {
    lines(
        conn,
        "SELECT 'image ' || public_id || ' belongs to no task' FROM assets WHERE kind = 'result' AND task_id IS NULL", ())
}

/// Pending webhook deliveries due before `before`, as one line.
pub fn overdue_deliveries(conn: &Connection, before: i64) -> AppResult<Vec<String>> {
    lines(
        conn,
        "SELECT count(*) || ' delivery(ies) overdue by more than 10 minutes (e.g. ' || min(public_id) || ')'
         FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at < ?1
         HAVING count(*) > 0",
        [before],
    )
}
