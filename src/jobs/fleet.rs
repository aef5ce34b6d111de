//! The GPU fleet as this node's workers see it: each provider's health (up,
//! degraded or down, from its answers and from probes) and load (tasks
//! running against its concurrency), and the choice of a provider for a
//! task: the usable one of the best priority group, least loaded, heaviest
//! weight first. A provider's slots are never exceeded.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::catalog::ProviderConfig;
pub use crate::domain::fleet_status::{Health, ProviderStatus};
use crate::providers::{Cause, Control};

/// Failures in a row (5xx, timeouts, broken connections) that open the
/// circuit: the provider is skipped until a probe answers.
pub const FAILURES_TO_DOWN: u32 = 3;

struct Member {
    concurrency: u32,
    weight: u32,
    priority: u32,
    running: u32,
    health: Health,
    failures: u32,
    last_error: Option<String>,
    /// Why its last call or probe failed.
    last_cause: Option<Cause>,
    /// Moving average of successful calls, in milliseconds.
    latency_ms: Option<f64>,
    calls: u64,
    errors: u64,
    next_probe: Instant,
}

/// What `Fleet::acquire` found.
pub enum Acquired<'a> {
    /// A slot on this provider, given back when dropped.
    Slot(Slot<'a>),
    /// Every candidate is down (or there is none).
    AllDown,
    Canceled,
}

pub struct Slot<'a> {
    fleet: &'a Fleet,
    pub id: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut m = self.fleet.lock();
        if let Some(p) = m.get_mut(&self.id) {
            p.running = p.running.saturating_sub(1);
        }
        drop(m);
        self.fleet.changed.notify_all();
    }
}

pub struct Fleet {
    members: Mutex<HashMap<String, Member>>,
    changed: Condvar,
    probe_every: Duration,
}

