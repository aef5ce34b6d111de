//! SQL for the `tasks` table: the queue. State changes are compare-and-swap
//! on `status` so that a worker, a cancel and lease recovery can race safely.

use super::sql::{params, Connection, Dialect, OptionalExtension, Row};

use crate::error::AppResult;
use crate::model::{Task, TaskId, TaskStatus, UserId};

const COLUMNS: &str = "id, public_id, user_id, status, model, prompt, negative_prompt, width, height, n, seed, \
     webhook_url, cost, progress, attempts, not_before, lease_until, worker, provider, error, error_raw, \
     created_at, started_at, finished_at, notice";

fn from_row(r: &Row<'_>) -> super::sql::Result<Task> {
    let status: String = r.get(3)?;
    Ok(Task {
        id: r.get(0)?,
        public_id: r.get(1)?,
        user_id: r.get(2)?,
        status: TaskStatus::parse(&status).unwrap_or(TaskStatus::Failed),
        model: r.get(4)?,
        prompt: r.get(5)?,
        negative_prompt: r.get(6)?,
        width: r.get(7)?,
        height: r.get(8)?,
        n: r.get(9)?,
        seed: r.get(10)?,
        webhook_url: r.get(11)?,
        cost: r.get(12)?,
        progress: r.get(13)?,
        attempts: r.get(14)?,
        not_before: r.get(15)?,
        lease_until: r.get(16)?,
        worker: r.get(17)?,
        provider: r.get(18)?,
        error: r.get(19)?,
        error_raw: r.get(20)?,
        created_at: r.get(21)?,
        started_at: r.get(22)?,
        finished_at: r.get(23)?,
        notice: r.get(24)?,
    })
}

pub struct NewTask<'a> {
    pub public_id: &'a str,
    pub user_id: UserId,
    pub model: &'a str,
    pub prompt: &'a str,
    pub negative_prompt: &'a str,
    pub width: u32,
    pub height: u32,
    pub n: u32,
    pub seed: i64,
    pub webhook_url: Option<&'a str>,
    pub cost: i64,
    pub api_key_id: Option<i64>,
    pub now: i64,
}

pub fn insert(conn: &Connection, t: &NewTask<'_>) -> AppResult<TaskId> {
    conn.prepare_cached(
        "INSERT INTO tasks (public_id, user_id, status, model, prompt, negative_prompt, width, height, n, seed,
                            webhook_url, cost, not_before, created_at, api_key_id)
         VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13)",
    )?
    .execute(params![
            t.public_id, t.user_id, t.model, t.prompt, t.negative_prompt, t.width, t.height, t.n, t.seed,
            t.webhook_url, t.cost, t.now, t.api_key_id
        ])?;
    Ok(TaskId(conn.last_insert_rowid()?))
}

