//! Generation tasks: what a creator may ask for, and every change of a task's
//! state. The web studio, the API, the CLI and the queue workers all go
//! through these functions.

use crate::domain::{Connection, Transaction};

use crate::config::Config;
use crate::domain::db;
use crate::error::{AppError, AppResult};
use crate::model::{Task, TaskStatus, UserId};

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
    /// The reference images: uploaded ids, or images sent with the request.
    pub references: Vec<ImageInput>,
    /// For an edit: the mask, transparent where the first reference may
    /// change.
    pub mask: Option<ImageInput>,
    /// Set when an API key submits: its limits are checked in the same
    /// transaction as the insert.
    pub api_key: Option<super::apikeys::KeyQuota>,
    /// `Idempotency-Key` and the SHA-256 of the request body.
    pub idempotency: Option<(String, String)>,
    /// Where the request came from (kept with a blocked attempt).
    pub client_ip: Option<String>,
}

pub const MAX_IDEMPOTENCY_KEY: usize = 255;

pub use super::submission::{replay, ImageInput};

/// Checks a request and queues it, all while holding `conn` (the CLI and
/// tests; request handlers go through `submission`'s three steps so that
/// decoding and name resolution never hold a connection).
pub fn submit(
    conn: &mut Connection,
    config: &Config,
    catalog: &Catalog,
    user: UserId,
    input: &NewTaskInput,
) -> AppResult<Task> {
    super::submission::submit_here(conn, config, catalog, user, input.clone()).map(|(t, _)| t)
}

pub use super::task_views::{
    get, list, output_view, place_in_queue, present, view, OutputView, QueueSpot, TaskView,
};

