//! The task queue's engine: workers claim tasks from the database, run them
//! through the model's providers (with failover), store the images, and tell
//! listeners (the studio's live view) what changed.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocket::tokio;

use crate::config::Config;
use crate::domain::assets::{prepare_result, Prepared};
use crate::domain::catalog::Catalog;
use crate::domain::tasks::{self, Failure};
use crate::domain::Db;
use crate::error::{AppError, AppResult};
use crate::model::{Task, TaskStatus};
use crate::providers::{self, Control, GenRequest, Provider, ProviderError};

use super::fleet::{Acquired, Fleet};
pub use super::hub::{Hub, TaskControl, TaskEvent};

struct Entry {
    provider: Box<dyn Provider>,
    /// Overrides the configured concurrency (tests).
    concurrency: Option<u32>,
}

/// The adapters of every configured provider.
pub struct Providers {
    entries: HashMap<String, Entry>,
}

impl Providers {
    pub fn from_catalog(catalog: &Catalog) -> Providers {
        let entries = catalog
            .providers
            .iter()
            .filter_map(|p| {
                let provider = providers::build(p)?;
                Some((
                    p.id.clone(),
                    Entry {
                        provider,
                        concurrency: None,
                    },
                ))
            })
            .collect();
        Providers { entries }
    }

    /// Asks the provider `id` its health probe (None for an unknown id).
    pub fn probe(&self, id: &str) -> Option<Result<(), ProviderError>> {
        self.entries.get(id).map(|e| e.provider.probe())
    }

    /// Replaces one adapter (tests use this to put a fake behind an id).
    pub fn insert(&mut self, id: &str, provider: Box<dyn Provider>, concurrency: u32) {
        self.entries.insert(
            id.to_string(),
            Entry {
                provider,
                concurrency: Some(concurrency),
            },
        );
    }
}

/// What the creator reads when the images were made but storage refused
/// them (the task runs again).
const STORAGE_DOWN: &str =
    "The image storage is not answering right now. Please try again in a moment.";

/// How an attempt ended, once its images are stored.
enum Done<'a> {
    /// Made and written to storage (not yet recorded).
    Made(String, tasks::StoredResults<'a>),
    /// Made, but storage refused them.
    Unstored(String),
    /// The image service failed.
    Failed(ProviderError),
}

/// A task's reference images and mask, as bytes.
type Inputs = (Vec<Vec<u8>>, Option<Vec<u8>>);

/// Everything a worker needs; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub db: Db,
    pub config: Arc<Config>,
    pub catalog: Arc<Catalog>,
    pub providers: Arc<Providers>,
    /// Health and load of the providers, as this node sees them.
    pub fleet: Arc<Fleet>,
    pub hub: Hub,
    /// This process, as `novart providers` names it (host and pid).
    pub node: Arc<str>,
    /// When this node last recorded its view of the fleet.
    pub(super) recorded: Arc<Mutex<Option<std::time::Instant>>>,
}

/// What one attempt produced.
pub type Outcome = Result<(String, Vec<Prepared>), ProviderError>;

impl Engine {
    pub fn new(db: Db, config: &Config) -> Engine {
        let catalog = Catalog::from_config(config);
        let providers = Providers::from_catalog(&catalog);
        Engine::with_providers(db, config, catalog, providers)
    }

    /// An engine with the given adapters (tests put fakes behind ids).
    pub fn with_providers(
        db: Db,
        config: &Config,
        catalog: Catalog,
        providers: Providers,
    ) -> Engine {
        let members: Vec<_> = catalog
            .providers
            .iter()
            .map(|p| {
                let mut p = p.clone();
                if let Some(n) = providers.entries.get(&p.id).and_then(|e| e.concurrency) {
                    p.concurrency = n;
                }
                p
            })
            .collect();
        let probe_every = Duration::from_secs(config.queue.probe_secs);
        Engine {
            db,
            config: Arc::new(config.clone()),
            catalog: Arc::new(catalog),
            providers: Arc::new(providers),
            fleet: Arc::new(Fleet::new(&members, probe_every)),
            hub: Hub::default(),
            node: super::watch::node_name(config).into(),
            recorded: Arc::default(),
        }
    }

