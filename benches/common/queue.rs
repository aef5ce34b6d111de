//! The queue measured in-process: tasks per second through the whole queue
//! (submit, claim, provider call, image check and preview, file writes,
//! completion) with an instant upstream, and the time each task spends in
//! the queue's own code.

use std::time::Instant;

use novart::config::catalog::{ModelConfig, ProviderConfig, ProviderKind};
use novart::config::Synchronous;
use novart::domain::catalog::Catalog;
use novart::domain::tasks::{self, NewTaskInput};
use novart::jobs::queue::{Engine, Providers};
use novart::model::Role;
use novart::providers::{Control, GenRequest, Provider, ProviderError};

pub struct QueueRun {
    pub submit_rate: f64,
    pub run_rate: f64,
    pub added_p50_ms: f64,
    pub added_p99_ms: f64,
    /// On PostgreSQL: the same number of tasks drained by two nodes (two
    /// engines with their own pools and node ids, `workers` threads each)
    /// claiming from the one queue.
    pub two_nodes_rate: Option<f64>,
}

struct Instant1(Vec<u8>);

impl Provider for Instant1 {
    fn generate(&self, req: &GenRequest, _: &dyn Control) -> Result<Vec<Vec<u8>>, ProviderError> {
        Ok((0..req.n).map(|_| self.0.clone()).collect())
    }
}

/// An engine on `db` whose only provider is the instant upstream answering
/// with `png`, as a node would run it.
fn instant_engine(db: novart::domain::Db, config: &novart::Config, png: &[u8]) -> Engine {
    let catalog = Catalog::from_config(config);
    let mut providers = Providers::from_catalog(&catalog);
    providers.insert("instant", Box::new(Instant1(png.to_vec())), 1000);
    Engine::with_providers(db, config, catalog, providers)
}

