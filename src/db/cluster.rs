//! SQL for what the nodes of a cluster share: the turns of periodic jobs.

use super::sql::{params, Connection};

use crate::error::AppResult;

/// Takes `job`'s turn for `node` until `until` when the previous turn ended
/// by `now`; false when another node holds it.
pub fn take_turn(
    conn: &Connection,
    job: &str,
    node: &str,
    now: i64,
    until: i64,
) -> AppResult<bool> {
    let n = conn.execute(
        "INSERT INTO job_turns (job, node, until) VALUES (?1, ?2, ?4)
         ON CONFLICT(job) DO UPDATE SET node = excluded.node, until = excluded.until
         WHERE job_turns.until <= ?3",
        params![job, node, now, until],
    )?;
    Ok(n == 1)
}

/// Who holds each job's turn, and until when (`novart stats`).
pub fn turns(conn: &Connection) -> AppResult<Vec<(String, String, i64)>> {
    let mut stmt = conn.prepare("SELECT job, node, until FROM job_turns ORDER BY job")?;
    let rows = stmt.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The channel the nodes tell each other about task changes on.
pub const EVENTS: &str = "novart_events";

/// Sends `payload` to every node listening (PostgreSQL's NOTIFY; delivered
/// when the surrounding transaction, if any, commits).
pub fn notify(conn: &Connection, payload: &str) -> AppResult<()> {
    conn.query_row("SELECT pg_notify(?1, ?2)", params![EVENTS, payload], |_| {
        Ok(())
    })?;
    Ok(())
}

/// Starts listening on this connection.
pub fn listen(conn: &Connection) -> AppResult<()> {
    conn.execute_batch(&format!("LISTEN {EVENTS}"))?;
    Ok(())
}

/// Forgets `bucket`'s hits at or before `until_ms` (out of its window).
pub fn forget_hits(conn: &Connection, bucket: &str, until_ms: i64) -> AppResult<()> {
    conn.prepare_cached("DELETE FROM rate_hits WHERE bucket = ?1 AND at_ms <= ?2")?
        .execute(params![bucket, until_ms])?;
    Ok(())
}

/// How many hits `bucket` has, and when the oldest was.
pub fn hits(conn: &Connection, bucket: &str) -> AppResult<(i64, Option<i64>)> {
    Ok(conn
        .prepare_cached("SELECT count(*), min(at_ms) FROM rate_hits WHERE bucket = ?1")?
        .query_row([bucket], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

pub fn add_hit(conn: &Connection, bucket: &str, at_ms: i64) -> AppResult<i64> {
    Ok(conn
        .prepare_cached("INSERT INTO rate_hits (bucket, at_ms) VALUES (?1, ?2) RETURNING id")?
        .query_row(params![bucket, at_ms], |r| r.get(0))?)
}

pub fn remove_hit(conn: &Connection, id: i64) -> AppResult<()> {
    conn.prepare_cached("DELETE FROM rate_hits WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Forgets every hit at or before `until_ms`; returns how many.
pub fn sweep_hits(conn: &Connection, until_ms: i64) -> AppResult<usize> {
    Ok(conn.execute("DELETE FROM rate_hits WHERE at_ms <= ?1", [until_ms])?)
}