    /// Runs a claimed task through its model's providers, in order: on
    /// `Unavailable` the next one is tried; a refusal or a bad answer is final.
    pub fn execute(&self, task: &Task, ctl: &dyn Control) -> Outcome {
        let model = self
            .catalog
            .model(&task.model)
            .map_err(|_| ProviderError::Failed {
                message: format!(
                    "The model {:?} is no longer offered on this studio.",
                    task.model
                ),
                raw: format!("model {} not in the catalogue", task.model),
            })?;
        let (references, mask) = self.load_inputs(task)?;
        let req = GenRequest {
            prompt: task.prompt.clone(),
            negative_prompt: task.negative_prompt.clone(),
            width: task.width,
            height: task.height,
            n: task.n,
            seed: task.seed as u64,
            upstream_model: model.upstream_model.clone(),
            references,
            mask,
        };
        // Each provider is tried at most once per attempt, the fleet
        // choosing the order (priority, health, load, weight).
        let mut left: Vec<String> = model
            .providers
            .iter()
            .filter(|id| self.providers.entries.contains_key(*id))
            .cloned()
            .collect();
        let mut last = ProviderError::Unavailable {
            cause: providers::Cause::NoProvider,
            raw: "the model has no usable provider".into(),
        };
        loop {
            let slot = match self.fleet.acquire(&left, ctl) {
                Acquired::Slot(slot) => slot,
                Acquired::AllDown => {
                    if let ProviderError::Unavailable {
                        cause: providers::Cause::NoProvider,
                        ..
                    } = last
                    {
                        // Nothing tried here: say why the providers are down.
                        if let Some((cause, raw)) = self.fleet.down_cause(&model.providers) {
                            return Err(ProviderError::Unavailable { cause, raw });
                        }
                    }
                    return Err(last);
                }
                Acquired::Canceled => {
                    return Err(ProviderError::Failed {
                        message: "Canceled.".into(),
                        raw: "canceled while waiting".into(),
                    })
                }
            };
            let id = slot.id.clone();
            left.retain(|p| *p != id);
            let Some(entry) = self.providers.entries.get(&id) else {
                continue;
            };
            let started = std::time::Instant::now();
            match entry.provider.generate(&req, ctl) {
                Ok(images) => {
                    self.fleet.answered(&id, started.elapsed());
                    return check_images(&id, images, ctl);
                }
                Err(ProviderError::Unavailable { cause, raw }) => {
                    tracing::warn!(task = %task.public_id, provider = %id, "provider unavailable: {raw}");
                    self.fleet.failed(&id, cause, &raw);
                    let named = raw.starts_with(&format!("{id}:"));
                    last = ProviderError::Unavailable {
                        cause,
                        raw: if named { raw } else { format!("{id}: {raw}") },
                    };
                }
                Err(e) => {
                    // It answered: alive, and the answer is final.
                    self.fleet.answered(&id, started.elapsed());
                    return Err(e);
                }
            }
        }
    }

    /// Models none of whose providers can take work now: their tasks wait
    /// in the queue instead of being claimed.
    pub fn down_models(&self) -> Vec<String> {
        self.catalog
            .models
            .iter()
            .filter(|m| !self.fleet.any_usable(&m.providers))
            .map(|m| m.id.clone())
            .collect()
    }

    /// A task's references and mask, read from storage after the connection
    /// is given back. A missing file fails the task for good; a store that
    /// does not answer is temporary (the task is retried).
    fn load_inputs(&self, task: &Task) -> Result<Inputs, ProviderError> {
        const REFERENCE: &str = "A reference image of this task is no longer available.";
        let gone = |message: &str, e: AppError| match e {
            AppError::Unavailable(_) => ProviderError::Unavailable {
                cause: providers::Cause::Storage,
                raw: format!("reading the task's inputs: {e}"),
            },
            e => ProviderError::Failed {
                message: message.into(),
                raw: e.to_string(),
            },
        };
        let (refs, mask) = self
            .db
            .get()
            .and_then(|c| crate::domain::running::inputs(&c, task.id))
            .map_err(|e| gone(REFERENCE, e))?;
        let read =
            |a: &crate::model::Asset| crate::domain::assets::read_image(&self.config, a, false);
        let refs = refs
            .iter()
            .map(read)
            .collect::<AppResult<Vec<_>>>()
            .map_err(|e| gone(REFERENCE, e))?;
        let mask = mask
            .as_ref()
            .map(read)
            .transpose()
            .map_err(|e| gone("The mask of this task is no longer available.", e))?;
        Ok((refs, mask))
    }