/// Queues the tasks `ids` (prompts `<label> <i>`), spread over `users`, on
/// one connection.
fn submit_each(
    engine: &Engine,
    users: &[novart::model::UserId],
    label: &str,
    ids: impl Iterator<Item = usize>,
) {
    let mut conn = engine.db.get().unwrap();
    for i in ids {
        let input = NewTaskInput {
            prompt: format!("{label} {i}"),
            model: "instant".into(),
            ..Default::default()
        };
        tasks::submit(
            &mut conn,
            &engine.config,
            &engine.catalog,
            users[i % users.len()],
            &input,
        )
        .unwrap();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `side`: the upstream's image is `side`×`side`. 64 measures the queue's
/// own work; 1024 adds what a real model's output costs (decoding a PNG of
/// about a megabyte, the preview's resize and JPEG encoding, the writes).
pub fn run(normal: bool, tasks_total: usize, workers: usize, side: u32) -> QueueRun {
    let dir = tempfile::tempdir().unwrap();
    let mut config = novart::Config::for_data_dir(dir.path());
    config.storage.synchronous = if normal {
        Synchronous::Normal
    } else {
        Synchronous::Full
    };
    // BENCH_BACKEND=s3: results are stored in the tests' S3-compatible
    // server (s3s-fs on this machine) instead of the data directory.
    if std::env::var("BENCH_BACKEND").is_ok_and(|b| b == "s3") {
        let server = super::s3::server()
            .expect("BENCH_BACKEND=s3 needs s3s-fs (cargo install s3s-fs@0.14.1 --features binary --locked)");
        super::s3::use_s3(&mut config, server);
    }
    // BENCH_DATABASE_URL: on a fresh PostgreSQL database.
    if let Some(url) = super::pg::fresh("queue") {
        config.database.url = url;
    }
    config.queue.per_user_concurrency = 1000;
    config.billing.signup_bonus = 1_000_000;
    config.providers = vec![ProviderConfig {
        concurrency: 1000,
        ..ProviderConfig::new("instant", ProviderKind::Builtin, "")
    }];
    config.models = vec![ModelConfig {
        id: "instant".into(),
        name: "Instant".into(),
        providers: vec!["instant".into()],
        upstream_model: String::new(),
        price: 1,
        sizes: vec!["512x512".into()],
        max_n: 1,
        reference_images: false,
        description: String::new(),
        charge_extra_images: false,
    }];
    let app = novart::App::new(config.clone()).unwrap();
    let mut png = Vec::new();
    let picture = if side <= 64 {
        image::RgbImage::from_pixel(side, side, image::Rgb([40, 90, 200]))
    } else {
        // The built-in renderer's picture: textured like a real one, so it
        // compresses like one.
        novart::providers::builtin::render("a harbour at dawn, mist", 7, side, side, None)
    };
    picture
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let engine = instant_engine(app.db.clone(), &config, &png);

    // 50 creators share the queue.
    let users: Vec<_> = {
        let mut conn = app.db.get().unwrap();
        (0..50)
            .map(|i| {
                let cfg = novart::Config {
                    auth: novart::config::AuthConfig {
                        bcrypt_cost: 12,
                        ..config.auth.clone()
                    },
                    ..config.clone()
                };
                novart::domain::accounts::create_by_admin(
                    &mut conn,
                    &cfg,
                    &format!("u{i}@bench.test"),
                    "bench passphrase",
                    "",
                    Role::User,
                    true,
                )
                .unwrap()
                .id
            })
            .collect()
    };

    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..workers {
            let (engine, users) = (&engine, &users);
            s.spawn(move || submit_each(engine, users, "bench", (t..tasks_total).step_by(workers)));
        }
    });
    let submit_secs = started.elapsed().as_secs_f64();

    // Throughput: `workers` threads drain the queue as the server's workers
    // do (the commit that finishes a task claims the next).
    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..workers {
            let engine = &engine;
            s.spawn(move || engine.drain(&format!("bench-{w}")).unwrap());
        }
    });
    let run_secs = started.elapsed().as_secs_f64();

    // Added latency: one worker, one task at a time, so no task waits for
    // another; the upstream answers at once, so all the time is the queue's.
    let overhead_tasks = (tasks_total / 3).clamp(50, 500);
    submit_each(&engine, &users, "single", 0..overhead_tasks);
    let mut l = Vec::with_capacity(overhead_tasks);
    loop {
        let t = Instant::now();
        if !engine.process_one("single").unwrap() {
            break;
        }
        l.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    l.sort_by(|a, b| a.partial_cmp(b).unwrap());

    // Two nodes (PostgreSQL only): a second engine, as another node would
    // run it, and both drain a fresh batch together.
    let two_nodes_rate = (!config.database.url.is_empty()).then(|| {
        let mut config_b = config.clone();
        config_b.server.node_id = "bench-node-b".into();
        let db_b = novart::domain::Db::open(&config_b).unwrap();
        let engine_b = instant_engine(db_b, &config_b, &png);
        submit_each(&engine, &users, "two nodes", 0..tasks_total);
        let started = Instant::now();
        std::thread::scope(|s| {
            for (node, e) in [("a", &engine), ("b", &engine_b)] {
                for w in 0..workers {
                    s.spawn(move || e.drain(&format!("{node}-{w}")).unwrap());
                }
            }
        });
        tasks_total as f64 / started.elapsed().as_secs_f64()
    });
    let done: i64 = app
        .db
        .get()
        .unwrap()
        .query_row(
            "SELECT count(*) FROM tasks WHERE status = 'succeeded'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    let two_batches = if two_nodes_rate.is_some() { 2 } else { 1 };
    assert_eq!(
        done as usize,
        two_batches * tasks_total + overhead_tasks,
        "every task succeeded"
    );
    QueueRun {
        submit_rate: tasks_total as f64 / submit_secs,
        run_rate: tasks_total as f64 / run_secs,
        added_p50_ms: percentile(&l, 0.5),
        added_p99_ms: percentile(&l, 0.99),
        two_nodes_rate,
    }
}
