//! The queue survives a kill -9 of the server, and the per-task timeout of
//! the real workers, both through the built binary; 100 kills under API load
//! lose no acknowledged task and leave the ledger reconciled.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use figment::providers::Format;
use novart::domain::tasks::{self, NewTaskInput};

fn start(dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_novart"))
        .arg("serve")
        .current_dir(dir)
        .env_remove("NOVART_CONFIG")
        .env("NOVART_SERVER__PORT", port.to_string())
        .env("NOVART_STORAGE__DATA_DIR", dir.join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn counts(db: &novart::domain::Connection) -> (i64, i64, i64, i64) {
    db.query_row(
        "SELECT sum(status = 'queued'), sum(status = 'running'), sum(status = 'succeeded'), sum(status = 'failed') FROM tasks", (),
        |r| Ok((r.get::<_, Option<i64>>(0)?.unwrap_or(0), r.get::<_, Option<i64>>(1)?.unwrap_or(0), r.get::<_, Option<i64>>(2)?.unwrap_or(0), r.get::<_, Option<i64>>(3)?.unwrap_or(0))),
    )
    .unwrap()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn kill_9_while_tasks_run_then_every_task_ends() {
    let dir = tempfile::tempdir().unwrap();
    let config = novart::Config::for_data_dir(&dir.path().join("data"));
    {
        let (app, user) = common::app_with_user(&config, "crash@example.com");
        let mut conn = app.db.get().unwrap();
        for i in 0..6 {
            let input = NewTaskInput {
                prompt: format!("mountains at dawn {i}"),
                model: "novart-builtin".into(),
                size: Some("1024x1024".into()),
                n: Some(2),
                ..Default::default()
            };
            tasks::submit(
                &mut conn,
                &app.engine.config,
                &app.engine.catalog,
                user,
                &input,
            )
            .unwrap();
        }
    }
    let db = novart::domain::Db::connect(&config).unwrap();

    let mut server = start(dir.path(), free_port());
    wait_until("a task to be running", Duration::from_secs(60), || {
        counts(&db).1 >= 1
    });
    server.kill().unwrap(); // SIGKILL: no shutdown, no cleanup
    server.wait().unwrap();
    let (_, running, _, _) = counts(&db);
    assert!(running >= 1, "the kill left a running task behind");

    let mut server = start(dir.path(), free_port());
    wait_until("every task to end", Duration::from_secs(240), || {
        let (q, r, s, f) = counts(&db);
        q == 0 && r == 0 && s + f == 6
    });
    server.kill().unwrap();
    server.wait().unwrap();

    let (_, _, succeeded, _) = counts(&db);
    assert_eq!(
        succeeded, 6,
        "the built-in renderer does not fail; interrupted tasks were retried"
    );
    let ok: String = db
        .query_row("PRAGMA integrity_check", (), |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    // Every stored image has its file; 2 per task.
    let paths: Vec<String> = db
        .prepare("SELECT path FROM assets WHERE kind = 'result'")
        .unwrap()
        .query_map((), |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(paths.len(), 12);
    for p in paths {
        assert!(config.storage.data_dir.join(&p).exists(), "{p} missing");
    }
}

#[test]
fn a_task_that_runs_too_long_is_stopped_and_failed() {
    let fake = common::fake_http::serve(|_| {
        common::fake_http::Resp::json(200, serde_json::json!({"created": 1, "data": []}))
            .slow(Duration::from_secs(6))
    });
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[queue]
task_timeout_secs = 1
[[providers]]
id = "slow"
kind = "openai"
base_url = "{}/v1"
timeout_secs = 30
[[models]]
id = "slow-model"
name = "Slow"
providers = ["slow"]
sizes = ["512x512"]
"#,
        fake.url()
    );
    std::fs::write(dir.path().join("novart.toml"), &toml).unwrap();
    let figment = figment::Figment::from(figment::providers::Serialized::defaults(
        novart::Config::default(),
    ))
    .merge(figment::providers::Toml::string(&toml))
    .merge(("storage.data_dir", dir.path().join("data")));
    let config = novart::Config::from_figment(figment).unwrap();
    let id = {
        let (app, user) = common::app_with_user(&config, "slow@example.com");
        let mut conn = app.db.get().unwrap();
        let input = NewTaskInput {
            prompt: "take your time".into(),
            model: "slow-model".into(),
            ..Default::default()
        };
        tasks::submit(
            &mut conn,
            &app.engine.config,
            &app.engine.catalog,
            user,
            &input,
        )
        .unwrap()
        .public_id
    };
    let mut server = start(dir.path(), free_port());
    let db = novart::domain::Db::connect(&config).unwrap();
    let status = || -> (String, Option<String>) {
        db.query_row(
            "SELECT status, error FROM tasks WHERE public_id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    wait_until("the task to fail", Duration::from_secs(30), || {
        status().0 == "failed"
    });
    server.kill().unwrap();
    server.wait().unwrap();
    let (_, error) = status();
    assert_eq!(
        error.as_deref(),
        Some("The image took longer than 1 seconds and was stopped.")
    );
}

/// Many times over: clients submit tasks over the API while the workers
/// render, and the server is killed with SIGKILL at a random moment. After
/// every kill the database passes integrity_check, every wallet equals its
/// ledger, and every task the API acknowledged (201) is there, charged
/// exactly once. The next start recovers what the kill interrupted.
/// `CRASH_ITERATIONS` (default 100) sets how many kills.
#[test]
fn sigkill_under_load_never_loses_an_acknowledged_task() {
    use rand::Rng;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let iterations: usize = std::env::var("CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let config = novart::Config::for_data_dir(&dir.path().join("data"));
    let key = {
        let app = novart::App::new(config.clone()).unwrap();
        let user = common::verified_user(&app, "load@example.com");
        let mut conn = app.db.get().unwrap();
        novart::domain::wallet::grant(&mut conn, user, 10_000_000, false, "test", "load").unwrap();
        let mut spec = novart::domain::apikeys::KeySpec::defaults(&app.config, "load");
        (spec.rpm, spec.concurrency, spec.daily_cap) = (1_000_000, 100_000, 1_000_000);
        novart::domain::apikeys::create(
            &mut conn,
            &app.config,
            &app.engine.catalog,
            user,
            spec,
            novart::domain::apikeys::Authority::Admin,
        )
        .unwrap()
        .1
    };
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut rng = rand::thread_rng();
    for round in 0..iterations {
        let port = free_port();
        let mut server = start(dir.path(), port);
        let base = format!("http://127.0.0.1:{port}");
        wait_until("the server to answer", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let (stop, acked, key, url) = (
                    stop.clone(),
                    acknowledged.clone(),
                    key.clone(),
                    format!("{base}/api/v1/tasks"),
                );
                std::thread::spawn(move || {
                    let agent = common::http();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let body = serde_json::json!({
                            "prompt": format!("round {round} client {c} task {i}"),
                            "size": "512x512",
                        });
                        i += 1;
                        let Ok(r) = agent
                            .post(&url)
                            .header("Authorization", &format!("Bearer {key}"))
                            .send_json(body)
                        else {
                            continue; // the server is gone: nothing was acknowledged
                        };
                        if r.status().as_u16() == 201 {
                            let mut r = r;
                            if let Ok(v) = r.body_mut().read_json::<serde_json::Value>() {
                                acked
                                    .lock()
                                    .unwrap()
                                    .push(v["id"].as_str().unwrap().to_string());
                            }
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..400)));
        server.kill().unwrap(); // SIGKILL at a random moment
        server.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }

        let db = novart::domain::Db::connect(&config).unwrap();
        let ok: String = db
            .query_row("PRAGMA integrity_check", (), |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok", "round {round}");
        let unbalanced: i64 = db
            .query_row(
                "SELECT count(*) FROM wallets w WHERE w.balance + w.bonus <>
                   (SELECT coalesce(sum(delta_balance + delta_bonus), 0) FROM ledger l WHERE l.user_id = w.user_id)", (),
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            unbalanced, 0,
            "round {round}: a wallet differs from its ledger"
        );
        let acked = acknowledged.lock().unwrap();
        let mut stmt = db
            .prepare(
                "SELECT (SELECT count(*) FROM ledger l WHERE l.task_id = t.id AND l.kind = 'task_charge')
                 FROM tasks t WHERE t.public_id = ?1",
            )
            .unwrap();
        for id in acked.iter() {
            let charges: Option<i64> = stmt.query_row([id], |r| r.get(0)).ok();
            assert_eq!(charges, Some(1), "round {round}: acknowledged task {id}");
        }
    }
    let total = acknowledged.lock().unwrap().len();
    assert!(
        total >= iterations,
        "only {total} tasks were acknowledged in {iterations} rounds"
    );
    println!("{iterations} kills, {total} acknowledged tasks, none lost");
}