    /// Records an attempt's outcome; returns the task's new status.
    pub fn finish(&self, task: &Task, worker: &str, outcome: Outcome) -> AppResult<TaskStatus> {
        Ok(self.finish_then(task, worker, outcome, false)?.0)
    }

    /// `finish`; with `claim`, the same commit also claims the worker's next
    /// task (one commit per task while the queue is busy).
    pub fn finish_then(
        &self,
        task: &Task,
        worker: &str,
        outcome: Outcome,
        claim: bool,
    ) -> AppResult<(TaskStatus, Option<Task>)> {
        // The images go to storage before a connection is taken (storage
        // may be a bucket across the network).
        let (outcome, images) = match outcome {
            Ok((p, images)) => (Ok(p), images),
            Err(e) => (Err(e), Vec::new()),
        };
        let done = match outcome {
            Ok(p) => match tasks::store_results(&self.config, task, &images) {
                Ok(stored) => Done::Made(p, stored),
                Err(e) => Done::Unstored(e.to_string()),
            },
            Err(e) => Done::Failed(e),
        };
        let mut conn = self.db.get()?;
        let metrics = crate::metrics::global();
        let provider = match &done {
            Done::Made(p, _) => p.clone(),
            Done::Unstored(_) => task.provider.clone().unwrap_or_default(),
            Done::Failed(e) => {
                // Failover tries the model's providers in order; the
                // error is the last one's, reported under the first.
                let p = task
                    .provider
                    .clone()
                    .or_else(|| {
                        let m = self.catalog.model(&task.model).ok()?;
                        m.providers.first().cloned()
                    })
                    .unwrap_or_default();
                let kind = match e {
                    ProviderError::Unavailable { .. } => "unavailable",
                    _ => "failed",
                };
                metrics.provider_error(&p, kind);
                p
            }
        };
        let skip = self.down_models();
        let next = claim.then_some(tasks::Next {
            worker,
            skip_models: &skip,
        });
        let (status, next) = match done {
            // Made, but storage did not take the images: tried again later
            // (the charge stays; a final failure refunds it).
            Done::Unstored(e) => {
                tracing::warn!(task = %task.public_id, "storing the results failed: {e}");
                let raw = format!("storing the results failed: {e}");
                let failure = Failure::Temporary {
                    message: STORAGE_DOWN,
                    raw: &raw,
                };
                tasks::fail_then(&mut conn, &self.config, task, failure, next)?
            }
            Done::Made(provider, stored) => {
                let (kept, next) = tasks::complete_then(
                    &mut conn,
                    &self.config,
                    task,
                    worker,
                    &provider,
                    stored,
                    next,
                )?;
                let status = if kept {
                    TaskStatus::Succeeded
                } else {
                    crate::domain::running::status(&conn, task.id)?.unwrap_or(TaskStatus::Canceled)
                };
                (status, next)
            }
            Done::Failed(e) => {
                let (message, raw) = (e.user_message(), e.raw().to_string());
                let failure = match e {
                    ProviderError::Unavailable { .. } if skip.contains(&task.model) => {
                        Failure::Postponed {
                            message: &message,
                            raw: &raw,
                        }
                    }
                    ProviderError::Unavailable { .. } => Failure::Temporary {
                        message: &message,
                        raw: &raw,
                    },
                    _ => Failure::Final {
                        message: &message,
                        raw: &raw,
                    },
                };
                tasks::fail_then(&mut conn, &self.config, task, failure, next)?
            }
        };
        let took = task
            .started_at
            .map(|t| Duration::from_secs((crate::domain::now() - t).max(0) as u64))
            .unwrap_or_default();
        metrics.task(&task.model, &provider, status.as_str(), took);
        self.hub.publish(task.user_id, &task.public_id);
        if let Some(n) = &next {
            self.hub.publish(n.user_id, &n.public_id);
        }
        if status == TaskStatus::Queued {
            self.hub.wake();
        }
        Ok((status, next))
    }

