//! SQL for `provider_health`: each node's last view of each provider.

use super::sql::{params, Connection};

use crate::domain::fleet_status::{Health, ProviderStatus, Seen};
use crate::error::AppResult;

pub fn upsert(conn: &Connection, node: &str, s: &ProviderStatus, now: i64) -> AppResult<()> {
    conn.prepare_cached(
        "INSERT INTO provider_health (node, provider, health, running, concurrency, weight, priority,
                                      latency_ms, calls, errors, last_error, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (node, provider) DO UPDATE SET health = excluded.health, running = excluded.running,
             concurrency = excluded.concurrency, weight = excluded.weight, priority = excluded.priority,
             latency_ms = excluded.latency_ms, calls = excluded.calls, errors = excluded.errors,
             last_error = excluded.last_error, updated_at = excluded.updated_at",
    )?
    .execute(params![
        node,
        s.id,
        s.health.as_str(),
        s.running,
        s.concurrency,
        s.weight,
        s.priority,
        s.latency_ms.map(|l| l as i64),
        s.calls as i64,
        s.errors as i64,
        s.last_error,
        now
    ])?;
    Ok(())
}

pub fn list(conn: &Connection) -> AppResult<Vec<Seen>> {
    let mut stmt = conn.prepare(
        "SELECT node, provider, health, running, concurrency, weight, priority, latency_ms, calls, errors,
                last_error, updated_at
         FROM provider_health ORDER BY provider, updated_at DESC",
    )?;
    let rows = stmt.query_map((), |r| {
        let health: String = r.get(2)?;
        Ok(Seen {
            node: r.get(0)?,
            status: ProviderStatus {
                id: r.get(1)?,
                health: Health::parse(&health),
                running: r.get(3)?,
                concurrency: r.get(4)?,
                weight: r.get(5)?,
                priority: r.get(6)?,
                latency_ms: r.get::<_, Option<i64>>(7)?.map(|l| l.max(0) as u64),
                calls: r.get::<_, i64>(8)?.max(0) as u64,
                errors: r.get::<_, i64>(9)?.max(0) as u64,
                last_error: r.get(10)?,
            },
            updated_at: r.get(11)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
