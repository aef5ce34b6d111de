//! What a queue worker asks while it runs a task: the task's inputs, its
//! lease, its progress, and whether it is still wanted.

use crate::domain::Connection;

use crate::domain::db;
use crate::error::AppResult;
use crate::model::{Asset, TaskId, TaskStatus};

/// The task's reference images in order, and its mask if it has one. The
/// caller reads their bytes after giving the connection back.
pub fn inputs(conn: &Connection, task: TaskId) -> AppResult<(Vec<Asset>, Option<Asset>)> {
    Ok((
        db::assets::references_of_task(conn, task)?,
        db::assets::mask_of_task(conn, task)?,
    ))
}

/// Extends the worker's claim to `until`, recording `progress`. False when
/// the task is no longer this worker's (canceled, or taken over after the
/// lease ran out): the worker stops and keeps nothing.
pub fn renew_lease(
    conn: &Connection,
    task: TaskId,
    worker: &str,
    until: i64,
    progress: f64,
) -> AppResult<bool> {
    db::tasks::renew_lease(conn, task, worker, until, progress)
}

/// Records progress (never backwards) when `moved`, and returns the task's
/// status now: anything but running tells the worker to stop.
pub fn report_progress(
    conn: &Connection,
    task: TaskId,
    progress: Option<f64>,
) -> AppResult<Option<TaskStatus>> {
    if let Some(p) = progress {
        db::tasks::set_progress(conn, task, p)?;
    }
    db::tasks::status_of(conn, task)
}

/// The task's status now (None if its row is gone).
pub fn status(conn: &Connection, task: TaskId) -> AppResult<Option<TaskStatus>> {
    db::tasks::status_of(conn, task)
}