pub fn by_id(conn: &Connection, id: TaskId) -> AppResult<Option<Task>> {
    let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

pub fn by_public_id(conn: &Connection, user: UserId, public_id: &str) -> AppResult<Option<Task>> {
    let sql = format!("SELECT {COLUMNS} FROM tasks WHERE public_id = ?1 AND user_id = ?2");
    Ok(conn
        .query_row(&sql, params![public_id, user], from_row)
        .optional()?)
}

pub fn by_public_id_any_user(conn: &Connection, public_id: &str) -> AppResult<Option<Task>> {
    let sql = format!("SELECT {COLUMNS} FROM tasks WHERE public_id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([public_id], from_row)
        .optional()?)
}

/// A user's tasks, newest first, older than `before` (an internal id cursor).
pub fn list_for_user(
    conn: &Connection,
    user: UserId,
    status: Option<TaskStatus>,
    before: Option<TaskId>,
    limit: u32,
) -> AppResult<Vec<Task>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tasks WHERE user_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR status = ?2)
         AND (CAST(?3 AS BIGINT) IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![user, status.map(|s| s.as_str()), before, limit],
        from_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn list_all(conn: &Connection, status: Option<TaskStatus>, limit: u32) -> AppResult<Vec<Task>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tasks WHERE (CAST(?1 AS TEXT) IS NULL OR status = ?1) ORDER BY id DESC LIMIT ?2"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![status.map(|s| s.as_str()), limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Claims the next task fairly and marks it running with a lease. Among
/// users with a waiting task and fewer than `per_user` running: fewest running
/// first, then the user served longest ago (never served first), then the
/// oldest waiting task. One user's 500 tasks therefore alternate with
/// another's 1 instead of going first.
///
/// On SQLite this is one statement in the caller's write transaction (the
/// file has one writer). On PostgreSQL it runs in a `row_transaction`
/// beside other writers on every node, so it locks what it decides on: the
/// creator's `queue_users` row first (its `running` count is what the
/// per-creator limit reads, so two nodes cannot both take that creator's
/// last free place), then the task row, each `FOR UPDATE … SKIP LOCKED`: a
/// worker passes over rows another one holds instead of queueing behind it.
/// With `wait`, when every creator with work was held, it asks once more
/// and waits for the first of them (an idle worker; a worker finishing a
/// task claims without waiting, since it already holds rows).
#[allow(clippy::too_many_arguments)]
pub fn claim(
    conn: &Connection,
    worker: &str,
    now: i64,
    lease_secs: i64,
    per_user: u32,
    skip_models: &[String],
    wait: bool,
) -> AppResult<Option<Task>> {
    let skip = serde_json::to_string(skip_models).unwrap_or_else(|_| "[]".into());
    if conn.dialect() == Dialect::Postgres {
        return claim_locking(conn, worker, now, lease_secs, per_user, &skip, wait);
    }
    let sql = format!(
        "WITH pick AS (
             SELECT q.running, q.served,
                    (SELECT min(t.id) FROM tasks t
                     WHERE t.status = 'queued' AND t.user_id = q.user_id AND t.not_before <= ?1
                       AND t.model NOT IN (SELECT value FROM json_each(?5))) AS first
             FROM queue_users q WHERE q.queued > 0 AND q.running < ?4
         )
         UPDATE tasks SET {CLAIMED}
         WHERE id = (SELECT first FROM pick WHERE first IS NOT NULL
                     ORDER BY running, served IS NOT NULL, served, first LIMIT 1)
           AND status = 'queued'
         RETURNING {COLUMNS}"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    Ok(stmt
        .query_row(params![now, lease_secs, worker, per_user, skip], from_row)
        .optional()?)
}

/// What a claim sets on the task it takes (?1 now, ?2 lease, ?3 worker).
const CLAIMED: &str = "status = 'running', attempts = attempts + 1, lease_until = ?1 + ?2,
     worker = ?3, started_at = COALESCE(started_at, ?1), progress = 0,
     claim_seq = (SELECT coalesce(max(claim_seq), 0) + 1 FROM tasks)";

/// PostgreSQL's claim (see `claim`): the creator, then the task, each
/// locked with SKIP LOCKED.
fn claim_locking(
    conn: &Connection,
    worker: &str,
    now: i64,
    lease_secs: i64,
    per_user: u32,
    skip: &str,
    wait: bool,
) -> AppResult<Option<Task>> {
    const WAITING: &str = "t.status = 'queued' AND t.user_id = q.user_id AND t.not_before <= ?1
         AND t.model NOT IN (SELECT json_array_elements_text(CAST(CAST(?3 AS TEXT) AS json)))";
    let pick = |lock: &str| {
        format!(
            "SELECT q.user_id, (SELECT min(t.id) FROM tasks t WHERE {WAITING}) AS first
             FROM queue_users q
             WHERE q.queued > 0 AND q.running < ?2 AND EXISTS (SELECT 1 FROM tasks t WHERE {WAITING})
             ORDER BY q.running, q.served IS NOT NULL, q.served, first
             LIMIT 1 FOR UPDATE OF q{lock}"
        )
    };
    let creator = |lock: &str| -> AppResult<Option<i64>> {
        Ok(conn
            .prepare_cached(&pick(lock))?
            .query_row(params![now, per_user, skip], |r| r.get(0))
            .optional()?)
    };
    let mut user = creator(" SKIP LOCKED")?;
    if user.is_none() && wait {
        user = creator("")?;
    }
    let Some(user) = user else {
        return Ok(None);
    };
    let sql = format!(
        "UPDATE tasks SET {CLAIMED}
         WHERE id = (SELECT t.id FROM tasks t, (SELECT CAST(?4 AS BIGINT) AS user_id) q
                     WHERE {WAITING} ORDER BY t.id LIMIT 1 FOR UPDATE OF t SKIP LOCKED)
           AND status = 'queued'
         RETURNING {COLUMNS}",
        WAITING = WAITING.replace("?3", "?5")
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![now, lease_secs, worker, user, skip], from_row)
        .optional()?)
}

