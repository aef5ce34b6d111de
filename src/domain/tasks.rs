//! Generation tasks: what a creator may ask for, and every change of a task's
//! state. The web studio, the API, the CLI and the queue workers all go
//! through these functions.

use rusqlite::{Connection, Transaction};

use crate::config::Config;
use crate::db;
use crate::error::{AppError, AppResult};
use crate::model::{Task, TaskId, TaskStatus, UserId};

use super::assets::new_public_id;
use super::catalog::Catalog;

pub const MAX_PROMPT_CHARS: usize = 4000;
pub const MAX_NEGATIVE_CHARS: usize = 2000;
pub const MAX_SEED: i64 = u32::MAX as i64;

/// A request for images, as the studio form or the API sends it.
#[derive(Debug, Default, Clone)]
pub struct NewTaskInput {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub model: String,
    pub size: Option<String>,
    pub aspect_ratio: Option<String>,
    pub resolution: Option<u32>,
    pub n: Option<u32>,
    pub seed: Option<i64>,
    pub webhook_url: Option<String>,
    /// Public ids of the user's uploaded reference images.
    pub references: Vec<String>,
    /// For an edit: an uploaded mask, transparent where the first reference
    /// may change.
    pub mask: Option<String>,
    /// Set when an API key submits: its limits are checked in the same
    /// transaction as the insert.
    pub api_key: Option<super::apikeys::KeyQuota>,
    /// `Idempotency-Key` and the SHA-256 of the request body.
    pub idempotency: Option<(String, String)>,
    /// Where the request came from (kept with a blocked attempt).
    pub client_ip: Option<String>,
}

pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The task an earlier request with the same `Idempotency-Key` made: Ok(None)
/// if the key is new, 409 if it came with a different body.
pub fn replay(
    conn: &Connection,
    user: UserId,
    key: &str,
    body_hash: &str,
) -> AppResult<Option<Task>> {
    match db::tasks::idempotency_get(conn, user, key)? {
        None => Ok(None),
        Some((hash, task)) if hash == body_hash => db::tasks::by_id(conn, task),
        Some(_) => Err(AppError::Conflict(
            "This Idempotency-Key was already used with a different request body.".into(),
        )),
    }
}

/// Webhook URLs are checked by the SSRF guard when saved (and again when
/// called).
fn validate_webhook(url: &str, allow_private: bool) -> AppResult<()> {
    super::ssrf::check(url, &super::ssrf::SystemResolver, allow_private)
        .map(|_| ())
        .map_err(|e| {
            AppError::invalid(
                "webhook_url",
                format!("The webhook URL cannot be used: {e}"),
            )
        })
}

/// Checks a request against the catalogue and queues it.
pub fn submit(
    conn: &mut Connection,
    catalog: &Catalog,
    user: UserId,
    input: &NewTaskInput,
) -> AppResult<Task> {
    submit_replayable(conn, catalog, user, input).map(|(t, _)| t)
}

