//! The read side of tasks: a task as its owner sees it (with its images),
//! one, a page of them, and the API's presentation with signed image links.

use rusqlite::Connection;
use serde::Serialize;

use crate::config::Config;
use crate::db;
use crate::error::{AppError, AppResult};
use crate::model::{Asset, Task, TaskId, TaskStatus, UserId};

/// A task as its owner sees it, with its images.
#[derive(Debug, Clone, Hash, Serialize)]
pub struct TaskView {
    #[serde(flatten)]
    pub task: Task,
    pub outputs: Vec<OutputView>,
    /// The reference images it was given that are still kept (the studio's
    /// card shows them; the API's task object does not carry them).
    #[serde(skip)]
    pub references: Vec<OutputView>,
}

#[derive(Debug, Clone, Hash, Serialize)]
pub struct OutputView {
    pub id: String,
    pub url: String,
    pub preview_url: String,
    pub width: u32,
    pub height: u32,
    pub expires_at: i64,
}

pub fn output_view(a: &Asset) -> OutputView {
    OutputView {
        id: a.public_id.clone(),
        url: format!("/media/{}", a.public_id),
        preview_url: format!("/media/{}/preview", a.public_id),
        width: a.width,
        height: a.height,
        expires_at: a.expires_at,
    }
}

/// A task as the API and webhooks show it: image URLs are signed, expiring,
/// absolute links (the receiver has no session cookie).
pub fn present(config: &Config, secret: &[u8], view: &TaskView) -> serde_json::Value {
    let now = super::now();
    let mut v = serde_json::json!(view);
    if let Some(outputs) = v.get_mut("outputs").and_then(|o| o.as_array_mut()) {
        for (o, out) in outputs.iter_mut().zip(&view.outputs) {
            let asset = (out.id.as_str(), out.expires_at);
            o["url"] = super::links::media_url(config, secret, asset, "", now).into();
            o["preview_url"] =
                super::links::media_url(config, secret, asset, "/preview", now).into();
            o["url_expires_at"] = super::links::expiry(config, out.expires_at, now).into();
        }
    }
    v
}

pub fn view(conn: &Connection, task: Task) -> AppResult<TaskView> {
    let outputs = if task.status == TaskStatus::Succeeded {
        db::assets::results_of_tasks(conn, &[task.id])?
            .iter()
            .map(output_view)
            .collect()
    } else {
        Vec::new()
    };
    let references = db::assets::references_of_task(conn, task.id)?
        .iter()
        .map(output_view)
        .collect();
    Ok(TaskView {
        task,
        outputs,
        references,
    })
}

/// One of the user's own tasks (another user's id is simply not found).
pub fn get(conn: &Connection, user: UserId, public_id: &str) -> AppResult<TaskView> {
    let task = db::tasks::by_public_id(conn, user, public_id)?.ok_or(AppError::NotFound)?;
    view(conn, task)
}

/// The user's tasks, newest first; `cursor` is the id of the last task of the
/// previous page.
pub fn list(
    conn: &Connection,
    user: UserId,
    status: Option<TaskStatus>,
    cursor: Option<&str>,
    limit: u32,
) -> AppResult<(Vec<TaskView>, Option<String>)> {
    let limit = limit.clamp(1, 100);
    let before = match cursor {
        Some(c) => Some(
            db::tasks::by_public_id(conn, user, c)?
                .ok_or_else(|| AppError::invalid("cursor", "Unknown cursor."))?
                .id,
        ),
        None => None,
    };
    let tasks = db::tasks::list_for_user(conn, user, status, before, limit)?;
    let next = (tasks.len() == limit as usize)
        .then(|| tasks.last().map(|t| t.public_id.clone()))
        .flatten();
    // The images of the whole page in one query.
    let done: Vec<TaskId> = tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Succeeded)
        .map(|t| t.id)
        .collect();
    let mut outputs: std::collections::HashMap<TaskId, Vec<OutputView>> = Default::default();
    for a in db::assets::results_of_tasks(conn, &done)? {
        if let Some(task) = a.task_id {
            outputs.entry(task).or_default().push(output_view(&a));
        }
    }
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    let mut references: std::collections::HashMap<TaskId, Vec<OutputView>> = Default::default();
    for (task, a) in db::assets::references_of_tasks(conn, &ids)? {
        references.entry(task).or_default().push(output_view(&a));
    }
    let views = tasks
        .into_iter()
        .map(|task| TaskView {
            // Only finished tasks were asked for.
            outputs: outputs.remove(&task.id).unwrap_or_default(),
            references: references.remove(&task.id).unwrap_or_default(),
            task,
        })
        .collect();
    Ok((views, next))
}
