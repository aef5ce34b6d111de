//! How the queue talks to the rest of the process: task events for the
//! studio's live view, wake-ups for idle workers, and the running tasks'
//! controls (cancel flag and progress) so a cancel reaches a provider call
//! at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

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
    /// Where events go to reach the other nodes of a cluster (set by
    /// `jobs::cluster` on a shared database).
    relay: Arc<OnceLock<std::sync::mpsc::Sender<Relayed>>>,
}

/// A hub that may have stopped (see `Hub::downgrade`).
pub struct WeakHub {
    notify: std::sync::Weak<Notify>,
    events: broadcast::Sender<TaskEvent>,
    running: std::sync::Weak<Mutex<HashMap<String, Arc<TaskControl>>>>,
    relay: std::sync::Weak<OnceLock<std::sync::mpsc::Sender<Relayed>>>,
}

impl WeakHub {
    /// The hub, while its server runs.
    pub fn upgrade(&self) -> Option<Hub> {
        Some(Hub {
            notify: self.notify.upgrade()?,
            events: self.events.clone(),
            running: self.running.upgrade()?,
            relay: self.relay.upgrade()?,
        })
    }
}

/// An event the other nodes of a cluster should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed {
    /// A task changed (the studio of whoever watches it refetches).
    Task { user: UserId, task: String },
    /// A task was canceled (the node running it stops its provider call).
    Canceled { user: UserId, task: String },
    /// A task was queued (an idle worker anywhere may take it).
    Wake,
}

impl Relayed {
    /// One line: `task <user> <id>`, `cancel <user> <id>` or `wake`.
    pub fn encode(&self) -> String {
        match self {
            Relayed::Task { user, task } => format!("task {user} {task}"),
            Relayed::Canceled { user, task } => format!("cancel {user} {task}"),
            Relayed::Wake => "wake".into(),
        }
    }

    pub fn decode(line: &str) -> Option<Relayed> {
        let mut parts = line.split(' ');
        let kind = parts.next()?;
        if kind == "wake" {
            return Some(Relayed::Wake);
        }
        let user = UserId(parts.next()?.parse().ok()?);
        let task = parts.next()?.to_string();
        match kind {
            "task" => Some(Relayed::Task { user, task }),
            "cancel" => Some(Relayed::Canceled { user, task }),
            _ => None,
        }
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            notify: Arc::new(Notify::new()),
            events: broadcast::channel(1024).0,
            running: Arc::default(),
            relay: Arc::default(),
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
        self.send_on(Relayed::Canceled {
            user,
            task: task.to_string(),
        });
        self.cancel_here(user, task);
    }

    fn cancel_here(&self, user: UserId, task: &str) {
        if let Some(ctl) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(task)
        {
            ctl.canceled.store(true, Ordering::Relaxed);
        }
        self.publish_here(user, task);
    }

    /// A handle that does not keep the hub (and its server) alive.
    pub fn downgrade(&self) -> WeakHub {
        WeakHub {
            notify: Arc::downgrade(&self.notify),
            events: self.events.clone(),
            running: Arc::downgrade(&self.running),
            relay: Arc::downgrade(&self.relay),
        }
    }

    /// Sends this node's events on to the other nodes through `tx`.
    pub fn relay_to(&self, tx: std::sync::mpsc::Sender<Relayed>) {
        let _ = self.relay.set(tx);
    }

    fn send_on(&self, event: Relayed) {
        if let Some(tx) = self.relay.get() {
            let _ = tx.send(event);
        }
    }

    /// An event another node relayed: acted on here, not sent on again.
    pub fn deliver(&self, event: Relayed) {
        match event {
            Relayed::Task { user, task } => self.publish_here(user, &task),
            Relayed::Canceled { user, task } => self.cancel_here(user, &task),
            Relayed::Wake => self.notify.notify_one(),
        }
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

    /// A task was queued: one idle worker wakes up (on each node).
    pub fn wake(&self) {
        self.notify.notify_one();
        self.send_on(Relayed::Wake);
    }

    /// A task changed: listeners here and on the other nodes are told.
    pub fn publish(&self, user: UserId, task: &str) {
        self.send_on(Relayed::Task {
            user,
            task: task.to_string(),
        });
        self.publish_here(user, task);
    }

    fn publish_here(&self, user: UserId, task: &str) {
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