impl Fleet {
    pub fn new(providers: &[ProviderConfig], probe_every: Duration) -> Fleet {
        let now = Instant::now();
        let members = providers
            .iter()
            .map(|p| {
                (
                    p.id.clone(),
                    Member {
                        concurrency: p.concurrency,
                        weight: p.weight,
                        priority: p.priority,
                        running: 0,
                        health: Health::Up,
                        failures: 0,
                        last_error: None,
                        last_cause: None,
                        latency_ms: None,
                        calls: 0,
                        errors: 0,
                        next_probe: now + probe_every,
                    },
                )
            })
            .collect();
        Fleet {
            members: Mutex::new(members),
            changed: Condvar::new(),
            probe_every,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The provider for a task among `candidates` (in the model's order):
    /// of the usable ones, the best priority group, then healthy before
    /// degraded, then the least loaded (running ÷ concurrency), then the
    /// heaviest weight, then the model's order. Waits while all usable ones
    /// are full.
    pub fn acquire(&self, candidates: &[String], ctl: &dyn Control) -> Acquired<'_> {
        let mut m = self.lock();
        loop {
            if ctl.canceled() {
                return Acquired::Canceled;
            }
            let usable: Vec<(usize, &String)> = candidates
                .iter()
                .enumerate()
                .filter(|(_, id)| m.get(*id).is_some_and(|p| p.health != Health::Down))
                .collect();
            if usable.is_empty() {
                return Acquired::AllDown;
            }
            let best = usable
                .iter()
                .filter(|(_, id)| m[*id].running < m[*id].concurrency)
                .min_by(|(ia, a), (ib, b)| {
                    let (pa, pb) = (&m[*a], &m[*b]);
                    let load = |p: &Member| f64::from(p.running) / f64::from(p.concurrency);
                    (pa.priority, pa.health.rank())
                        .cmp(&(pb.priority, pb.health.rank()))
                        .then(load(pa).total_cmp(&load(pb)))
                        .then(pb.weight.cmp(&pa.weight))
                        .then(ia.cmp(ib))
                })
                .map(|(_, id)| (*id).clone());
            if let Some(id) = best {
                if let Some(p) = m.get_mut(&id) {
                    p.running += 1;
                }
                return Acquired::Slot(Slot { fleet: self, id });
            }
            m = self
                .changed
                .wait_timeout(m, Duration::from_millis(200))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The provider answered (with images, or with a final refusal).
    pub fn answered(&self, id: &str, took: Duration) {
        let mut m = self.lock();
        if let Some(p) = m.get_mut(id) {
            p.calls += 1;
            p.failures = 0;
            p.health = Health::Up;
            let ms = took.as_secs_f64() * 1000.0;
            p.latency_ms = Some(match p.latency_ms {
                Some(avg) => avg * 0.8 + ms * 0.2,
                None => ms,
            });
        }
        drop(m);
        self.changed.notify_all();
    }

    /// The provider was unavailable: a refused connection or an unknown
    /// host puts it down at once; other failures degrade it, and
    /// `FAILURES_TO_DOWN` in a row put it down. Returns its new health.
    pub fn failed(&self, id: &str, cause: Cause, raw: &str) -> Health {
        let mut m = self.lock();
        let Some(p) = m.get_mut(id) else {
            return Health::Down;
        };
        p.calls += 1;
        p.errors += 1;
        p.failures += 1;
        p.last_error = Some(raw.chars().take(300).collect());
        p.last_cause = Some(cause);
        let was = p.health;
        p.health = match cause {
            Cause::Refused | Cause::NoAddress => Health::Down,
            _ if p.failures >= FAILURES_TO_DOWN => Health::Down,
            _ => Health::Degraded,
        };
        if p.health == Health::Down {
            // Probed soon: a restarting server is found again quickly.
            p.next_probe = Instant::now() + Duration::from_secs(1);
            if was != Health::Down {
                tracing::warn!(provider = id, "provider down: {raw}");
            }
        }
        let health = p.health;
        drop(m);
        self.changed.notify_all();
        health
    }

    /// Providers whose probe is due.
    pub fn due_probes(&self) -> Vec<String> {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter(|(_, p)| p.next_probe <= now)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// A probe's outcome: an answer brings a down provider back (half
    /// open: one more failure puts it down again); no answer keeps it down
    /// and probes again in a second.
    pub fn probed(&self, id: &str, outcome: Result<(), (Cause, String)>) {
        let mut m = self.lock();
        let Some(p) = m.get_mut(id) else { return };
        match outcome {
            Ok(()) => {
                if p.health == Health::Down {
                    tracing::info!(provider = id, "provider answers again");
                    p.health = Health::Degraded;
                    p.failures = FAILURES_TO_DOWN - 1;
                }
                p.next_probe = Instant::now() + self.probe_every;
            }
            Err((cause, raw)) => {
                p.last_error = Some(raw.chars().take(300).collect());
                p.last_cause = Some(cause);
                p.health = match cause {
                    Cause::Refused | Cause::NoAddress | Cause::TimedOut => Health::Down,
                    _ if p.health == Health::Down => Health::Down,
                    _ => Health::Degraded,
                };
                p.next_probe = Instant::now()
                    + if p.health == Health::Down {
                        Duration::from_secs(1)
                    } else {
                        self.probe_every
                    };
            }
        }
        drop(m);
        self.changed.notify_all();
    }

    /// Why the first of `providers` that is down is down (its last cause
    /// and raw error), for a task that could not be sent anywhere.
    pub fn down_cause(&self, providers: &[String]) -> Option<(Cause, String)> {
        let m = self.lock();
        providers.iter().find_map(|id| {
            let p = m.get(id).filter(|p| p.health == Health::Down)?;
            Some((p.last_cause?, format!("{id}: {}", p.last_error.clone()?)))
        })
    }

    /// Whether any of `providers` can take work.
    pub fn any_usable(&self, providers: &[String]) -> bool {
        let m = self.lock();
        providers
            .iter()
            .any(|id| m.get(id).is_some_and(|p| p.health != Health::Down))
    }

    pub fn status(&self) -> Vec<ProviderStatus> {
        let m = self.lock();
        let mut out: Vec<ProviderStatus> = m
            .iter()
            .map(|(id, p)| ProviderStatus {
                id: id.clone(),
                health: p.health,
                running: p.running,
                concurrency: p.concurrency,
                weight: p.weight,
                priority: p.priority,
                latency_ms: p.latency_ms.map(|l| l.round() as u64),
                calls: p.calls,
                errors: p.errors,
                last_error: p.last_error.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}
