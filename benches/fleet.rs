//! Fleet benchmark: one model served by three GPU servers of different
//! speeds (in-process fakes that sleep 40, 80 and 160 ms per task, two
//! slots each), a burst of tasks from several creators through the real
//! workers. Compared in one run: the fleet's routing (least loaded, within
//! priority, by weight) against "tried in order" as before it, where the
//! other servers are only a failover and every task waits for the first.
//! Reports how the tasks spread over the servers, the wait in the queue
//! (submit to the upstream call, p50/p99) and the time to drain the burst.
//! Run: `cargo bench --bench fleet` (BENCH_TASKS, 300 by default).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use novart::config::catalog::{ModelConfig, ProviderConfig, ProviderKind};
use novart::domain::catalog::Catalog;
use novart::domain::tasks::{self, NewTaskInput};
use novart::jobs::queue::{Engine, Providers};
use novart::model::{Role, TaskStatus};
use novart::providers::{Control, GenRequest, Provider, ProviderError};
use rocket::tokio;

/// When each task (by its prompt's number) reached a server, and which.
type Log = Arc<Mutex<Vec<(usize, Instant, &'static str)>>>;

struct Gpu {
    name: &'static str,
    delay: Duration,
    image: Vec<u8>,
    log: Log,
}

impl Provider for Gpu {
    fn generate(&self, req: &GenRequest, _: &dyn Control) -> Result<Vec<Vec<u8>>, ProviderError> {
        let n: usize = req.prompt.trim_start_matches("task ").parse().unwrap_or(0);
        self.log
            .lock()
            .unwrap()
            .push((n, Instant::now(), self.name));
        std::thread::sleep(self.delay);
        Ok((0..req.n).map(|_| self.image.clone()).collect())
    }
}

struct Outcome {
    spread: Vec<(&'static str, usize)>,
    p50_ms: f64,
    p99_ms: f64,
    drain_secs: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn run(routed: bool, total: usize) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let mut config = novart::Config::for_data_dir(dir.path());
    config.queue.workers = 6;
    config.queue.per_user_concurrency = 6;
    config.billing.signup_bonus = 1_000_000;
    let gpus = [("fast", 40), ("medium", 80), ("slow", 160)];
    config.providers = gpus
        .iter()
        .map(|(id, _)| ProviderConfig {
            concurrency: 2,
            ..ProviderConfig::new(id, ProviderKind::Builtin, "")
        })
        .collect();
    // Before the fleet, a model's providers were tried in order and the
    // later ones only on failure: with healthy servers that is the first
    // server alone.
    let listed: Vec<String> = if routed {
        gpus.iter().map(|g| g.0.to_string()).collect()
    } else {
        vec!["fast".into()]
    };
    config.models = vec![ModelConfig {
        id: "m".into(),
        name: "M".into(),
        providers: listed,
        upstream_model: String::new(),
        price: 1,
        sizes: vec!["512x512".into()],
        max_n: 1,
        reference_images: false,
        description: String::new(),
        charge_extra_images: false,
    }];
    config.validate().unwrap();
    let app = novart::App::new(config.clone()).unwrap();
    let catalog = Catalog::from_config(&config);
    let mut providers = Providers::from_catalog(&catalog);
    let log: Log = Arc::default();
    let image = {
        let img = image::RgbImage::from_pixel(64, 64, image::Rgb([90, 120, 200]));
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    };
    for (name, ms) in gpus {
        let gpu = Gpu {
            name,
            delay: Duration::from_millis(ms),
            image: image.clone(),
            log: log.clone(),
        };
        providers.insert(name, Box::new(gpu), 2);
    }
    let engine = Engine::with_providers(app.db.clone(), &config, catalog, providers);
    let users: Vec<_> = (0..10)
        .map(|i| {
            let mut conn = app.db.get().unwrap();
            novart::domain::accounts::create_by_admin(
                &mut conn,
                &app.config,
                &format!("b{i}@example.com"),
                "bench passphrase 1",
                "",
                Role::User,
                true,
            )
            .unwrap()
            .id
        })
        .collect();
    // The burst is queued first, then the workers start.
    let mut submitted = Vec::with_capacity(total);
    let mut ids = Vec::with_capacity(total);
    for i in 0..total {
        let mut conn = app.db.get().unwrap();
        let input = NewTaskInput {
            prompt: format!("task {i}"),
            model: "m".into(),
            ..Default::default()
        };
        let u = users[i % users.len()];
        let t = tasks::submit(&mut conn, &engine.config, &engine.catalog, u, &input).unwrap();
        submitted.push(Instant::now());
        ids.push((u, t.public_id));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    let e = engine.clone();
    rt.block_on(async move { e.spawn_workers() });
    loop {
        let conn = app.db.get().unwrap();
        let done = ids
            .iter()
            .all(|(u, id)| tasks::get(&conn, *u, id).unwrap().task.status == TaskStatus::Succeeded);
        if done {
            break;
        }
        drop(conn);
        std::thread::sleep(Duration::from_millis(50));
    }
    let drain_secs = start.elapsed().as_secs_f64();
    let log = log.lock().unwrap();
    let mut waits: Vec<f64> = log
        .iter()
        .map(|(n, at, _)| at.duration_since(submitted[*n].max(start)).as_secs_f64() * 1000.0)
        .collect();
    waits.sort_by(|a, b| a.total_cmp(b));
    let spread = gpus
        .iter()
        .map(|(name, _)| (*name, log.iter().filter(|l| l.2 == *name).count()))
        .collect();
    rt.shutdown_background();
    Outcome {
        spread,
        p50_ms: percentile(&waits, 0.5),
        p99_ms: percentile(&waits, 0.99),
        drain_secs,
    }
}

fn main() {
    let total: usize = common::env_or("BENCH_TASKS", 300);
    println!(
        "fleet benchmark: {total} tasks at once from 10 creators, 6 workers; servers fast 40 ms, medium 80 ms, slow 160 ms per task, 2 slots each"
    );
    for (label, routed) in [("tried in order (before)", false), ("fleet routing", true)] {
        let o = run(routed, total);
        let spread: Vec<String> = o
            .spread
            .iter()
            .map(|(n, c)| format!("{n} {c} ({:.0} %)", *c as f64 * 100.0 / total as f64))
            .collect();
        println!("  {label}:");
        println!("    tasks per server: {}", spread.join(", "));
        println!(
            "    wait in the queue: p50 {:.0} ms, p99 {:.0} ms; burst drained in {:.1} s",
            o.p50_ms, o.p99_ms, o.drain_secs
        );
    }
}