/// As `submit`; the flag is true when an earlier request with the same
/// `Idempotency-Key` made the task.
pub fn submit_replayable(
    conn: &mut Connection,
    catalog: &Catalog,
    user: UserId,
    input: &NewTaskInput,
) -> AppResult<(Task, bool)> {
    if let Some((key, _)) = &input.idempotency {
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !key.is_ascii() {
            return Err(AppError::invalid(
                "Idempotency-Key",
                format!("The Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} ASCII characters."),
            ));
        }
    }
    let prompt = input.prompt.trim();
    if prompt.is_empty() {
        return Err(AppError::invalid(
            "prompt",
            "Describe the image you want in the prompt.",
        ));
    }
    if prompt.chars().count() > MAX_PROMPT_CHARS {
        return Err(AppError::invalid(
            "prompt",
            format!("The prompt is too long: at most {MAX_PROMPT_CHARS} characters."),
        ));
    }
    let negative = input.negative_prompt.as_deref().unwrap_or("").trim();
    if negative.chars().count() > MAX_NEGATIVE_CHARS {
        return Err(AppError::invalid(
            "negative_prompt",
            format!("The negative prompt is too long: at most {MAX_NEGATIVE_CHARS} characters."),
        ));
    }
    super::bans::ensure(conn, user, super::bans::Action::Generate)?;
    if !input.references.is_empty() || input.mask.as_deref().is_some_and(|m| !m.trim().is_empty()) {
        super::bans::ensure(conn, user, super::bans::Action::Upload)?;
    }
    if let Some(hit) = catalog.moderator.check(prompt, negative)? {
        let origin = super::bans::Origin {
            user: Some(user),
            api_key: input.api_key.as_ref().map(|q| q.key_id),
            ip: input.client_ip.clone(),
        };
        let text = if hit.field == "negative_prompt" {
            negative
        } else {
            prompt
        };
        return Err(super::bans::blocked(
            conn,
            &catalog.moderation,
            &origin,
            &hit,
            text,
        )?);
    }
    let model = catalog.model(input.model.trim())?;
    let (width, height) = model.resolve_size(
        input.size.as_deref(),
        input.aspect_ratio.as_deref(),
        input.resolution,
    )?;
    let n = input.n.unwrap_or(1);
    if n == 0 || n > model.max_n {
        return Err(AppError::invalid(
            "n",
            format!("{} makes 1 to {} images per task.", model.name, model.max_n),
        ));
    }
    let seed = match input.seed {
        Some(s) if (0..=MAX_SEED).contains(&s) => s,
        Some(_) => {
            return Err(AppError::invalid(
                "seed",
                format!("The seed must be between 0 and {MAX_SEED}."),
            ))
        }
        None => (rand::random::<u32>()) as i64,
    };
    let webhook = input
        .webhook_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    if let Some(url) = webhook {
        validate_webhook(url, catalog.allow_private_webhooks)?;
    }
    if input.references.len() > super::uploads::MAX_REFERENCES {
        return Err(AppError::invalid(
            "reference_images",
            format!(
                "At most {} reference images per task.",
                super::uploads::MAX_REFERENCES
            ),
        ));
    }
    if !input.references.is_empty() && !model.reference_images {
        return Err(AppError::invalid(
            "reference_images",
            format!("{} does not take reference images.", model.name),
        ));
    }
    let references = input
        .references
        .iter()
        .map(|r| super::uploads::own_reference(conn, user, r.trim()))
        .collect::<AppResult<Vec<_>>>()?;
    let mask = match input
        .mask
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        None => None,
        Some(m) => {
            if references.is_empty() {
                return Err(AppError::invalid("mask", "A mask needs an image to edit."));
            }
            Some(
                super::uploads::own_reference(conn, user, m).map_err(|e| match e {
                    AppError::Invalid { message, .. } => AppError::invalid("mask", message),
                    other => other,
                })?,
            )
        }
    };
    let cost = (model.price as i64).saturating_mul(n as i64);
    let item = Prepared {
        public_id: new_public_id("tsk"),
        user,
        model: model.id.clone(),
        prompt: prompt.to_string(),
        negative: negative.to_string(),
        width,
        height,
        n,
        seed,
        webhook: webhook.map(str::to_string),
        cost,
        references: references.iter().map(|r| r.id).collect(),
        mask: mask.as_ref().map(|m| m.id),
        api_key: input.api_key.clone(),
        idempotency: input.idempotency.clone(),
        now: super::now(),
    };
    static SUBMITS: std::sync::OnceLock<db::Batcher<Prepared, (Task, bool)>> =
        std::sync::OnceLock::new();
    SUBMITS
        .get_or_init(Default::default)
        .run(conn, item, insert_prepared)
}

/// A checked submission, ready to be written.
struct Prepared {
    public_id: String,
    user: UserId,
    model: String,
    prompt: String,
    negative: String,
    width: u32,
    height: u32,
    n: u32,
    seed: i64,
    webhook: Option<String>,
    cost: i64,
    references: Vec<crate::model::AssetId>,
    mask: Option<crate::model::AssetId>,
    api_key: Option<super::apikeys::KeyQuota>,
    idempotency: Option<(String, String)>,
    now: i64,
}

/// The write half of a submission: the key's limits, the task, its images,
/// the charge and the idempotency record, all in the caller's transaction
/// (submissions are group-committed; see `db::Batcher`).
fn insert_prepared(tx: &rusqlite::Transaction, p: &Prepared) -> AppResult<(Task, bool)> {
    if let Some((key, hash)) = &p.idempotency {
        if let Some(task) = replay(tx, p.user, key, hash)? {
            return Ok((task, true));
        }
    }
    // Again inside the write: a restriction imposed since the checks above.
    super::bans::ensure(tx, p.user, super::bans::Action::Generate)?;
    if !p.references.is_empty() || p.mask.is_some() {
        super::bans::ensure(tx, p.user, super::bans::Action::Upload)?;
    }
    if let Some(q) = &p.api_key {
        super::apikeys::check_quota(tx, q, &p.model)?;
    }
    let id = db::tasks::insert(
        tx,
        &db::tasks::NewTask {
            public_id: &p.public_id,
            user_id: p.user,
            model: &p.model,
            prompt: &p.prompt,
            negative_prompt: &p.negative,
            width: p.width,
            height: p.height,
            n: p.n,
            seed: p.seed,
            webhook_url: p.webhook.as_deref(),
            cost: p.cost,
            api_key_id: p.api_key.as_ref().map(|q| q.key_id),
            now: p.now,
        },
    )?;
    for (i, r) in p.references.iter().enumerate() {
        db::assets::attach_reference(tx, id, *r, i as u32)?;
    }
    if let Some(m) = p.mask {
        db::assets::attach_mask(tx, id, m)?;
    }
    super::wallet::charge_task(tx, p.user, id, p.cost, p.now)?;
    if let Some((key, hash)) = &p.idempotency {
        db::tasks::idempotency_put(tx, p.user, key, hash, id, p.now)?;
    }
    Ok((db::tasks::by_id(tx, id)?.ok_or(AppError::NotFound)?, false))
}

