//! Several providers behind one model, with the server's own workers:
//! routing by load, weight and priority without exceeding any provider's
//! slots; tasks that wait while every provider is down and fail, refunded,
//! after `queue.max_wait_secs`; the health as `novart providers` and
//! `/metrics` show it.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_http::png;
use novart::config::catalog::{ModelConfig, ProviderConfig, ProviderKind};
use novart::domain::catalog::Catalog;
use novart::domain::tasks::{self, NewTaskInput};
use novart::jobs::queue::{Engine, Providers};
use novart::model::{TaskStatus, UserId};
use novart::providers::{Cause, Control, GenRequest, Provider, ProviderError};
use novart::{App, Config};
use rocket::tokio;

/// A GPU server in a box: takes `delay` per task, counts how many run at
/// once, refuses connections while `down`.
struct Gpu {
    delay: Duration,
    running: AtomicU32,
    most: AtomicU32,
    served: AtomicU32,
    down: AtomicBool,
}

impl Gpu {
    fn new(delay_ms: u64) -> Arc<Gpu> {
        Arc::new(Gpu {
            delay: Duration::from_millis(delay_ms),
            running: AtomicU32::new(0),
            most: AtomicU32::new(0),
            served: AtomicU32::new(0),
            down: AtomicBool::new(false),
        })
    }
}

struct Adapter(Arc<Gpu>);

impl Provider for Adapter {
    fn generate(
        &self,
        req: &GenRequest,
        _ctl: &dyn Control,
    ) -> Result<Vec<Vec<u8>>, ProviderError> {
        if self.0.down.load(Ordering::SeqCst) {
            return Err(ProviderError::Unavailable {
                cause: Cause::Refused,
                raw: "connection refused".into(),
            });
        }
        let now = self.0.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.most.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(self.0.delay);
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        self.0.served.fetch_add(1, Ordering::SeqCst);
        Ok((0..req.n).map(|_| png(req.width, req.height)).collect())
    }

    fn probe(&self) -> Result<(), ProviderError> {
        if self.0.down.load(Ordering::SeqCst) {
            Err(ProviderError::Unavailable {
                cause: Cause::Refused,
                raw: "connection refused".into(),
            })
        } else {
            Ok(())
        }
    }
}

struct World {
    dir: tempfile::TempDir,
    engine: Engine,
    _rt: tokio::runtime::Runtime,
}

/// `gpus`: (id, concurrency, weight, priority, the box).
fn world(gpus: &[(&str, u32, u32, u32, Arc<Gpu>)], f: impl FnOnce(&mut Config)) -> World {
    let dir = tempfile::tempdir().unwrap();
    // Where `common::novart` points the CLI.
    let mut config = common::config_for(&dir.path().join("data"));
    config.providers = gpus
        .iter()
        .map(|(id, concurrency, weight, priority, _)| ProviderConfig {
            concurrency: *concurrency,
            weight: *weight,
            priority: *priority,
            ..ProviderConfig::new(id, ProviderKind::Builtin, "")
        })
        .collect();
    config.models = vec![ModelConfig {
        id: "m".into(),
        name: "M".into(),
        providers: gpus.iter().map(|g| g.0.to_string()).collect(),
        upstream_model: String::new(),
        price: 1,
        sizes: vec!["64x64".into()],
        max_n: 1,
        reference_images: false,
        description: String::new(),
        charge_extra_images: false,
    }];
    config.queue.workers = 12;
    config.queue.per_user_concurrency = 12;
    f(&mut config);
    config.validate().unwrap();
    let app = App::new(config.clone()).unwrap();
    let catalog = Catalog::from_config(&config);
    let mut providers = Providers::from_catalog(&catalog);
    for (id, concurrency, _, _, gpu) in gpus {
        providers.insert(id, Box::new(Adapter(gpu.clone())), *concurrency);
    }
    let engine = Engine::with_providers(app.db.clone(), &config, catalog, providers);
    let rt = common::run_workers(&engine);
    World {
        dir,
        engine,
        _rt: rt,
    }
}