    /// Claims one task and runs it to the end on this thread (the CLI, tests
    /// and benchmarks use this; the server's workers add leases, timeouts and
    /// cancellation around the same steps). False when nothing was waiting.
    pub fn process_one(&self, worker: &str) -> AppResult<bool> {
        let claimed = {
            let mut conn = self.db.get()?;
            tasks::claim(&mut conn, &self.config, worker)?
        };
        let Some(task) = claimed else {
            return Ok(false);
        };
        self.run_here(worker, task, false)?;
        Ok(true)
    }

    /// Runs a claimed task on this thread and records its outcome; with
    /// `claim`, returns the next task claimed in the same commit.
    fn run_here(&self, worker: &str, task: Task, claim: bool) -> AppResult<Option<Task>> {
        self.hub.publish(task.user_id, &task.public_id);
        let outcome = self.execute(&task, &providers::Unattended);
        Ok(self.finish_then(&task, worker, outcome, claim)?.1)
    }

    /// Runs tasks on this thread until none is waiting, as a server worker
    /// does (each finished task's commit claims the next); returns how many
    /// ran. The queue benchmark uses it.
    pub fn drain(&self, worker: &str) -> AppResult<usize> {
        let mut next = {
            let mut conn = self.db.get()?;
            tasks::claim(&mut conn, &self.config, worker)?
        };
        let mut ran = 0;
        while let Some(task) = next {
            next = self.run_here(worker, task, true)?;
            ran += 1;
        }
        Ok(ran)
    }

    /// Starts the configured number of workers on the server's runtime.
    /// A worker's name starts with this node's id (`worker_prefix`).
    pub fn spawn_workers(&self) {
        let n = self.config.queue.workers;
        if n == 0 {
            tracing::warn!("queue.workers = 0: tasks are accepted but not processed");
        }
        if n > 0 {
            self.spawn_fleet_watch();
        }
        for i in 0..n {
            let engine = self.clone();
            let id = format!(
                "{}w{i}-{}",
                super::cluster::worker_prefix(&self.config),
                crate::domain::secrets::random_token(4)
            );
            tokio::spawn(async move { engine.worker_loop(id).await });
        }
    }

