//! `novart doctor`: checks that the database is sound and that the money and
//! the queue add up. Each check reports what it found; any finding is a
//! problem.

use rusqlite::Connection;
use serde::Serialize;

use crate::config::Config;
use crate::error::AppResult;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub details: Vec<String>,
}

fn check(name: &'static str, details: Vec<String>) -> Check {
    Check {
        name,
        ok: details.is_empty(),
        details,
    }
}

fn strings(conn: &Connection, sql: &str) -> AppResult<Vec<String>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn run(conn: &Connection, config: &Config) -> AppResult<Vec<Check>> {
    let mut out = Vec::new();
    let integrity = strings(conn, "PRAGMA integrity_check")?;
    out.push(check(
        "integrity",
        integrity.into_iter().filter(|s| s != "ok").collect(),
    ));
    out.push(check(
        "foreign keys",
        strings(conn, "SELECT \"table\" || ' row ' || rowid || ' points to a missing ' || parent FROM pragma_foreign_key_check")?,
    ));
    let ledger: Vec<String> = crate::db::ledger::mismatches(conn)?
        .into_iter()
        .map(|(u, w, s)| {
            format!(
                "user {u}: wallet {} paid + {} bonus, ledger sums {} + {}",
                w.balance, w.bonus, s.balance, s.bonus
            )
        })
        .collect();
    out.push(check("ledger reconciliation", ledger));
    out.push(check(
        "charges and refunds",
        strings(
            conn,
            "SELECT 'task ' || t.public_id || ': ' || c.charges || ' charge(s), ' || c.refunds || ' refund(s), net ' || c.net
             FROM (SELECT task_id, sum(kind = 'task_charge') AS charges, sum(kind = 'task_refund') AS refunds,
                          sum(delta_balance + delta_bonus) AS net
                   FROM ledger WHERE task_id IS NOT NULL GROUP BY task_id) c
             JOIN tasks t ON t.id = c.task_id
             WHERE c.charges > 1 OR c.refunds > 1 OR c.net > 0",
        )?,
    ));
    out.push(check(
        "queue counts",
        strings(
            conn,
            "SELECT 'user ' || q.user_id || ': counted ' || q.queued || ' queued / ' || q.running || ' running' FROM queue_users q
             WHERE q.queued <> (SELECT count(*) FROM tasks t WHERE t.user_id = q.user_id AND t.status = 'queued')
                OR q.running <> (SELECT count(*) FROM tasks t WHERE t.user_id = q.user_id AND t.status = 'running')",
        )?,
    ));
    let missing: Vec<String> = crate::db::assets::all(conn)?
        .into_iter()
        .filter(|a| !super::assets::file_path(config, &a.path).exists())
        .map(|a| format!("{} ({}) has no file", a.public_id, a.path))
        .collect();
    out.push(check("stored files", missing));
    let stuck = strings(
        conn,
        &format!(
            "SELECT 'task ' || public_id || ' running, lease ended ' || (strftime('%s','now') - lease_until) || ' s ago'
             FROM tasks WHERE status = 'running' AND lease_until < {}",
            super::now() - 300
        ),
    )?;
    out.push(check("stuck tasks", stuck));
    Ok(out)
}