impl World {
    fn user(&self, email: &str, credits: i64) -> UserId {
        let app_db = &self.engine.db;
        let mut conn = app_db.get().unwrap();
        let u = novart::domain::accounts::create_by_admin(
            &mut conn,
            &self.engine.config,
            email,
            common::PASSWORD,
            "",
            novart::model::Role::User,
            true,
        )
        .unwrap()
        .id;
        novart::domain::wallet::grant(&mut conn, u, credits, false, "test", "credits").unwrap();
        u
    }

    fn submit(&self, user: UserId) -> String {
        let mut conn = self.engine.db.get().unwrap();
        let input = NewTaskInput {
            prompt: "a test pattern".into(),
            model: "m".into(),
            ..Default::default()
        };
        let t = tasks::submit(
            &mut conn,
            &self.engine.config,
            &self.engine.catalog,
            user,
            &input,
        )
        .unwrap();
        self.engine.hub.wake();
        t.public_id
    }

    fn status(&self, user: UserId, id: &str) -> tasks::TaskView {
        tasks::get(&self.engine.db.get().unwrap(), user, id).unwrap()
    }

    fn wait_all(&self, tasks: &[(UserId, String)], status: TaskStatus, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if tasks
                .iter()
                .all(|(u, id)| self.status(*u, id).task.status == status)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let states: Vec<String> = tasks
            .iter()
            .map(|(u, id)| format!("{:?}", self.status(*u, id).task.status))
            .collect();
        panic!("not all {status:?}: {states:?}");
    }
}

/// Three providers of concurrency 1, 2 and 4 under 60 tasks at once: none
/// ever runs more than its slots, and the work spreads by free capacity
/// (the biggest does the most), not "first in the list does everything".
#[test]
fn load_spreads_by_free_slots_and_no_provider_is_overrun() {
    let (a, b, c) = (Gpu::new(60), Gpu::new(60), Gpu::new(60));
    let w = world(
        &[
            ("small", 1, 1, 0, a.clone()),
            ("medium", 2, 1, 0, b.clone()),
            ("large", 4, 1, 0, c.clone()),
        ],
        |_| {},
    );
    let users: Vec<UserId> = (0..4)
        .map(|i| w.user(&format!("u{i}@example.com"), 100))
        .collect();
    let mut all = Vec::new();
    for i in 0..60 {
        let u = users[i % users.len()];
        all.push((u, w.submit(u)));
    }
    w.wait_all(&all, TaskStatus::Succeeded, Duration::from_secs(60));
    assert_eq!(a.most.load(Ordering::SeqCst), 1, "small overrun");
    assert!(b.most.load(Ordering::SeqCst) <= 2, "medium overrun");
    assert!(c.most.load(Ordering::SeqCst) <= 4, "large overrun");
    assert_eq!(c.most.load(Ordering::SeqCst), 4, "large was filled");
    let served = [&a, &b, &c].map(|g| g.served.load(Ordering::SeqCst));
    assert_eq!(served.iter().sum::<u32>(), 60);
    assert!(
        served[2] > served[1] && served[1] > served[0] && served[0] > 0,
        "work follows capacity: {served:?}"
    );
}

/// With nothing else running, a task goes to the heavier of two idle
/// providers; a lower priority group is used only while the first group
/// is full.
#[test]
fn weight_breaks_ties_and_priority_groups_fill_in_order() {
    let (light, heavy, paid) = (Gpu::new(400), Gpu::new(400), Gpu::new(400));
    let w = world(
        &[
            ("light", 1, 1, 0, light.clone()),
            ("heavy", 1, 5, 0, heavy.clone()),
            ("paid", 4, 1, 1, paid.clone()),
        ],
        |_| {},
    );
    let u = w.user("p@example.com", 100);
    let one = vec![(u, w.submit(u))];
    w.wait_all(&one, TaskStatus::Succeeded, Duration::from_secs(20));
    assert_eq!(heavy.served.load(Ordering::SeqCst), 1, "the heavier first");
    assert_eq!(paid.served.load(Ordering::SeqCst), 0);
    // Six at once: the local pair takes two, the paid API the rest.
    let many: Vec<_> = (0..6).map(|_| (u, w.submit(u))).collect();
    w.wait_all(&many, TaskStatus::Succeeded, Duration::from_secs(20));
    assert!(light.served.load(Ordering::SeqCst) >= 1);
    assert!(
        paid.served.load(Ordering::SeqCst) >= 1,
        "overflow to the paid group"
    );
    assert!(paid.most.load(Ordering::SeqCst) <= 4);
}

