//! The read side of tasks: a task as its owner sees it (with its images),
//! one, a page of them, and the API's presentation with signed image links.

use crate::domain::Connection;
use serde::Serialize;

use crate::config::Config;
use crate::domain::db;
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
    /// For a queued task: its place in line and when it should be done
    /// (see `place_in_queue`); null otherwise.
    pub queue: Option<QueueSpot>,
    /// How many previews the running task has had on this node (0: none);
    /// set by the pages that show them.
    #[serde(skip)]
    pub preview_seq: u64,
}

/// A queued task's place in line (1 = next) and the seconds until its
/// images should be ready, from the model's recent run times (null when
/// there are none to go by).
#[derive(Debug, Clone, Copy, Hash, Serialize)]
pub struct QueueSpot {
    pub position: u32,
    pub eta_secs: Option<u32>,
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
    // While it runs: where its latest preview is (404 until there is one).
    v["preview_url"] = if view.task.status == TaskStatus::Running {
        format!(
            "{}/api/v1/tasks/{}/preview",
            config.public_url(),
            view.task.public_id
        )
        .into()
    } else {
        serde_json::Value::Null
    };
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
        queue: None,
        preview_seq: 0,
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
            queue: None,
            preview_seq: 0,
            task,
        })
        .collect();
    Ok((views, next))
}

/// Fills in `queue` for the queued tasks among `views`. The queue serves
/// creators in turn (see `db::tasks::claim`), so a creator's k-th waiting
/// task comes after their own k - 1, after up to k - 1 of each other
/// creator's, and after the k-th of those whose turn comes first (an older
/// head of line). The time is the rounds ahead at the model's capacity
/// (workers, at most its providers' slots) times its recent average run.
pub fn place_in_queue(
    conn: &Connection,
    config: &Config,
    catalog: &super::catalog::Catalog,
    views: &mut [TaskView],
) -> AppResult<()> {
    if !views.iter().any(|v| v.task.status == TaskStatus::Queued) {
        return Ok(());
    }
    let heads = db::tasks::queue_heads(conn)?;
    let mut averages: std::collections::HashMap<String, Option<f64>> = Default::default();
    for v in views
        .iter_mut()
        .filter(|v| v.task.status == TaskStatus::Queued)
    {
        let t = &v.task;
        let k = db::tasks::queued_up_to(conn, t.user_id, t.id)?.max(1);
        let my_head = heads
            .iter()
            .find(|h| h.0 == t.user_id)
            .map_or(t.id, |h| h.2);
        let others: i64 = heads
            .iter()
            .filter(|h| h.0 != t.user_id)
            .map(|&(_, count, head)| count.min(k - 1) + i64::from(count >= k && head < my_head))
            .sum();
        let position = (k + others).clamp(1, i64::from(u32::MAX)) as u32;
        let average = match averages.get(&t.model) {
            Some(a) => *a,
            None => {
                let a = db::tasks::recent_run_secs(conn, &t.model, 20)?;
                averages.insert(t.model.clone(), a);
                a
            }
        };
        let slots: u32 = catalog
            .model(&t.model)
            .map(|m| {
                m.providers
                    .iter()
                    .filter_map(|p| catalog.providers.iter().find(|c| &c.id == p))
                    .map(|c| c.concurrency)
                    .sum()
            })
            .unwrap_or(1);
        let capacity = config.queue.workers.min(slots).max(1);
        let rounds = position.div_ceil(capacity);
        v.queue = Some(QueueSpot {
            position,
            eta_secs: average.map(|a| (f64::from(rounds) * a).ceil().max(1.0) as u32),
        });
    }
    Ok(())
}