/// Cancels a queued task at once, or a running one (its result is
/// discarded). A finished task cannot be canceled.
pub fn cancel(conn: &mut Connection, user: UserId, public_id: &str) -> AppResult<TaskView> {
    let task = db::tasks::by_public_id(conn, user, public_id)?.ok_or(AppError::NotFound)?;
    let now = super::now();
    let changed = db::write(conn, |tx| cancel_refunded(tx, &task, "Canceled", now))?;
    if !changed {
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

/// The one way a task is canceled, by its creator, an admin, a ban or an
/// account deletion: marked canceled (if it has not finished), its whole
/// charge refunded through the ledger and its webhook queued, in the
/// caller's transaction. False when the task had already finished.
pub(super) fn cancel_refunded(
    tx: &Connection,
    task: &Task,
    reason: &str,
    now: i64,
) -> AppResult<bool> {
    if db::tasks::mark_canceled(tx, task.id, now)?.is_none() {
        return Ok(false);
    }
    super::wallet::refund_task(tx, task.user_id, task.id, task.n, task.n, reason, now)?;
    super::webhooks::enqueue(tx, task, TaskStatus::Canceled, now)?;
    Ok(true)
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
    claim_skipping(conn, config, worker, &[])
}

/// `claim`, leaving queued the tasks of `skip_models` (models whose every
/// provider is down: their tasks wait in line rather than fail).
pub fn claim_skipping(
    conn: &mut Connection,
    config: &Config,
    worker: &str,
    skip_models: &[String],
) -> AppResult<Option<Task>> {
    db::write_rows(conn, |tx| claim_in(tx, config, worker, skip_models, true))
}

/// With `wait`, the claim may wait for a row another worker holds (see
/// `db::tasks::claim`).
fn claim_in(
    conn: &Connection,
    config: &Config,
    worker: &str,
    skip_models: &[String],
    wait: bool,
) -> AppResult<Option<Task>> {
    let (now, lease, per_user) = (
        super::now(),
        lease_secs(config),
        config.queue.per_user_concurrency,
    );
    db::tasks::claim(conn, worker, now, lease, per_user, skip_models, wait)
}

/// The worker that records an outcome and, in the same transaction, claims
/// its next task (skipping the models whose providers are all down).
#[derive(Clone, Copy)]
pub struct Next<'a> {
    pub worker: &'a str,
    pub skip_models: &'a [String],
}

/// When `worker` is given, claims its next task inside the transaction that
/// records the last one, so a busy worker commits once per task. A failing
/// claim is rolled back alone (the outcome before it stands) and the worker
/// claims again on its own.
fn claim_next(
    tx: &Transaction,
    config: &Config,
    next: Option<Next<'_>>,
) -> AppResult<Option<Task>> {
    let Some(Next {
        worker,
        skip_models,
    }) = next
    else {
        return Ok(None);
    };
    let claimed = db::savepoint(tx, || claim_in(tx, config, worker, skip_models, false));
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
    stored: StoredResults<'_>,
    next: Option<Next<'_>>,
) -> AppResult<(bool, Option<Task>)> {
    let now = super::now();
    let StoredResults {
        fitted,
        written,
        made,
    } = stored;
    let images = fitted.images;
    // How many of the written images end up kept (the extra ones only as
    // far as the creator's credits go).
    let mut recorded = 0;
    let result = db::write(conn, |tx| {
        let n = task.n as usize;
        let offered = images.len().saturating_sub(n);
        let (extra, extra_cost) = affordable_extra(tx, task, offered)?;
        let mut notes = fitted.notes.clone();
        if let Some(note) = extra_note(task, made, offered, extra) {
            notes.insert(0, note);
        }
        let notice = (!notes.is_empty()).then(|| notes.join("\n"));
        // Canceled (or taken over) meanwhile: keep nothing.
        let kept =
            db::tasks::mark_succeeded(tx, task.id, worker, provider, notice.as_deref(), now)?;
        recorded = 0;
        if kept {
            let keep = images.len().min(n) + extra;
            for (p, w) in images.iter().zip(&written).take(keep) {
                super::assets::record_result(tx, config, task.user_id, task.id, p, w, now)?;
            }
            recorded = keep;
            super::wallet::charge_extra(tx, task.user_id, task.id, extra_cost, now)?;
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
        Ok((kept, claim_next(tx, config, next)?))
    });
    if matches!(result, Ok((true, _))) {
        super::assets::unwrite(config, &written[recorded.min(written.len())..]);
    } else {
        super::assets::unwrite(config, &written);
    }
    result
}

/// A task's images written to storage, not yet recorded.
pub struct StoredResults<'a> {
    fitted: Fitted<'a>,
    written: Vec<super::assets::Written>,
    made: usize,
}

/// Completing, step 1: writes the images that may be kept to storage, with
/// no database connection held (storage may be a bucket across the
/// network). On an error nothing written is left behind; the caller fails
/// the attempt as temporary, so the task runs again later.
pub fn store_results<'a>(
    config: &Config,
    task: &Task,
    images: &'a [super::assets::Prepared],
) -> AppResult<StoredResults<'a>> {
    let charge_extra = config
        .models
        .iter()
        .any(|m| m.id == task.model && m.charge_extra_images);
    let fitted = fit_results(task, images, charge_extra);
    let mut written = Vec::with_capacity(fitted.images.len());
    for p in fitted.images {
        match super::assets::write_result(config, task.user_id, p) {
            Ok(w) => written.push(w),
            Err(e) => {
                super::assets::unwrite(config, &written);
                return Err(e);
            }
        }
    }
    Ok(StoredResults {
        fitted,
        written,
        made: images.len(),
    })
}

/// Of `offered` extra images, how many the creator's credits pay for at
/// the task's price per image, and what they cost.
fn affordable_extra(tx: &Transaction, task: &Task, offered: usize) -> AppResult<(usize, i64)> {
    if offered == 0 {
        return Ok((0, 0));
    }
    let price = task.cost / i64::from(task.n.max(1));
    if price <= 0 {
        return Ok((offered, 0));
    }
    let available = super::wallet::get(tx, task.user_id)?.total();
    let extra = (available / price).clamp(0, offered as i64) as usize;
    Ok((extra, price.saturating_mul(extra as i64)))
}