/// Every provider down: tasks wait in the queue (no attempt used, nothing
/// failed) and run when one comes back; if none comes back within
/// `queue.max_wait_secs`, they fail, refunded, saying why.
#[test]
fn tasks_wait_while_every_provider_is_down() {
    let gpu = Gpu::new(50);
    gpu.down.store(true, Ordering::SeqCst);
    let w = world(&[("only", 2, 1, 0, gpu.clone())], |c| {
        c.queue.max_wait_secs = 4
    });
    let u = w.user("d@example.com", 10);
    let first: Vec<_> = (0..3).map(|_| (u, w.submit(u))).collect();
    std::thread::sleep(Duration::from_secs(2));
    for (u, id) in &first {
        let t = w.status(*u, id).task;
        assert_eq!(t.status, TaskStatus::Queued, "waits: {:?}", t.error);
        assert_eq!(
            t.attempts, 0,
            "no attempt used while nothing could be asked"
        );
    }
    // It comes back: they all run.
    gpu.down.store(false, Ordering::SeqCst);
    w.wait_all(&first, TaskStatus::Succeeded, Duration::from_secs(20));

    // Down again, for longer than the tasks may wait.
    gpu.down.store(true, Ordering::SeqCst);
    let wallet = |u| {
        novart::domain::wallet::get(&w.engine.db.get().unwrap(), u)
            .unwrap()
            .total()
    };
    let before = wallet(u);
    let late: Vec<_> = (0..2).map(|_| (u, w.submit(u))).collect();
    w.wait_all(&late, TaskStatus::Failed, Duration::from_secs(20));
    for (u, id) in &late {
        // Each says why, whether a worker tried it or it never left the
        // queue.
        let error = w.status(*u, id).task.error.unwrap();
        assert!(
            error.starts_with("The task waited 1 min for an image service that stayed down"),
            "{error}"
        );
        assert!(error.contains("refused the connection"), "{error}");
    }
    assert_eq!(wallet(u), before, "both refunded");
    // What the operator sees: the provider down, in the CLI and /metrics.
    let status = w.engine.fleet.status();
    let only = status.iter().find(|p| p.id == "only").unwrap();
    assert_eq!(only.health.as_str(), "down");
    let mut metrics = String::new();
    novart::metrics::global().render(&mut metrics);
    assert!(
        metrics.contains("novart_provider_up{provider=\"only\",health=\"down\"} 0"),
        "{metrics}"
    );
    wait_for_cli(&w);
}

/// `novart providers` shows the server's view from the database.
fn wait_for_cli(w: &World) {
    let start = Instant::now();
    loop {
        let o = common::novart(w.dir.path(), &["providers"]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let line = out.lines().find(|l| l.starts_with("only "));
        if let Some(line) = line {
            if line.contains(" down ") {
                assert!(line.contains("0/2"), "{line}");
                assert!(line.contains("connection refused"), "{line}");
                return;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{out}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A call that cannot be stopped (an OpenAI-compatible request) is dropped
/// on cancel: the worker takes the next task within seconds instead of
/// waiting for the upstream's answer.
#[test]
fn a_canceled_call_that_cannot_stop_frees_its_worker() {
    let gpu = Gpu::new(10_000);
    let w = world(&[("api", 2, 1, 0, gpu.clone())], |c| c.queue.workers = 1);
    let u = w.user("c@example.com", 10);
    let first = w.submit(u);
    let second = w.submit(u);
    let start = Instant::now();
    while gpu.running.load(Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut conn = w.engine.db.get().unwrap();
    tasks::cancel(&mut conn, u, &first).unwrap();
    drop(conn);
    w.engine.hub.canceled(u, &first);
    let canceled = Instant::now();
    // The second task reaches the upstream while the first call still hangs.
    while gpu.running.load(Ordering::SeqCst) < 2 {
        assert!(
            canceled.elapsed() < Duration::from_secs(5),
            "the worker still waits for the dropped call"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(w.status(u, &first).task.status, TaskStatus::Canceled);
    assert_eq!(w.status(u, &second).task.status, TaskStatus::Running);
}
