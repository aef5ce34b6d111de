//! API submission benchmark: `POST /api/v1/tasks` with an API key, its rate
//! limits on and the wallet charging each task, against a bare Rocket handler
//! that inserts one SQLite row (same Rocket, r2d2, rusqlite and SQLite
//! settings), on the same machine in the same run. Prints both rates and the
//! ratio. Run: `cargo bench --bench api` (BENCH_SECS, BENCH_CLIENTS to tune;
//! add `-- normal` for storage.synchronous = "normal" on both sides).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use novart::config::Synchronous;
use novart::domain::apikeys::{self, Authority, KeySpec};
use novart::model::Role;
use r2d2_sqlite::SqliteConnectionManager;
use rocket::{post, routes, State};

type Pool = r2d2::Pool<SqliteConnectionManager>;

#[post("/insert", data = "<body>")]
async fn insert(pool: &State<Pool>, body: String) -> &'static str {
    let pool = pool.inner().clone();
    rocket::tokio::task::spawn_blocking(move || {
        let conn = pool.get().unwrap();
        conn.prepare_cached("INSERT INTO rows (body, created_at) VALUES (?1, ?2)")
            .unwrap()
            .execute(rusqlite::params![body, novart::domain::now()])
            .unwrap();
    })
    .await
    .unwrap();
    "{\"ok\":true}"
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn launch(rocket: rocket::Rocket<rocket::Build>, port: u16) {
    std::thread::spawn(move || {
        rocket::execute(async move {
            let _ = rocket.launch().await;
        })
    });
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("server on {port} did not start");
}

fn bare(dir: &std::path::Path, sync: &str) -> u16 {
    let path = dir.join("bare.sqlite3");
    let sync = sync.to_string();
    let manager = SqliteConnectionManager::file(&path).with_init(move |c| {
        c.busy_timeout(Duration::from_secs(10))?;
        c.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;"
        ))
    });
    let pool = r2d2::Pool::builder().max_size(16).build(manager).unwrap();
    pool.get()
        .unwrap()
        .execute_batch("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL, created_at INTEGER NOT NULL)")
        .unwrap();
    let port = free_port();
    let figment = rocket::Config::figment()
        .merge(("port", port))
        .merge(("address", "127.0.0.1"))
        .merge(("log_level", rocket::config::LogLevel::Off));
    launch(
        rocket::custom(figment)
            .manage(pool)
            .mount("/", routes![insert]),
        port,
    );
    port
}

struct Run {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

fn load(url: &str, auth: Option<&str>, body: &str, clients: usize, secs: u64) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(clients + 1));
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let (stop, barrier) = (stop.clone(), barrier.clone());
            let (url, auth, body) = (url.to_string(), auth.map(str::to_string), body.to_string());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let mut lat = Vec::new();
                let mut errors = 0;
                barrier.wait();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let b = body.replace("SEED", &(i as u64 * 1_000_000 + n).to_string());
                    let t = Instant::now();
                    let mut req = agent.post(&url).header("Content-Type", "application/json");
                    if let Some(a) = &auth {
                        req = req.header("Authorization", a);
                    }
                    match req.send(b.as_str()) {
                        Ok(mut r) if r.status().is_success() => {
                            let _ = r.body_mut().read_to_vec();
                            lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        }
                        Ok(mut r) => {
                            let _ = r.body_mut().read_to_vec();
                            errors += 1;
                        }
                        Err(_) => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.join().unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p).round() as usize];
    Run {
        rate: all.len() as f64 / elapsed,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        errors,
    }
}