/// Extends a running task's lease; false if it is no longer this worker's.
pub fn renew_lease(
    conn: &Connection,
    id: TaskId,
    worker: &str,
    until: i64,
    progress: f64,
) -> AppResult<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE tasks SET lease_until = ?3, progress = CASE WHEN progress > ?4 THEN progress ELSE ?4 END
         WHERE id = ?1 AND worker = ?2 AND status = 'running'",
        )?
        .execute(params![id, worker, until, progress])?
        == 1)
}

/// A running task's progress (never backwards).
pub fn set_progress(conn: &Connection, id: TaskId, progress: f64) -> AppResult<()> {
    conn.prepare_cached(
        "UPDATE tasks SET progress = CASE WHEN progress > ?2 THEN progress ELSE ?2 END WHERE id = ?1 AND status = 'running'",
    )?
    .execute(params![id, progress])?;
    Ok(())
}

/// running → succeeded, only if this worker still holds it.
pub fn mark_succeeded(
    conn: &Connection,
    id: TaskId,
    worker: &str,
    provider: &str,
    notice: Option<&str>,
    now: i64,
) -> AppResult<bool> {
    Ok(conn.prepare_cached("UPDATE tasks SET status = 'succeeded', progress = 1, provider = ?3, finished_at = ?4, lease_until = NULL,
                          error = NULL, error_raw = NULL, notice = ?5
         WHERE id = ?1 AND worker = ?2 AND status = 'running'")?
            .execute(params![id, worker, provider, now, notice],
    )? == 1)
}

/// `from` → failed with messages (user and raw).
pub fn mark_failed(
    conn: &Connection,
    id: TaskId,
    from: TaskStatus,
    error: &str,
    raw: &str,
    now: i64,
) -> AppResult<bool> {
    Ok(conn.prepare_cached("UPDATE tasks SET status = 'failed', error = ?3, error_raw = ?4, finished_at = ?5, lease_until = NULL
         WHERE id = ?1 AND status = ?2")?
            .execute(params![id, from.as_str(), error, raw, now],
    )? == 1)
}

/// running → queued again (a retry after `not_before`).
pub fn requeue(
    conn: &Connection,
    id: TaskId,
    not_before: i64,
    error: &str,
    raw: &str,
) -> AppResult<bool> {
    Ok(conn.prepare_cached("UPDATE tasks SET status = 'queued', not_before = ?2, lease_until = NULL, worker = NULL, progress = 0,
                          error = ?3, error_raw = ?4
         WHERE id = ?1 AND status = 'running'")?
            .execute(params![id, not_before, error, raw],
    )? == 1)
}

/// running → queued again at once, the attempt given back (it never
/// reached an upstream).
pub fn requeue_untried(
    conn: &Connection,
    id: TaskId,
    now: i64,
    error: &str,
    raw: &str,
) -> AppResult<bool> {
    Ok(conn.prepare_cached("UPDATE tasks SET status = 'queued', not_before = ?2, lease_until = NULL, worker = NULL, progress = 0,
                          attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, error = ?3, error_raw = ?4
         WHERE id = ?1 AND status = 'running'")?
            .execute(params![id, now, error, raw],
    )? == 1)
}

/// Each creator with queued tasks: (user, how many, the oldest's id).
pub fn queue_heads(conn: &Connection) -> AppResult<Vec<(UserId, i64, TaskId)>> {
    // From the trigger-kept counts: one index probe per creator with work
    // waiting, not a pass over every waiting task.
    let mut stmt = conn.prepare_cached(
        "SELECT q.user_id, q.queued,
                (SELECT min(t.id) FROM tasks t WHERE t.status = 'queued' AND t.user_id = q.user_id)
         FROM queue_users q WHERE q.queued > 0",
    )?;
    let rows = stmt.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many of the user's queued tasks are at or before `id`: their count
/// less those after it, so a recent task (what pages and the API ask about)
/// costs a few index steps however long the user's line is.
pub fn queued_up_to(conn: &Connection, user: UserId, id: TaskId) -> AppResult<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT q.queued - (SELECT count(*) FROM tasks t
                                WHERE t.status = 'queued' AND t.user_id = ?1 AND t.id > ?2)
             FROM queue_users q WHERE q.user_id = ?1",
        )?
        .query_row(params![user, id], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// The average seconds from start to finish of the model's last `n`
/// succeeded tasks (None without any).
pub fn recent_run_secs(conn: &Connection, model: &str, n: u32) -> AppResult<Option<f64>> {
    Ok(conn
        .prepare_cached(
            "SELECT avg(finished_at - started_at) FROM (
                 SELECT finished_at, started_at FROM tasks
                 WHERE model = ?1 AND status = 'succeeded' AND started_at IS NOT NULL
                 ORDER BY finished_at DESC LIMIT ?2) recent",
        )?
        .query_row(params![model, n], |r| r.get::<_, Option<f64>>(0))?)
}

/// Queued tasks of this model created before `cutoff`.
pub fn queued_before(conn: &Connection, model: &str, cutoff: i64) -> AppResult<Vec<Task>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tasks WHERE status = 'queued' AND created_at < ?2 AND model = ?1
         ORDER BY id LIMIT 1000"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![model, cutoff], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// queued|running → canceled. The row is locked as it is read, so a claim
/// on another node that moves it from queued to running meanwhile is waited
/// for, not missed.
pub fn mark_canceled(conn: &Connection, id: TaskId, now: i64) -> AppResult<Option<TaskStatus>> {
    let sql = format!(
        "SELECT status FROM tasks WHERE id = ?1{}",
        conn.for_update()
    );
    let before: Option<String> = conn.query_row(&sql, [id], |r| r.get(0)).optional()?;
    let Some(before) = before.and_then(|s| TaskStatus::parse(&s)) else {
        return Ok(None);
    };
    if before.is_final() {
        return Ok(None);
    }
    let n = conn.prepare_cached("UPDATE tasks SET status = 'canceled', finished_at = ?2, lease_until = NULL WHERE id = ?1 AND status = ?3")?
            .execute(params![id, now, before.as_str()],
    )?;
    Ok((n == 1).then_some(before))
}

/// Running tasks whose lease ran out (their worker died).
pub fn expired_leases(conn: &Connection, now: i64) -> AppResult<Vec<Task>> {
    let sql = format!("SELECT {COLUMNS} FROM tasks WHERE status = 'running' AND lease_until < ?1");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([now], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Running tasks whose worker's name starts with `prefix`.
pub fn running_on(conn: &Connection, prefix: &str) -> AppResult<Vec<Task>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tasks WHERE status = 'running' AND substr(worker, 1, length(CAST(?1 AS TEXT))) = CAST(?1 AS TEXT)"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([prefix], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn status_of(conn: &Connection, id: TaskId) -> AppResult<Option<TaskStatus>> {
    let s: Option<String> = conn
        .query_row("SELECT status FROM tasks WHERE id = ?1", [id], |r| r.get(0))
        .optional()?;
    Ok(s.and_then(|s| TaskStatus::parse(&s)))
}

/// The task and body digest remembered for an `Idempotency-Key`.
pub fn idempotency_get(
    conn: &Connection,
    user: UserId,
    key: &str,
) -> AppResult<Option<(String, TaskId)>> {
    Ok(conn
        .prepare_cached(
            "SELECT body_hash, task_id FROM idempotency WHERE user_id = ?1 AND key = ?2",
        )?
        .query_row(params![user, key], |r| Ok((r.get(0)?, TaskId(r.get(1)?))))
        .optional()?)
}

pub fn idempotency_put(
    conn: &Connection,
    user: UserId,
    key: &str,
    body_hash: &str,
    task: TaskId,
    now: i64,
) -> AppResult<()> {
    conn.prepare_cached(
        "INSERT INTO idempotency (user_id, key, body_hash, task_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![user, key, body_hash, task.0, now])?;
    Ok(())
}

/// Forgets idempotency keys older than `before`.
pub fn idempotency_sweep(conn: &Connection, before: i64) -> AppResult<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM idempotency WHERE created_at < ?1")?
        .execute([before])?)
}

pub fn idempotency_delete(conn: &Connection, user: UserId, key: &str) -> AppResult<()> {
    conn.prepare_cached("DELETE FROM idempotency WHERE user_id = ?1 AND key = ?2")?
        .execute(params![user, key])?;
    Ok(())
}