/// What the creator is told about images beyond those asked for: `offered`
/// of them could be kept (0 unless the model charges extra images), `extra`
/// are (the credits paid for them).
fn extra_note(task: &Task, made: usize, offered: usize, extra: usize) -> Option<String> {
    let n = task.n as usize;
    if made <= n {
        return None;
    }
    Some(if extra > 0 && extra == offered {
        format!("The image service made {made} images where {n} were asked for; the {extra} extra ones are kept and charged.")
    } else if extra > 0 {
        format!("The image service made {made} images where {n} were asked for; {extra} extra ones are kept and charged, as many as your credits allowed.")
    } else {
        format!("The image service made {made} images where {n} were asked for; only the first ones are kept.")
    })
}

/// What an image service made, held against what was asked.
pub struct Fitted<'a> {
    /// The images that may be kept: at most `n`, or all of them (up to 10)
    /// when the model charges extra images.
    pub images: &'a [super::assets::Prepared],
    /// Sentences for the creator about missing images (refunded) and about
    /// a size other than the one asked for; extra images are told about
    /// when it is known how many are kept.
    pub notes: Vec<String>,
}

/// Holds what an image service made against what was asked (see `Fitted`).
pub fn fit_results<'a>(
    task: &Task,
    images: &'a [super::assets::Prepared],
    charge_extra: bool,
) -> Fitted<'a> {
    let (n, made) = (task.n as usize, images.len());
    let mut notes = Vec::new();
    if made > 0 && made < n {
        notes.push(format!(
            "The image service made {made} of the {n} images asked for; the missing ones are refunded."
        ));
    }
    let keep = if charge_extra {
        made.min(n.max(10))
    } else {
        made.min(n)
    };
    let kept = &images[..keep];
    if let Some(other) = kept
        .iter()
        .find(|p| (p.width, p.height) != (task.width, task.height))
    {
        let (w, h, asked) = (
            other.width,
            other.height,
            format!("{}×{}", task.width, task.height),
        );
        notes.push(format!(
            "The image service made {w}×{h} images instead of the {asked} asked for."
        ));
    }
    Fitted {
        images: kept,
        notes,
    }
}

/// What to do after a failed attempt.
pub enum Failure<'a> {
    /// Temporary: retried after a backoff while attempts remain.
    Temporary { message: &'a str, raw: &'a str },
    /// Final: the task fails now.
    Final { message: &'a str, raw: &'a str },
    /// Every provider of the model is down: the task goes back to the
    /// queue without using an attempt (it never reached a GPU) and waits
    /// there, up to `queue.max_wait_secs` from its creation.
    Postponed { message: &'a str, raw: &'a str },
}

