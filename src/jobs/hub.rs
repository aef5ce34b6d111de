//! How the queue talks to the rest of the process: task events for the
//! studio's live view, wake-ups for idle workers, and the running tasks'
//! controls (cancel flag and progress) so a cancel reaches a provider call
//! at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rocket::tokio::sync::{broadcast, Notify};

use crate::model::UserId;
use crate::providers::Control;

/// "Task X of user U changed": the studio refetches and shows it.
#[derive(Debug, Clone)]
pub struct TaskEvent {
    pub user: UserId,
    pub task: String,
}

/// Wakes idle workers, fans task events out to listeners, and tells a
/// running task of this node that it was canceled.
#[derive(Clone)]
pub struct Hub {
    pub(super) notify: Arc<Notify>,
    events: broadcast::Sender<TaskEvent>,
    /// The controls of the tasks this node's workers are running.
    running: Arc<Mutex<HashMap<String, Arc<TaskControl>>>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            notify: Arc::new(Notify::new()),
            events: broadcast::channel(1024).0,
            running: Arc::default(),
        }
    }
}

/// Keeps a running task's control findable by `Hub::canceled` until dropped.
pub(super) struct Running<'a> {
    hub: &'a Hub,
    task: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.hub
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.task);
    }
}

impl Hub {
    /// The task was just canceled: if a worker of this node runs it, its
    /// provider call is told at once (other nodes notice within a second,
    /// see `Engine::run_task`), and listeners are told.
    pub fn canceled(&self, user: UserId, task: &str) {
        if let Some(ctl) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(task)
        {
            ctl.canceled.store(true, Ordering::Relaxed);
        }
        self.publish(user, task);
    }

    pub(super) fn register(&self, task: &str, ctl: Arc<TaskControl>) -> Running<'_> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task.to_string(), ctl);
        Running {
            hub: self,
            task: task.to_string(),
        }
    }

    /// A task was queued: one idle worker wakes up.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    pub fn publish(&self, user: UserId, task: &str) {
        let _ = self.events.send(TaskEvent {
            user,
            task: task.to_string(),
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<TaskEvent> {
        self.events.subscribe()
    }

    /// The latest preview of a task running on this node, with its number.
    pub fn preview(&self, task: &str) -> Option<(u64, Arc<Vec<u8>>)> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let ctl = running.get(task)?;
        let image = ctl
            .preview
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        Some((ctl.preview_seq(), image))
    }

    /// How many previews a task running on this node has had (0: none).
    pub fn preview_seq(&self, task: &str) -> u64 {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(task)
            .map_or(0, |c| c.preview_seq())
    }
}

/// A running task's cancel flag, progress and latest preview, shared with
/// the provider call. The preview lives here, in memory, while the task
/// runs: it is never a stored file.
#[derive(Default)]
pub struct TaskControl {
    pub canceled: AtomicBool,
    progress_bits: AtomicU64,
    preview: Mutex<Option<Arc<Vec<u8>>>>,
    /// How many previews arrived (the page asks again when it grows).
    preview_seq: AtomicU64,
}

impl TaskControl {
    pub fn progress_value(&self) -> f64 {
        f64::from_bits(self.progress_bits.load(Ordering::Relaxed))
    }

    pub fn preview_seq(&self) -> u64 {
        self.preview_seq.load(Ordering::Relaxed)
    }
}

impl Control for TaskControl {
    fn canceled(&self) -> bool {
        self.canceled.load(Ordering::Relaxed)
    }
    fn progress(&self, fraction: f64) {
        self.progress_bits
            .store(fraction.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }
    fn preview(&self, image: Vec<u8>) {
        if image.is_empty() || image.len() > crate::providers::MAX_PREVIEW_BYTES {
            return;
        }
        *self.preview.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(image));
        self.preview_seq.fetch_add(1, Ordering::Relaxed);
    }
}