    async fn worker_loop(self, id: String) {
        // The task claimed by the commit that finished the last one.
        let mut next: Option<Task> = None;
        loop {
            if let Some(task) = next.take() {
                next = self.run_task(&id, task).await;
                continue;
            }
            let engine = self.clone();
            let wid = id.clone();
            let claimed = tokio::task::spawn_blocking(move || {
                let skip = engine.down_models();
                let mut conn = engine.db.get()?;
                tasks::claim_skipping(&mut conn, &engine.config, &wid, &skip)
            })
            .await;
            match claimed {
                Ok(Ok(Some(task))) => next = self.run_task(&id, task).await,
                Ok(Ok(None)) => {
                    tokio::select! {
                        _ = self.hub.notify.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(worker = %id, "claiming a task failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!(worker = %id, "worker task panicked: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Runs one claimed task with a renewed lease, a timeout, and cancel
    /// detection; returns the next task, claimed when this one's outcome was
    /// recorded.
    async fn run_task(&self, worker: &str, task: Task) -> Option<Task> {
        self.hub.publish(task.user_id, &task.public_id);
        let ctl = Arc::new(TaskControl::default());
        let _running = self.hub.register(&task.public_id, ctl.clone());
        let (engine, t, c) = (self.clone(), task.clone(), ctl.clone());
        let mut call = tokio::task::spawn_blocking(move || engine.execute(&t, c.as_ref()));
        let lease = tasks::lease_secs(&self.config);
        let mut beat = tokio::time::interval(Duration::from_secs((lease as u64 / 3).max(1)));
        beat.tick().await;
        // A cancel made elsewhere (another node, the admin CLI) is read from
        // the database each second: one indexed read, no write.
        let mut look = tokio::time::interval(Duration::from_secs(1));
        look.tick().await;
        let mut shown = (0.0_f64, 0_u64);
        let mut canceled_at: Option<std::time::Instant> = None;
        let deadline = tokio::time::sleep(Duration::from_secs(self.config.queue.task_timeout_secs));
        tokio::pin!(deadline);
        let outcome = loop {
            tokio::select! {
                res = &mut call => break res,
                _ = look.tick() => {
                    if ctl.canceled() {
                        // A call that cannot be stopped (an OpenAI-compatible
                        // request) is dropped: the worker stops waiting for it
                        // after a short grace and takes the next task; its
                        // answer, if any, is discarded.
                        let since = *canceled_at.get_or_insert_with(std::time::Instant::now);
                        if since.elapsed() >= Duration::from_secs(2) {
                            let outcome = Err(ProviderError::Failed {
                                message: "Canceled.".into(),
                                raw: "canceled; the upstream call was dropped".into(),
                            });
                            let (engine, t, w) = (self.clone(), task.clone(), worker.to_string());
                            let _ = tokio::task::spawn_blocking(move || engine.finish(&t, &w, outcome)).await;
                            return None;
                        }
                        continue;
                    }
                    // Progress or a new preview since the last look: written
                    // and told to the page (at most once a second).
                    let (progress, seq) = (ctl.progress_value(), ctl.preview_seq());
                    let moved = (progress - shown.0).abs() >= 0.01 || seq != shown.1;
                    shown = (progress, seq);
                    let (db, id) = (self.db.clone(), task.id);
                    let status = tokio::task::spawn_blocking(move || -> AppResult<Option<TaskStatus>> {
                        let conn = db.get()?;
                        crate::domain::running::report_progress(&conn, id, moved.then_some(progress))
                    }).await;
                    if matches!(status, Ok(Ok(Some(s))) if s != TaskStatus::Running) {
                        ctl.canceled.store(true, Ordering::Relaxed);
                    } else if moved {
                        self.hub.publish(task.user_id, &task.public_id);
                    }
                }
                _ = beat.tick() => {
                    let (db, id, w, p) = (self.db.clone(), task.id, worker.to_string(), ctl.progress_value());
                    let held = tokio::task::spawn_blocking(move || -> AppResult<bool> {
                        let conn = db.get()?;
                        crate::domain::running::renew_lease(&conn, id, &w, crate::domain::now() + lease, p)
                    }).await;
                    if !matches!(held, Ok(Ok(true))) {
                        // Canceled (or taken over): stop the call, keep nothing.
                        ctl.canceled.store(true, Ordering::Relaxed);
                    }
                    self.hub.publish(task.user_id, &task.public_id);
                }
                _ = &mut deadline => {
                    ctl.canceled.store(true, Ordering::Relaxed);
                    let secs = self.config.queue.task_timeout_secs;
                    let message = format!("The image took longer than {secs} seconds and was stopped.");
                    let outcome = Err(ProviderError::Failed { message, raw: format!("task timeout after {secs}s") });
                    let (engine, t, w) = (self.clone(), task.clone(), worker.to_string());
                    let _ = tokio::task::spawn_blocking(move || engine.finish(&t, &w, outcome)).await;
                    return None;
                }
            }
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => Err(ProviderError::Failed {
                message: "The image could not be made because of an internal error.".into(),
                raw: format!("provider call panicked: {e}"),
            }),
        };
        let (engine, w) = (self.clone(), worker.to_string());
        match tokio::task::spawn_blocking(move || engine.finish_then(&task, &w, outcome, true))
            .await
        {
            Ok(Ok((_, next))) => next,
            Ok(Err(e)) => {
                tracing::error!(worker, "recording a task's outcome failed: {e}");
                None
            }
            Err(e) => {
                tracing::error!(worker, "recording a task's outcome panicked: {e}");
                None
            }
        }
    }
}

/// Refuses empty answers and anything that is not a PNG or JPEG image.
fn check_images(provider: &str, images: Vec<Vec<u8>>, ctl: &dyn Control) -> Outcome {
    if ctl.canceled() {
        return Err(ProviderError::Failed {
            message: "Canceled.".into(),
            raw: "canceled".into(),
        });
    }
    if images.is_empty() {
        return Err(ProviderError::Failed {
            message: "The image service returned no images.".into(),
            raw: format!("{provider}: empty image list"),
        });
    }
    let mut out = Vec::with_capacity(images.len());
    for (i, bytes) in images.iter().enumerate() {
        match prepare_result(bytes) {
            Ok(p) => out.push(p),
            Err(e) => {
                return Err(ProviderError::Failed {
                    message: "The image service returned something that is not an image.".into(),
                    raw: format!("{provider}: output {i}: {e}"),
                })
            }
        }
    }
    Ok((provider.to_string(), out))
}