pub use super::task_views::{get, list, output_view, present, view, OutputView, TaskView};

/// Cancels a queued task at once, or a running one (its result is
/// discarded). A finished task cannot be canceled.
pub fn cancel(conn: &mut Connection, user: UserId, public_id: &str) -> AppResult<TaskView> {
    let task = db::tasks::by_public_id(conn, user, public_id)?.ok_or(AppError::NotFound)?;
    let now = super::now();
    let changed = db::write(conn, |tx| {
        let changed = db::tasks::mark_canceled(tx, task.id, now)?;
        if changed.is_some() {
            super::wallet::refund_task(tx, task.user_id, task.id, task.n, task.n, "Canceled", now)?;
            super::webhooks::enqueue(tx, &task, TaskStatus::Canceled, now)?;
        }
        Ok(changed)
    })?;
    if changed.is_none() {
        let now = db::tasks::by_id(conn, task.id)?.ok_or(AppError::NotFound)?;
        if now.status != TaskStatus::Canceled {
            return Err(AppError::Conflict(format!(
                "The task has already {}.",
                now.status.as_str()
            )));
        }
    }
    get(conn, user, public_id)
}

// ---- the queue's side ----

/// How long a worker's claim lasts without renewal.
pub fn lease_secs(config: &Config) -> i64 {
    (config.queue.task_timeout_secs as i64 / 4).clamp(15, 120)
}

/// Waiting time before retry number `attempt` (1-based): 5 s, 20 s, 80 s...
pub fn backoff_secs(attempt: u32) -> i64 {
    5i64.saturating_mul(4i64.saturating_pow(attempt.saturating_sub(1).min(6)))
}

pub fn claim(conn: &mut Connection, config: &Config, worker: &str) -> AppResult<Option<Task>> {
    db::write(conn, |tx| claim_in(tx, config, worker))
}

fn claim_in(conn: &Connection, config: &Config, worker: &str) -> AppResult<Option<Task>> {
    let (now, lease, per_user) = (
        super::now(),
        lease_secs(config),
        config.queue.per_user_concurrency,
    );
    db::tasks::claim(conn, worker, now, lease, per_user)
}

/// When `worker` is given, claims its next task inside the transaction that
/// records the last one, so a busy worker commits once per task. A failing
/// claim is rolled back alone (the outcome before it stands) and the worker
/// claims again on its own.
fn claim_next(tx: &Transaction, config: &Config, worker: Option<&str>) -> AppResult<Option<Task>> {
    let Some(worker) = worker else {
        return Ok(None);
    };
    tx.execute_batch("SAVEPOINT claim_next")?;
    let claimed = claim_in(tx, config, worker);
    if claimed.is_err() {
        tx.execute_batch("ROLLBACK TO claim_next")?;
    }
    tx.execute_batch("RELEASE claim_next")?;
    Ok(claimed.unwrap_or_else(|e| {
        tracing::warn!(worker, "claiming the next task failed: {e}");
        None
    }))
}

/// Records a success: stores the images and marks the task succeeded, in one
/// transaction (false if the task was canceled meanwhile: nothing is kept).
/// With `claim`, the worker's next task is claimed in the same transaction
/// (see `claim_next`).
pub fn complete_then(
    conn: &mut Connection,
    config: &Config,
    task: &Task,
    worker: &str,
    provider: &str,
    images: &[super::assets::Prepared],
    claim: bool,
) -> AppResult<(bool, Option<Task>)> {
    let now = super::now();
    let mut written = Vec::with_capacity(images.len());
    for p in images {
        match super::assets::write_result(config, task.user_id, p) {
            Ok(w) => written.push(w),
            Err(e) => {
                super::assets::unwrite(config, &written);
                return Err(e);
            }
        }
    }
    let result = db::write(conn, |tx| {
        // Canceled (or taken over) meanwhile: keep nothing.
        let kept = db::tasks::mark_succeeded(tx, task.id, worker, provider, now)?;
        if kept {
            for (p, w) in images.iter().zip(&written) {
                super::assets::record_result(tx, config, task.user_id, task.id, p, w, now)?;
            }
            let missing = task.n.saturating_sub(images.len() as u32);
            if missing > 0 {
                let reason = format!("{missing} of {} images were not made", task.n);
                super::wallet::refund_task(
                    tx,
                    task.user_id,
                    task.id,
                    missing,
                    task.n,
                    &reason,
                    now,
                )?;
            }
            super::webhooks::enqueue(tx, task, TaskStatus::Succeeded, now)?;
        }
        Ok((kept, claim_next(tx, config, claim.then_some(worker))?))
    });
    if !matches!(result, Ok((true, _))) {
        super::assets::unwrite(config, &written);
    }
    result
}