/// What a creator reads when a task waited `queue.max_wait_secs` for an
/// image service that stayed down.
fn waited_too_long(config: &Config, cause: &str) -> String {
    let minutes = config.queue.max_wait_secs.div_ceil(60);
    format!(
        "The task waited {minutes} min for an image service that stayed down, and was refunded: {cause}"
    )
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

/// `fail`, and with `next` that worker's next task claimed in the same
/// transaction (see `claim_next`).
pub fn fail_then(
    conn: &mut Connection,
    config: &Config,
    task: &Task,
    failure: Failure<'_>,
    next: Option<Next<'_>>,
) -> AppResult<(TaskStatus, Option<Task>)> {
    db::write(conn, |tx| {
        let status = fail_in(tx, config, task, failure)?;
        Ok((status, claim_next(tx, config, next)?))
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
    if let Failure::Postponed { message, raw } = failure {
        let waited = now.saturating_sub(current.created_at);
        if waited < config.queue.max_wait_secs as i64
            && db::tasks::requeue_untried(tx, task.id, now, message, raw)?
        {
            return Ok(TaskStatus::Queued);
        }
        let message = waited_too_long(config, message);
        return fail_in(
            tx,
            config,
            task,
            Failure::Final {
                message: &message,
                raw,
            },
        );
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
        Failure::Temporary { message, raw }
        | Failure::Final { message, raw }
        | Failure::Postponed { message, raw } => {
            fail_refunded(tx, &current, TaskStatus::Running, message, raw, now)?;
            Ok(TaskStatus::Failed)
        }
    }
}

/// `from` → failed, in one transaction with what follows a failure: the
/// whole charge refunded, the webhook queued, the creator's inbox told.
/// False (nothing written) when the task was no longer `from`.
fn fail_refunded(
    tx: &Transaction,
    task: &Task,
    from: TaskStatus,
    message: &str,
    raw: &str,
    now: i64,
) -> AppResult<bool> {
    if !db::tasks::mark_failed(tx, task.id, from, message, raw, now)? {
        return Ok(false);
    }
    let refunded =
        super::wallet::refund_task(tx, task.user_id, task.id, task.n, task.n, "Failed", now)?;
    super::webhooks::enqueue(tx, task, TaskStatus::Failed, now)?;
    super::messages::task_failed(tx, task, message, refunded, now)?;
    Ok(true)
}

/// Fails (refunded) the tasks of `model` that have waited in the queue
/// longer than `queue.max_wait_secs` while every provider of the model was
/// down, each with what its last attempt was told (else `down_because`).
/// Returns how many.
pub fn expire_waiting(
    conn: &mut Connection,
    config: &Config,
    model: &str,
    down_because: &str,
) -> AppResult<usize> {
    let now = super::now();
    let cutoff = now.saturating_sub(config.queue.max_wait_secs as i64);
    let stale = db::tasks::queued_before(conn, model, cutoff)?;
    let mut failed = 0;
    for task in stale {
        // What its last attempt was told, else why the providers are down.
        let cause = task.error.clone().unwrap_or_else(|| down_because.into());
        let raw = task.error_raw.clone().unwrap_or_default();
        let message = waited_too_long(config, &cause);
        db::write(conn, |tx| {
            if fail_refunded(tx, &task, TaskStatus::Queued, &message, &raw, now)? {
                failed += 1;
            }
            Ok(())
        })?;
    }
    Ok(failed)
}

/// Running tasks whose worker vanished (crash, kill -9): those whose lease
/// ended before `cutoff` are retried if attempts remain, else failed. At
/// start-up every running task is such a task (`cutoff` = i64::MAX).
/// Returns the tasks touched.
pub fn recover_leases(
    conn: &mut Connection,
    config: &Config,
    cutoff: i64,
) -> AppResult<Vec<(Task, TaskStatus)>> {
    let expired = db::tasks::expired_leases(conn, cutoff)?;
    give_back(
        conn,
        config,
        expired,
        "lease expired: the worker stopped while running the task",
    )
}

/// Gives back to the queue (or fails, like `recover_leases`) the running
/// tasks of workers whose names start with `worker_prefix`: this node's
/// earlier process, on a database other nodes share.
pub fn recover_node(
    conn: &mut Connection,
    config: &Config,
    worker_prefix: &str,
) -> AppResult<Vec<(Task, TaskStatus)>> {
    let mine = db::tasks::running_on(conn, worker_prefix)?;
    give_back(conn, config, mine, "the node running the task restarted")
}

/// Interrupted running tasks back to the queue (or failed when no attempt
/// is left), `raw` saying why for the operator.
fn give_back(
    conn: &mut Connection,
    config: &Config,
    tasks: Vec<Task>,
    raw: &str,
) -> AppResult<Vec<(Task, TaskStatus)>> {
    let mut out = Vec::new();
    for task in tasks {
        let status = fail(
            conn,
            config,
            &task,
            Failure::Temporary {
                message: "The task was interrupted and could not be finished. Please try again.",
                raw,
            },
        )?;
        out.push((task, status));
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
