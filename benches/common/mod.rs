//! What the benchmarks share: a bare Rocket + one-SQLite-insert server (the
//! yardstick), an HTTP load generator, and the queue measurement.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use r2d2_sqlite::SqliteConnectionManager;
use rocket::{post, routes, State};

pub mod queue;
/// The tests' S3-compatible server (`s3s-fs`), for BENCH_BACKEND=s3.
#[path = "../../tests/common/s3.rs"]
pub mod s3;

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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn launch(rocket: rocket::Rocket<rocket::Build>, port: u16) {
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

pub fn bare(dir: &std::path::Path, sync: &str) -> u16 {
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

/// Throughput and latency of one load run.
pub struct Run {
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: usize,
}

/// One kind of request, sent over and over (`SEED` in the body becomes a
/// number unique to each request).
#[derive(Clone)]
pub struct Req {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

/// `clients` threads, each with its own connection, send `req` for `secs`.
pub fn load(req: &Req, clients: usize, secs: u64) -> Run {
    load_across(std::slice::from_ref(req), clients, secs)
}

/// `load`, with client i sending `reqs[i % reqs.len()]` (several nodes).
pub fn load_across(reqs: &[Req], clients: usize, secs: u64) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(clients + 1));
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let (stop, barrier, req) =
                (stop.clone(), barrier.clone(), reqs[i % reqs.len()].clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .max_redirects(0)
                    .build()
                    .into();
                let mut lat = Vec::new();
                let mut errors = 0;
                barrier.wait();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let t = Instant::now();
                    let result = if req.method == "GET" {
                        let mut r = agent.get(&req.url);
                        for (k, v) in &req.headers {
                            r = r.header(k, v);
                        }
                        r.call()
                    } else {
                        let b = req
                            .body
                            .as_deref()
                            .unwrap_or("")
                            .replace("SEED", &(i as u64 * 1_000_000 + n).to_string());
                        let mut r = agent
                            .post(&req.url)
                            .header("Content-Type", "application/json");
                        for (k, v) in &req.headers {
                            r = r.header(k, v);
                        }
                        r.send(b.as_str())
                    };
                    match result {
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
    let pct = |p: f64| {
        if all.is_empty() {
            f64::NAN
        } else {
            all[((all.len() as f64 - 1.0) * p).round() as usize]
        }
    };
    Run {
        rate: all.len() as f64 / elapsed,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        errors,
    }
}

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The same GET load through `wrk` (one event loop per core, far cheaper per
/// request than a thread per connection) when it is installed; `None` when
/// it is not, and the caller falls back to [`load`].
pub fn wrk(req: &Req, connections: usize, secs: u64) -> Option<Run> {
    if req.method != "GET" {
        return None;
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(connections);
    let mut cmd = std::process::Command::new("wrk");
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{secs}s"))
        .arg("--latency");
    for (k, v) in &req.headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    let out = cmd.arg(&req.url).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let ms = |s: &str| -> Option<f64> {
        let split = s.find(|c: char| c.is_ascii_alphabetic())?;
        let (n, unit) = s.split_at(split);
        let n: f64 = n.parse().ok()?;
        Some(match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            "m" => n * 60_000.0,
            _ => return None,
        })
    };
    let field = |label: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(label).map(|v| v.trim().to_string()))
    };
    let errors = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + field("Socket errors:")
            .map(|v| {
                v.split(',')
                    .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
    Some(Run {
        rate: field("Requests/sec:")?.parse().ok()?,
        p50_ms: ms(&field("50%")?)?,
        p99_ms: ms(&field("99%")?)?,
        errors: errors as usize,
    })
}

pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Starts the release server on `data` (queue off, key limits lifted, plus
/// `env`) and waits for /healthz; the caller stops it.
#[allow(clippy::zombie_processes)]
pub fn start(data: &std::path::Path, port: u16, env: &[(&str, &str)]) -> (Child, Duration) {
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_novart"))
        .arg("serve")
        .env_remove("NOVART_CONFIG")
        .env("NOVART_STORAGE__DATA_DIR", data)
        .env("NOVART_SERVER__PORT", port.to_string())
        .env("NOVART_QUEUE__WORKERS", "0")
        .env("NOVART_LIMITS__KEY_RPM", "1000000")
        .env("NOVART_LIMITS__KEY_CONCURRENCY", "1000000")
        .env("NOVART_LIMITS__KEY_DAILY_CAP", "1000000")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start novart");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://127.0.0.1:{port}/healthz");
    loop {
        if let Ok(r) = agent.get(&url).call() {
            if r.status().as_u16() == 200 {
                return (child, t.elapsed());
            }
        }
        if t.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not start within 30 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The highest RSS seen while `f` runs.
pub fn peak_rss<T>(pid: u32, f: impl FnOnce() -> T) -> (T, u64) {
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let (d, p) = (done.clone(), peak.clone());
    let sampler = std::thread::spawn(move || {
        while !d.load(Ordering::Relaxed) {
            p.fetch_max(rss_kb(pid), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let out = f();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    (out, peak.load(Ordering::Relaxed))
}

/// BENCH_DATABASE_URL: a PostgreSQL server where this user may create
/// databases (e.g. postgres://novart@127.0.0.1:55432/postgres). The
/// benchmarks then run on a fresh database of their own there (dropped at
/// the end) instead of SQLite.
pub mod pg {
    pub fn admin_url() -> Option<String> {
        std::env::var("BENCH_DATABASE_URL")
            .ok()
            .filter(|v| !v.is_empty())
    }

    /// A new, empty database on the server; its URL.
    pub fn fresh(name: &str) -> Option<String> {
        let admin = admin_url()?;
        let mut client = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("BENCH_DATABASE_URL: {e}"));
        let db = format!("bench_{name}_{}", std::process::id());
        // Two calls: one batch of several statements is one transaction,
        // where PostgreSQL refuses DROP and CREATE DATABASE.
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
            .unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .unwrap();
        let mut u = url::Url::parse(&admin).unwrap();
        u.set_path(&format!("/{db}"));
        Some(u.to_string())
    }

    /// Drops the databases `fresh` made in this process.
    pub fn drop_all() {
        let Some(admin) = admin_url() else { return };
        let Ok(mut client) = postgres::Client::connect(&admin, postgres::NoTls) else {
            return;
        };
        let suffix = format!("_{}", std::process::id());
        let rows = client
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'",
                &[],
            )
            .unwrap_or_default();
        for r in rows {
            let name: String = r.get(0);
            if name.ends_with(&suffix) {
                let _ = client.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"));
            }
        }
    }
}

#[post("/insert", data = "<body>")]
async fn insert_pg(pool: &rocket::State<PgPool>, body: String) -> &'static str {
    let (clients, i) = (
        pool.0.clone(),
        pool.1.fetch_add(1, Ordering::Relaxed) as usize,
    );
    rocket::tokio::task::spawn_blocking(move || {
        clients[i % clients.len()]
            .lock()
            .unwrap()
            .execute(
                "INSERT INTO rows (body, created_at) VALUES ($1, 0)",
                &[&body],
            )
            .unwrap();
    })
    .await
    .unwrap();
    "ok"
}

/// The PostgreSQL baseline's connections (as many as Novart's pool), taken
/// round-robin.
pub struct PgPool(
    Arc<Vec<std::sync::Mutex<postgres::Client>>>,
    std::sync::atomic::AtomicU64,
);

/// The baseline on PostgreSQL: a bare Rocket whose handler does one insert
/// on a blocking thread, on the same server as the Novart run.
pub fn bare_pg(url: &str) -> u16 {
    let clients: Vec<std::sync::Mutex<postgres::Client>> = (0..16)
        .map(|_| std::sync::Mutex::new(postgres::Client::connect(url, postgres::NoTls).unwrap()))
        .collect();
    clients[0]
        .lock()
        .unwrap()
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS rows (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL, created_at BIGINT NOT NULL)",
        )
        .unwrap();
    let port = free_port();
    let figment = rocket::Config::figment()
        .merge(("port", port))
        .merge(("address", "127.0.0.1"))
        .merge(("log_level", rocket::config::LogLevel::Off));
    launch(
        rocket::custom(figment)
            .manage(PgPool(Arc::new(clients), Default::default()))
            .mount("/", routes![insert_pg]),
        port,
    );
    port
}