/// What to do after a failed attempt.
pub enum Failure<'a> {
    /// Temporary: retried after a backoff while attempts remain.
    Temporary { message: &'a str, raw: &'a str },
    /// Final: the task fails now.
    Final { message: &'a str, raw: &'a str },
}

/// Fails or requeues a running task; returns its new status.
pub fn fail(
    conn: &mut Connection,
    config: &Config,
    task: &Task,
    failure: Failure<'_>,
) -> AppResult<TaskStatus> {
    Ok(fail_then(conn, config, task, failure, None)?.0)
}

/// `fail`, and with `claim` (a worker) that worker's next task claimed in
/// the same transaction (see `claim_next`).
pub fn fail_then(
    conn: &mut Connection,
    config: &Config,
    task: &Task,
    failure: Failure<'_>,
    claim: Option<&str>,
) -> AppResult<(TaskStatus, Option<Task>)> {
    db::write(conn, |tx| {
        let status = fail_in(tx, config, task, failure)?;
        Ok((status, claim_next(tx, config, claim)?))
    })
}

fn fail_in(
    tx: &Transaction,
    config: &Config,
    task: &Task,
    failure: Failure<'_>,
) -> AppResult<TaskStatus> {
    let now = super::now();
    let current = db::tasks::by_id(tx, task.id)?.ok_or(AppError::NotFound)?;
    if current.status != TaskStatus::Running {
        return Ok(current.status);
    }
    match failure {
        Failure::Temporary { message, raw } if current.attempts < config.queue.max_attempts => {
            db::tasks::requeue(
                tx,
                task.id,
                now + backoff_secs(current.attempts),
                message,
                raw,
            )?;
            Ok(TaskStatus::Queued)
        }
        Failure::Temporary { message, raw } | Failure::Final { message, raw } => {
            if db::tasks::mark_failed(tx, task.id, TaskStatus::Running, message, raw, now)? {
                let refunded = super::wallet::refund_task(
                    tx,
                    task.user_id,
                    task.id,
                    task.n,
                    task.n,
                    "Failed",
                    now,
                )?;
                super::webhooks::enqueue(tx, &current, TaskStatus::Failed, now)?;
                super::messages::task_failed(tx, &current, message, refunded, now)?;
            }
            Ok(TaskStatus::Failed)
        }
    }
}

/// Running tasks whose worker vanished (crash, kill -9): those whose lease
/// ended before `cutoff` are retried if attempts remain, else failed. At
/// start-up every running task is such a task (`cutoff` = i64::MAX).
/// Returns the tasks touched.
pub fn recover_leases(
    conn: &mut Connection,
    config: &Config,
    cutoff: i64,
) -> AppResult<Vec<(TaskId, TaskStatus)>> {
    let expired = db::tasks::expired_leases(conn, cutoff)?;
    let mut out = Vec::new();
    for task in expired {
        let status = fail(
            conn,
            config,
            &task,
            Failure::Temporary {
                message: "The task was interrupted and could not be finished. Please try again.",
                raw: "lease expired: the worker stopped while running the task",
            },
        )?;
        out.push((task.id, status));
    }
    Ok(out)
}

/// An admin cancels any user's task by its id.
pub fn cancel_by_admin(conn: &mut Connection, public_id: &str) -> AppResult<TaskView> {
    let task = db::tasks::by_public_id_any_user(conn, public_id)?.ok_or(AppError::NotFound)?;
    cancel(conn, task.user_id, public_id)
}

/// Recent tasks of every user (admin view), with the owner's e-mail.
pub fn list_all(
    conn: &Connection,
    status: Option<TaskStatus>,
    limit: u32,
) -> AppResult<Vec<(Task, String)>> {
    let tasks = db::tasks::list_all(conn, status, limit.clamp(1, 10_000))?;
    tasks
        .into_iter()
        .map(|t| {
            let email = super::audit::email_of(conn, t.user_id)?;
            Ok((t, email))
        })
        .collect()
}
