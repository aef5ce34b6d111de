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
}

/// A running task's cancel flag and progress, shared with the provider call.
#[derive(Default)]
pub struct TaskControl {
    pub canceled: AtomicBool,
    progress_bits: AtomicU64,
}

impl TaskControl {
    pub fn progress_value(&self) -> f64 {
        f64::from_bits(self.progress_bits.load(Ordering::Relaxed))
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
}
