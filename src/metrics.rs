//! In-process counters for `/metrics` (Prometheus text format): requests
//! and their latency per route group, finished tasks and their duration per
//! model and provider, provider errors, webhook attempts. Counters start at
//! zero with the process, as Prometheus expects; what the database knows
//! (queue depth, ledger, sessions, size) is read at scrape time
//! (`domain::stats`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Route groups: the first path segment, for a bounded set of labels.
pub const GROUPS: [&str; 14] = [
    "home",
    "auth",
    "studio",
    "library",
    "wallet",
    "developer",
    "messages",
    "settings",
    "gallery",
    "media",
    "api",
    "openai",
    "static",
    "other",
];

/// Request latency buckets, seconds.
const REQUEST_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Task duration buckets, seconds.
const TASK_BUCKETS: [f64; 10] = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];

/// The group a request path belongs to.
pub fn group(path: &str) -> &'static str {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match first {
        "" | "privacy" | "terms" | "lang" | "healthz" | "docs" => "home",
        "login" | "logout" | "register" | "verify" | "forgot" | "reset" => "auth",
        "studio" => "studio",
        "library" => "library",
        "wallet" => "wallet",
        "developer" => "developer",
        "messages" => "messages",
        "settings" => "settings",
        "gallery" | "s" => "gallery",
        "media" => "media",
        "api" => "api",
        "v1" => "openai",
        "assets" | "sw.js" | "favicon.ico" => "static",
        _ => "other",
    }
}

struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// Label values are config names (models, providers): escape them.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub struct Registry {
    /// [group][status class 1..=5]
    requests: Vec<[AtomicU64; 5]>,
    latency: Vec<Histogram>,
    /// (model, provider, status) → count
    tasks: Mutex<BTreeMap<(String, String, &'static str), u64>>,
    task_seconds: Mutex<BTreeMap<(String, String), Histogram>>,
    /// (provider, kind) → count
    provider_errors: Mutex<BTreeMap<(String, &'static str), u64>>,
    webhook_attempts: AtomicU64,
    webhook_failures: AtomicU64,
    /// The fleet as last seen by this process's watch.
    fleet: Mutex<Vec<crate::jobs::fleet::ProviderStatus>>,
}

/// The process's registry.
pub fn global() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| Registry {
        requests: GROUPS.iter().map(|_| Default::default()).collect(),
        latency: GROUPS
            .iter()
            .map(|_| Histogram::new(&REQUEST_BUCKETS))
            .collect(),
        tasks: Mutex::default(),
        task_seconds: Mutex::default(),
        provider_errors: Mutex::default(),
        webhook_attempts: AtomicU64::new(0),
        webhook_failures: AtomicU64::new(0),
        fleet: Mutex::default(),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// One answered request.
    pub fn request(&self, path: &str, status: u16, took: Duration) {
        let g = GROUPS
            .iter()
            .position(|x| *x == group(path))
            .unwrap_or(GROUPS.len() - 1);
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.requests[g][class].fetch_add(1, Ordering::Relaxed);
        self.latency[g].observe(took);
    }

    /// A task that reached a final state (or went back to the queue).
    pub fn task(&self, model: &str, provider: &str, status: &'static str, took: Duration) {
        *lock(&self.tasks)
            .entry((model.to_string(), provider.to_string(), status))
            .or_default() += 1;
        lock(&self.task_seconds)
            .entry((model.to_string(), provider.to_string()))
            .or_insert_with(|| Histogram::new(&TASK_BUCKETS))
            .observe(took);
    }

    /// The providers' health and load, as the fleet's watch last saw them.
    pub fn fleet(&self, status: &[crate::jobs::fleet::ProviderStatus]) {
        *lock(&self.fleet) = status.to_vec();
    }

    /// An upstream call that failed (`unavailable` or `failed`).
    pub fn provider_error(&self, provider: &str, kind: &'static str) {
        *lock(&self.provider_errors)
            .entry((provider.to_string(), kind))
            .or_default() += 1;
    }

    /// One webhook delivery attempt; `ok` when the receiver answered 2xx.
    pub fn webhook_attempt(&self, ok: bool) {
        self.webhook_attempts.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.webhook_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP novart_http_requests_total Requests answered, by route group and status class.\n# TYPE novart_http_requests_total counter\n");
        for (g, name) in GROUPS.iter().enumerate() {
            for (c, n) in self.requests[g].iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "novart_http_requests_total{{group=\"{name}\",status=\"{}xx\"}} {n}",
                        c + 1
                    );
                }
            }
        }
        out.push_str("# HELP novart_http_request_duration_seconds Time to answer, by route group.\n# TYPE novart_http_request_duration_seconds histogram\n");
        for (g, name) in GROUPS.iter().enumerate() {
            self.latency[g].write(
                out,
                "novart_http_request_duration_seconds",
                &format!("group=\"{name}\""),
            );
        }
        out.push_str("# HELP novart_tasks_finished_total Tasks finished by this process, by model, provider and outcome.\n# TYPE novart_tasks_finished_total counter\n");
        for ((m, p, s), n) in lock(&self.tasks).iter() {
            let _ = writeln!(
                out,
                "novart_tasks_finished_total{{model=\"{}\",provider=\"{}\",status=\"{s}\"}} {n}",
                label(m),
                label(p)
            );
        }
        out.push_str("# HELP novart_task_duration_seconds From claim to finish, by model and provider.\n# TYPE novart_task_duration_seconds histogram\n");
        for ((m, p), h) in lock(&self.task_seconds).iter() {
            let labels = format!("model=\"{}\",provider=\"{}\"", label(m), label(p));
            h.write(out, "novart_task_duration_seconds", &labels);
        }
        out.push_str("# HELP novart_provider_errors_total Failed upstream calls, by provider and kind.\n# TYPE novart_provider_errors_total counter\n");
        for ((p, k), n) in lock(&self.provider_errors).iter() {
            let _ = writeln!(
                out,
                "novart_provider_errors_total{{provider=\"{}\",kind=\"{k}\"}} {n}",
                label(p)
            );
        }
        let fleet = lock(&self.fleet);
        out.push_str("# HELP novart_provider_up 1 when the provider takes work (up or degraded), 0 when down.\n# TYPE novart_provider_up gauge\n");
        for p in fleet.iter() {
            let up = u8::from(p.health != crate::jobs::fleet::Health::Down);
            let _ = writeln!(
                out,
                "novart_provider_up{{provider=\"{}\",health=\"{}\"}} {up}",
                label(&p.id),
                p.health.as_str()
            );
        }
        out.push_str("# HELP novart_provider_running Tasks running on the provider, of its concurrency.\n# TYPE novart_provider_running gauge\n");
        for p in fleet.iter() {
            let _ = writeln!(
                out,
                "novart_provider_running{{provider=\"{}\"}} {}",
                label(&p.id),
                p.running
            );
        }
        out.push_str("# HELP novart_provider_concurrency Tasks the provider may run at once.\n# TYPE novart_provider_concurrency gauge\n");
        for p in fleet.iter() {
            let _ = writeln!(
                out,
                "novart_provider_concurrency{{provider=\"{}\"}} {}",
                label(&p.id),
                p.concurrency
            );
        }
        out.push_str("# HELP novart_provider_latency_seconds Moving average of the provider's successful calls.\n# TYPE novart_provider_latency_seconds gauge\n");
        for p in fleet.iter().filter(|p| p.latency_ms.is_some()) {
            let _ = writeln!(
                out,
                "novart_provider_latency_seconds{{provider=\"{}\"}} {:.3}",
                label(&p.id),
                p.latency_ms.unwrap_or(0) as f64 / 1000.0
            );
        }
        drop(fleet);
        let _ = writeln!(
            out,
            "# HELP novart_webhook_attempts_total Webhook delivery attempts.\n# TYPE novart_webhook_attempts_total counter\nnovart_webhook_attempts_total {}\n# HELP novart_webhook_failures_total Attempts without a 2xx answer.\n# TYPE novart_webhook_failures_total counter\nnovart_webhook_failures_total {}",
            self.webhook_attempts.load(Ordering::Relaxed),
            self.webhook_failures.load(Ordering::Relaxed)
        );
    }
}
