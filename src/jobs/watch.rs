//! The fleet's watch: each second it probes the providers that are due,
//! wakes the workers when a model can be served again, fails the tasks
//! that waited too long for a model that stayed down, and records this
//! node's view for `novart providers` and `/metrics`.

use std::time::{Duration, Instant};

use rocket::tokio;

use super::queue::Engine;
use crate::domain::tasks;
use crate::providers::{self, ProviderError};

/// This node's name in the providers' view: its id, and the process id
/// (two processes on one host stay apart).
pub(super) fn node_name(config: &crate::config::Config) -> String {
    format!("{}:{}", config.node_id(), std::process::id())
}

impl Engine {
    /// The fleet's watch, once a second: probes the providers that are due
    /// (a down one every second, the others every `queue.probe_secs`),
    /// wakes the workers when one comes back, and fails the tasks that
    /// waited `queue.max_wait_secs` for a model that stayed down.
    pub fn spawn_fleet_watch(&self) {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let e = engine.clone();
                let _ = tokio::task::spawn_blocking(move || e.watch_once()).await;
            }
        });
    }

    /// One pass of the fleet's watch (see `spawn_fleet_watch`).
    pub fn watch_once(&self) {
        let down_before = self.down_models();
        for id in self.fleet.due_probes() {
            let Some(outcome) = self.providers.probe(&id) else {
                continue;
            };
            let outcome = outcome.map_err(|e| match e {
                ProviderError::Unavailable { cause, raw } => (cause, raw),
                other => (providers::Cause::Broken, other.raw().to_string()),
            });
            self.fleet.probed(&id, outcome);
        }
        let down = self.down_models();
        if down.len() < down_before.len() {
            // A model can be served again: its waiting tasks are claimable.
            for _ in 0..self.config.queue.workers {
                self.hub.wake();
            }
        }
        let status = self.fleet.status();
        crate::metrics::global().fleet(&status);
        self.record_fleet(&status);
        if down.is_empty() {
            return;
        }
        for model in &down {
            let providers = self
                .catalog
                .model(model)
                .map(|m| m.providers.clone())
                .unwrap_or_default();
            let because = self
                .fleet
                .down_cause(&providers)
                .map(|(cause, _)| cause.describe())
                .unwrap_or_else(|| providers::Cause::NoProvider.describe());
            let expired = self.db.get().and_then(|mut conn| {
                tasks::expire_waiting(&mut conn, &self.config, model, &because)
            });
            match expired {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    model,
                    "{n} tasks waited too long for a provider that stayed down"
                ),
                Err(e) => tracing::error!(model, "failing tasks that waited too long: {e}"),
            }
        }
    }

    /// Writes this node's view for `novart providers`, every 5 seconds.
    fn record_fleet(&self, status: &[crate::jobs::fleet::ProviderStatus]) {
        {
            let mut last = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
                return;
            }
            *last = Some(Instant::now());
        }
        let recorded = self.db.get().and_then(|mut conn| {
            crate::domain::fleet_status::record(&mut conn, &self.node, status)
        });
        if let Err(e) = recorded {
            tracing::warn!("recording the providers' health failed: {e}");
        }
    }
}