fn main() {
    let normal = std::env::args().any(|a| a == "normal");
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let clients: usize = std::env::var("BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let dir = tempfile::tempdir().unwrap();

    // Novart: no workers (submission alone), a key with limits high enough
    // to be checked on every request but never reached, plenty of credits.
    let mut config = novart::Config::for_data_dir(&dir.path().join("novart"));
    config.storage.synchronous = if normal {
        Synchronous::Normal
    } else {
        Synchronous::Full
    };
    config.queue.workers = 0;
    config.server.port = free_port();
    config.limits.key_rpm = 1_000_000;
    config.limits.key_concurrency = 1_000_000;
    config.limits.key_daily_cap = 1_000_000;
    let app = novart::App::new(config.clone()).unwrap();
    let key = {
        let mut conn = app.db.get().unwrap();
        let user = novart::domain::accounts::create_by_admin(
            &mut conn,
            &config,
            "bench@example.com",
            "benchmark password",
            "",
            Role::User,
            true,
        )
        .unwrap()
        .id;
        novart::domain::wallet::grant(
            &mut conn,
            user,
            100_000_000,
            false,
            "bench",
            "benchmark credits",
        )
        .unwrap();
        apikeys::create(
            &mut conn,
            &config,
            &app.engine.catalog,
            user,
            KeySpec::defaults(&config, "bench"),
            Authority::Admin,
        )
        .unwrap()
        .1
    };
    drop(app);
    let port = config.server.port;
    launch(novart::build_rocket(config.clone()).unwrap(), port);
    let bare_port = bare(dir.path(), if normal { "NORMAL" } else { "FULL" });

    let body = r#"{"prompt": "a lighthouse at dusk, benchmark SEED", "size": "1024x1024"}"#;
    let ours_url = format!("http://127.0.0.1:{port}/api/v1/tasks");
    let bare_url = format!("http://127.0.0.1:{bare_port}/insert");
    let auth = format!("Bearer {key}");
    // Warm up both.
    load(&ours_url, Some(&auth), body, clients, 1);
    load(&bare_url, None, body, clients, 1);
    if std::env::var("BENCH_ONLY").as_deref() == Ok("account") {
        // The same key checks without a write: where the time goes.
        let url = format!("http://127.0.0.1:{port}/api/v1/account");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let _ = agent.get(&url).header("Authorization", &auth).call();
        let stop = Arc::new(AtomicBool::new(false));
        let t = Instant::now();
        let hs: Vec<_> = (0..clients)
            .map(|_| {
                let (url, auth, stop) = (url.clone(), auth.clone(), stop.clone());
                std::thread::spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .build()
                        .into();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let mut r = agent
                            .get(&url)
                            .header("Authorization", &auth)
                            .call()
                            .unwrap();
                        let _ = r.body_mut().read_to_vec();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
        let n: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        println!(
            "GET /api/v1/account: {:.0} req/s",
            n as f64 / t.elapsed().as_secs_f64()
        );
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("ours") {
        // For profiling our side alone.
        let ours = load(&ours_url, Some(&auth), body, clients, secs);
        println!("POST /api/v1/tasks: {:.0} req/s", ours.rate);
        return;
    }
    let bare_run = load(&bare_url, None, body, clients, secs);
    let ours = load(&ours_url, Some(&auth), body, clients, secs);

    println!(
        "synchronous = {}, {clients} clients, {secs} s each, {} CPUs",
        if normal { "normal" } else { "full" },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "bare Rocket + one SQLite insert: {:>8.0} req/s  p50 {:.2} ms  p99 {:.2} ms  errors {}",
        bare_run.rate, bare_run.p50_ms, bare_run.p99_ms, bare_run.errors
    );
    println!(
        "POST /api/v1/tasks (key, limits, wallet): {:>8.0} req/s  p50 {:.2} ms  p99 {:.2} ms  errors {}",
        ours.rate, ours.p50_ms, ours.p99_ms, ours.errors
    );
    println!("ratio: {:.2} (target >= 0.6)", ours.rate / bare_run.rate);
    let db = rusqlite::Connection::open(config.db_path()).unwrap();
    let mismatches: i64 = db
        .query_row(
            "SELECT count(*) FROM wallets w WHERE w.balance + w.bonus <> (SELECT COALESCE(sum(delta_balance + delta_bonus), 0) FROM ledger l WHERE l.user_id = w.user_id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    println!("ledger mismatches after the run: {mismatches}");
}
